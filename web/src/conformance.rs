//! Conformance on the device the page runs on: the op registry's cases that fit its limits and features against
//! their CPU references compiled to wasm, and the built-in tiny Gemma 4 against HF transformers and llama.cpp. The
//! results are the files `ferrogem check ops --json/--csv` writes natively, so a phone's run feeds the same
//! dashboard as a CI machine's.

use crate::engine::{Engine, js_error};
use ferrogem::gpu::Context;
use ferrogem::models::ModelFile;
use ferrogem::models::gemma::{GemmaOptions, LogitRows};
use ferrogem::source::MemSource;
use ferrogem_harness::cases::device_subset;
use ferrogem_harness::cases::runner::{Mode, Row, RunOptions, run_case};
use ferrogem_harness::golden::{self, CompiledGolden, LogitAgreement};
use ferrogem_harness::results::{self, Environment};
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use wasm_bindgen::prelude::*;

/// A golden model's check: its prefill logits of the golden prompt against both peers, its greedy continuation
/// against HF's, and whether unloading it gave back every byte it took.
#[derive(Debug, Serialize)]
pub struct GoldenReport {
    pub model: &'static str,
    pub positions: usize,
    pub max_abs_vs_hf: f32,
    pub nmse_vs_hf: f64,
    pub argmax_equal_hf: usize,
    pub argmax_equal_llama: usize,
    pub greedy: Vec<u32>,
    pub hf_greedy: Vec<u32>,
    pub loaded_bytes: u64,
    pub leaked_bytes: u64,
    /// What fell short of the native tolerances; empty when the model passed.
    pub failures: Vec<String>,
}

/// Loads `golden`'s model beside whatever `ctx` already holds, checks it with the native tolerances and drops it.
pub async fn check_golden(ctx: &Context, golden: &CompiledGolden) -> Result<GoldenReport, String> {
    let prompt = golden::parse_prompt(golden.json)?;
    let hf_greedy = golden::parse_ids(golden.json, "hf_dequant_greedy10")?;
    let hf = golden::parse_logits(golden.hf)?.concat();
    let llama = golden::parse_logits(golden.llama)?.concat();
    let live_before = ctx.memory().live_bytes;
    let file = ModelFile::from_source(golden.name, PathBuf::from(golden.name), Arc::new(MemSource::new(golden.gguf)))
        .map_err(|e| e.to_string())?;
    let options = GemmaOptions { max_chunk: 64, n_ctx: 64, ..GemmaOptions::default() };
    let mut model = file.load(ctx, options, &mut |_| {}).map_err(|e| e.to_string())?;
    let loaded_bytes = ctx.memory().live_bytes - live_before;

    let err = |e: ferrogem::Error| e.to_string();
    let logits = model.forward(&prompt, 0, LogitRows::All).await.map_err(err)?;
    let agreement = LogitAgreement::measure(&logits.values, logits.vocab as usize, &hf, &llama);
    let mut greedy = vec![golden::argmax(logits.row(prompt.len() - 1)) as u32];
    while greedy.len() < hf_greedy.len() {
        let pos = (prompt.len() + greedy.len() - 1) as u32;
        let next = model.forward(&greedy[greedy.len() - 1..], pos, LogitRows::Last).await.map_err(err)?;
        greedy.push(golden::argmax(next.row(0)) as u32);
    }
    drop(model);
    let leaked_bytes = ctx.memory().live_bytes.saturating_sub(live_before);

    let mut failures = agreement.shortfalls();
    if greedy != hf_greedy {
        failures.push(format!("greedy {greedy:?}, HF {hf_greedy:?}"));
    }
    if leaked_bytes != 0 {
        failures.push(format!("{leaked_bytes} bytes live after unload"));
    }
    Ok(GoldenReport {
        model: golden.name,
        positions: agreement.positions,
        max_abs_vs_hf: agreement.max_abs,
        nmse_vs_hf: agreement.nmse,
        argmax_equal_hf: agreement.agree_hf,
        argmax_equal_llama: agreement.agree_llama,
        greedy,
        hf_greedy,
        loaded_bytes,
        leaked_bytes,
        failures,
    })
}

#[wasm_bindgen]
impl Engine {
    /// Runs every op family's cases that fit this device (each family's smallest and every case up to
    /// `max_elements` elements) in test mode and, with `grad`, in grad mode where the op has a backward, calling
    /// `on_row(line, status)` after each case. Returns JSON: `passed`, `failed`, `not_supported`, `families`,
    /// `failures` (each a line to paste into `--filter`), and `json` / `csv`, the text `check ops --json/--csv`
    /// writes. Zero cases run is a failure, as natively.
    #[wasm_bindgen(js_name = checkOps)]
    pub async fn check_ops(
        &self,
        max_elements: f64,
        grad: bool,
        on_row: Option<js_sys::Function>,
    ) -> Result<String, JsError> {
        let ctx = &self.ctx;
        let subset = device_subset(ctx.caps(), max_elements.max(0.0) as u64);
        let modes: &[Mode] = if grad { &[Mode::Test, Mode::Grad] } else { &[Mode::Test] };
        let (mut rows, mut failures): (Vec<Row>, Vec<String>) = (Vec::new(), Vec::new());
        for case in subset.values().flatten() {
            for &mode in modes {
                let options = RunOptions { mode, max_elements: u64::MAX, read_gb_per_s: None };
                let row = run_case(ctx, case.as_ref(), &options).await;
                if row.status == "no_grad" {
                    continue;
                }
                if row.status == "fail" {
                    failures.push(format!("[{mode:?}] {} (re-run: --filter '^{}$')", row.line(), row.case));
                }
                if let Some(f) = &on_row {
                    // The page's callback only displays; its failure must not end the run.
                    let _ = f.call2(&JsValue::NULL, &row.line().into(), &row.status.as_str().into());
                }
                rows.push(row);
            }
        }
        let count = |status: &str| rows.iter().filter(|r| r.status == status).count();
        let (passed, failed) = (count("ok"), count("fail"));
        if passed + failed == 0 {
            return Err(JsError::new("no op case ran on this device (a registry or a device that ran nothing)"));
        }
        let env = Environment::new(ctx.caps());
        let report = serde_json::json!({
            "passed": passed,
            "failed": failed,
            "not_supported": rows.len() - passed - failed,
            "families": subset.len(),
            "failures": failures,
            "json": results::json_text(&env, None, &rows).map_err(js_error)?,
            "csv": results::csv_text(&env, &rows).map_err(js_error)?,
        });
        Ok(report.to_string())
    }

    /// The built-in tiny Gemma 4 (the model `ferrogem check` runs) loaded beside the user's model, its logits held
    /// to the native tolerances against HF transformers and llama.cpp, then dropped. Returns the report as JSON.
    #[wasm_bindgen(js_name = checkModel)]
    pub async fn check_model(&self) -> Result<String, JsError> {
        let report = check_golden(&self.ctx, &golden::BUILT_IN).await.map_err(|e| JsError::new(&e))?;
        serde_json::to_string(&report).map_err(js_error)
    }
}
