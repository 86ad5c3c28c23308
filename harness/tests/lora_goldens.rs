//! LoRA adapters on the GPU against HF transformers + peft (`golden/lora/README.md`): the prefill logits of the
//! 33-token golden prompt with PEFT adapters (and their llama.cpp-converted GGUFs) applied to every tiny Gemma 4 and
//! Gemma 3 base, F32 and quantized, against HF+peft on the same dequantized base, within the base model's tolerances
//! (`golden.rs`) and with every top-1 identical. Adapter A: r 8, all seven projections. Adapter B: rsLoRA, rank and
//! alpha patterns, three layers, and Gemma 4's PLE projections. Also both at once, and A at scale 0.5. And
//! llama.cpp running the converted adapter A itself (`--lora`): the same greedy text.
//!
//! Run with `cargo test -p ferrogem-harness --test lora_goldens -- --nocapture` for the table. A GPU test never
//! skips: no adapter fails it (CI has lavapipe).

use ferrogem::gpu::{Context, ContextOptions};
use ferrogem::models::ModelFile;
use ferrogem::models::gemma::{GemmaOptions, LogitRows};
use ferrogem_harness::golden::{MAX_ABS_VS_HF, MAX_NMSE_VS_HF, fixture, within};
use ferrogem_harness::golden::{argmax, nmse_and_max_abs};
use std::path::PathBuf;

fn lora_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../golden/lora")
}

fn gpu(downlevel: bool) -> Context {
    let options = ContextOptions { downlevel, ..ContextOptions::from_env() };
    Context::new_blocking(options).unwrap_or_else(|e| panic!("GPU test needs an adapter and found none: {e}"))
}

/// One golden: a base fixture, adapters (file name under golden/lora, scale), and the HF+peft logits' suffix.
struct Case {
    base: String,
    adapters: Vec<(String, f32)>,
    golden: &'static str,
    /// Token by token through the KV cache (the decode kernels) instead of one prefill chunk.
    decode: bool,
}

fn run(ctx: &Context, case: &Case) -> Result<String, String> {
    let base = fixture(&format!("{}.gguf", case.base));
    let mut model = ModelFile::open(base.to_str().unwrap()).map_err(|e| e.to_string())?;
    for (file, scale) in &case.adapters {
        model.add_adapter(file, &lora_dir().join(file), *scale).map_err(|e| e.to_string())?;
    }
    let ids = ferrogem_harness::golden::prompt(&case.base)?;
    let options = GemmaOptions { max_chunk: ids.len() as u32, n_ctx: ids.len() as u32, ..GemmaOptions::default() };
    let mut gemma = model.load(ctx, options, &mut |_| {}).map_err(|e| e.to_string())?;
    let mut got = gemma.forward_blocking(&ids[..1], 0, LogitRows::All).map_err(|e| e.to_string())?;
    if case.decode {
        for (pos, &id) in ids.iter().enumerate().skip(1) {
            let step = gemma.forward_blocking(&[id], pos as u32, LogitRows::Last).map_err(|e| e.to_string())?;
            got.values.extend(step.values);
        }
    } else {
        got = gemma.forward_blocking(&ids, 0, LogitRows::All).map_err(|e| e.to_string())?;
    }
    let path = lora_dir().join(format!("{}.{}.hf_logits.npy", case.base, case.golden));
    let want = ferrogem_harness::npy::read_f32(&path)?;
    if want.data.len() != got.values.len() {
        return Err(format!("{} has {} values, the GPU gave {}", path.display(), want.data.len(), got.values.len()));
    }
    let (nmse, max_abs) = nmse_and_max_abs(&got.values, &want.data);
    let vocab = got.vocab as usize;
    let rows = ids.len();
    let agree = (0..rows).filter(|r| argmax(got.row(*r)) == argmax(&want.data[r * vocab..(r + 1) * vocab])).count();
    let line = format!("max|Δ| {max_abs:.2e}, NMSE {nmse:.2e}, top-1 {agree}/{rows}");
    let (max_abs_bound, nmse_bound) = match case.adapters.iter().any(|(file, _)| file.contains(".q8_0.")) {
        true => (MAX_ABS_Q8_0_ADAPTER as f64, MAX_NMSE_Q8_0_ADAPTER),
        false => (MAX_ABS_VS_HF as f64, MAX_NMSE_VS_HF),
    };
    if within(max_abs as f64, max_abs_bound) && within(nmse, nmse_bound) && agree == rows {
        Ok(line)
    } else {
        Err(line)
    }
}

fn check_all(downlevel: bool, cases: &[Case]) {
    let ctx = gpu(downlevel);
    let mut failures = Vec::new();
    for case in cases {
        let adapters: Vec<String> = case.adapters.iter().map(|(f, s)| format!("{f}:{s}")).collect();
        let mode = if case.decode { "decode" } else { "prefill" };
        let (base, golden) = (&case.base, case.golden);
        let what = format!("{base} + {} vs HF+peft `{golden}` ({mode}, downlevel {downlevel})", adapters.join(" + "));
        match run(&ctx, case) {
            Ok(line) => println!("{what}: {line}"),
            Err(line) => {
                println!("{what}: FAILED {line}");
                failures.push(format!("{what}: {line}"));
            }
        }
    }
    assert!(!cases.is_empty());
    assert!(failures.is_empty(), "{} of {} failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// An adapter converted with `--outtype q8_0` (A in Q8_0, B in F16) against the f32 adapter's HF+peft logits: the
/// file itself differs by its rounding (Q8_0 keeps 8 bits per weight, a relative error up to 2^-8 of each block's
/// largest value), which moves the O(0.1–1) adapter updates by ~1e-3 (measured: max |Δ| 5.3e-3, NMSE ≤ 1.2e-6 on
/// the tiny models). The bounds leave ~4× and ~8× room; top-1 must still agree everywhere.
const MAX_ABS_Q8_0_ADAPTER: f32 = 2e-2;
const MAX_NMSE_Q8_0_ADAPTER: f64 = 1e-5;

const ARCHS: [&str; 2] = ["gemma4", "gemma3"];
const QUANTS: [&str; 6] = ["f32", "Q8_0", "Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K"];

fn case(arch: &str, quant: &str, adapters: &[(&str, f32)], golden: &'static str) -> Case {
    let adapters = adapters.iter().map(|(a, s)| (format!("tiny-{arch}-{a}"), *s)).collect();
    Case { base: format!("tiny-{arch}-{quant}"), adapters, golden, decode: false }
}

#[test]
fn peft_adapter_on_every_base_matches_hf_peft() {
    let cases: Vec<Case> =
        ARCHS.iter().flat_map(|arch| QUANTS.iter().map(move |q| case(arch, q, &[("lora-a", 1.0)], "lora-a"))).collect();
    check_all(false, &cases);
}

/// The converted GGUF of adapter A gives the PEFT adapter's logits (converted to Q8_0, within its rounding). Adapter B's GGUF is checked against HF+peft
/// under the scale rule the GGUF can express (one α for the file, α/r per tensor; see golden/lora/README.md).
fn feature_cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for arch in ARCHS {
        for quant in ["f32", "Q4_K_M"] {
            cases.push(case(arch, quant, &[("lora-a.gguf", 1.0)], "lora-a"));
            cases.push(case(arch, quant, &[("lora-a.q8_0.gguf", 1.0)], "lora-a"));
            cases.push(case(arch, quant, &[("lora-b", 1.0)], "lora-b"));
            cases.push(case(arch, quant, &[("lora-b.gguf", 1.0)], "lora-b.gguf-rule"));
            cases.push(case(arch, quant, &[("lora-a", 1.0), ("lora-b", 1.0)], "lora-ab"));
            cases.push(case(arch, quant, &[("lora-a", 0.5)], "lora-a-half"));
        }
    }
    cases
}

#[test]
fn gguf_conversion_rslora_patterns_two_adapters_and_scales_match_hf_peft() {
    check_all(false, &feature_cases());
}

#[test]
fn downlevel_matches_hf_peft() {
    let mut cases = feature_cases();
    cases.extend(ARCHS.iter().map(|arch| case(arch, "Q5_K_M", &[("lora-a", 1.0)], "lora-a")));
    check_all(true, &cases);
}

/// Decoding adds the updates in the mat-vec epilogues (`LoraEpilogue`); prefill runs `lora_down` +
/// `lora_add`. Token by token, every position's logits against the same goldens.
#[test]
fn decode_token_by_token_matches_hf_peft() {
    let a: &[(&str, f32)] = &[("lora-a", 1.0)];
    let ab: &[(&str, f32)] = &[("lora-a", 1.0), ("lora-b", 1.0)];
    for downlevel in [false, true] {
        let cases: Vec<Case> = ARCHS
            .iter()
            .flat_map(|arch| [case(arch, "f32", a, "lora-a"), case(arch, "Q4_K_M", ab, "lora-ab")])
            .map(|c| Case { decode: true, ..c })
            .collect();
        check_all(downlevel, &cases);
    }
}

/// llama.cpp's greedy text (`golden/lora/llama_greedy.json`, `--lora` with the converted adapter A) on the tiny F32
/// models, against `ferrogem generate --temp 0` with the same GGUF and with the PEFT directory it was converted from:
/// ten tokens each, compared as text (llama.cpp prints partial UTF-8 bytes raw, ferrogem as U+FFFD; the comparison
/// decodes llama.cpp's bytes the same way). Without the adapter too, so a match is not the adapter doing nothing.
#[test]
fn greedy_text_with_the_adapter_matches_llama_cpp() {
    let path = lora_dir().join("llama_greedy.json");
    let golden: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let prompt = golden["prompt"].as_str().unwrap();
    let n = golden["n_tokens"].as_u64().unwrap().to_string();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let runs = golden["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4);
    for run in runs {
        let bytes: Vec<u8> = run["text_bytes"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u8).collect();
        let want = String::from_utf8_lossy(&bytes).trim_end_matches('\n').to_owned();
        let model = root.join(run["model"].as_str().unwrap());
        let adapters: Vec<PathBuf> = match run["adapter"].as_str().unwrap() {
            "none" => vec![],
            gguf => vec![root.join(gguf), root.join(gguf.trim_end_matches(".gguf"))],
        };
        let variants: Vec<Option<&PathBuf>> =
            if adapters.is_empty() { vec![None] } else { adapters.iter().map(Some).collect() };
        for adapter in variants {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferrogem"));
            cmd.env_remove("FERROGEM_DOWNLEVEL");
            cmd.args(["generate", "--json", "--model", model.to_str().unwrap(), "--prompt", prompt, "-n", &n]);
            cmd.args(["--temp", "0"]);
            if let Some(a) = adapter {
                cmd.args(["--adapter", a.to_str().unwrap()]);
            }
            let out = cmd.output().expect("run ferrogem");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{stderr}");
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let got = report["text"].as_str().unwrap();
            println!("{} + {:?}: ferrogem {got:?}, llama.cpp {want:?}", model.display(), adapter);
            assert_eq!(got, want, "{} with {adapter:?}", model.display());
        }
    }
}
