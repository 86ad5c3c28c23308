//! `ferrogem profile` in the browser: the same measured run (load → prefill → decode → unload) on a fresh WebGPU
//! device asked for a device profile's limits, whose ceiling the accountant enforces, and the same three files
//! (summary.json, trajectory.csv, trajectory.svg), so a phone's memory peak lands in the same dashboard as a
//! desktop's. The live memory chart of the page's own device is drawn by the same code.

use crate::engine::{Engine, js_error, wasm_memory_bytes};
use crate::source::JsSource;
use ferrogem::gpu::{Context, ContextOptions, DeviceProfile};
use ferrogem::models::gemma::GemmaOptions;
use ferrogem::models::gemma::plan::{MemoryPlan, PlanLimits};
use ferrogem::models::{ModelFile, TextConfig};
use ferrogem_harness::profile::{self, measure, summary::Summary};
use std::path::PathBuf;
use std::sync::Arc;
use wasm_bindgen::prelude::*;

/// Profiles the model in `source` on a device of its own: `device_profile` names a built-in profile
/// (`iphone-16e`, `webgpu-default`, …; empty for the adapter's own limits and no ceiling). `progress(uploaded,
/// total)` reports the load and `on_token(done, total)` the decode. A run that fails part way (a ceiling crossed,
/// the plan refused at load) still returns its files, with `error` set and the summary saying where it stopped.
/// Returns JSON: `summary` (the object summary.json holds), `summary_json`, `trajectory_csv`, `trajectory_svg`,
/// `error`, and `wasm_memory_bytes` (the wasm memory's peak so far, beside the GPU's).
#[wasm_bindgen]
pub async fn profile(
    source: JsSource,
    device_profile: &str,
    prompt_tokens: u32,
    gen_tokens: u32,
    n_ctx: u32,
    progress: Option<js_sys::Function>,
    on_token: Option<js_sys::Function>,
) -> Result<String, JsError> {
    let profile = match device_profile {
        "" => None,
        name => Some(DeviceProfile::built_in(name).ok_or_else(|| {
            let names: Vec<&str> = DeviceProfile::built_in_names().collect();
            JsError::new(&format!("no device profile `{name}` (built in: {})", names.join(", ")))
        })?),
    };
    let ctx = Context::new(ContextOptions {
        adapter_filter: None,
        downlevel: false,
        profile: profile.clone(),
        coop_matrix: false,
    })
    .await
    .map_err(js_error)?;
    let name = source.name().to_owned();
    let file = ModelFile::from_source(&name, PathBuf::from(&name), Arc::new(source)).map_err(js_error)?;
    let config = TextConfig::from_gguf(&file.gguf).map_err(js_error)?;
    let defaults = GemmaOptions::default();
    let options = GemmaOptions { n_ctx: if n_ctx == 0 { defaults.n_ctx } else { n_ctx }, ..defaults };
    let mut plan =
        MemoryPlan::new(&file.gguf, &config, &options, PlanLimits::from_caps(ctx.caps())).map_err(js_error)?;
    plan.add_adapters(&file.gguf, &config, &file.adapters);
    let settings = measure::Settings { prompt_tokens, gen_tokens, options, train: None };
    let load = || {
        file.load(&ctx, options, &mut |p| {
            if let Some(f) = &progress {
                let _ = f.call2(&JsValue::NULL, &(p.uploaded_bytes as f64).into(), &(p.total_bytes as f64).into());
            }
        })
    };
    let mut tokens = |done: u32, total: u32| {
        if let Some(f) = &on_token {
            let _ = f.call2(&JsValue::NULL, &done.into(), &total.into());
        }
    };
    let measured = measure::run(&ctx, &config, &settings, load, &mut tokens).await;
    let summary = Summary::new(&ctx, &name, profile.as_ref(), &settings, &plan, &measured);
    let json = serde_json::json!({
        "summary": summary,
        "summary_json": serde_json::to_string_pretty(&summary).map_err(js_error)?,
        "trajectory_csv": profile::trajectory_csv(&ctx).map_err(js_error)?,
        "trajectory_svg": profile::trajectory_svg(&ctx, &name, profile.as_ref()),
        "error": summary.error,
        "wasm_memory_bytes": wasm_memory_bytes(),
    });
    Ok(json.to_string())
}

/// The page's device so far as an SVG chart: live bytes by category over time, phase bands, the ceiling.
pub(crate) fn memory_chart(ctx: &Context) -> String {
    profile::trajectory_svg(ctx, "GPU memory", None)
}

#[wasm_bindgen]
impl Engine {
    /// trajectory.csv of the page's device: every alloc and free so far.
    #[wasm_bindgen(js_name = memoryTrajectory)]
    pub fn memory_trajectory(&self) -> Result<String, JsError> {
        profile::trajectory_csv(&self.ctx).map_err(js_error)
    }
}
