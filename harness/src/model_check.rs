//! The model check (`ferrogem check model <gguf|ollama-name>`): the GPU forward pass against the CPU reference (`reference/`) on one
//! prompt — the golden prompt when `<file>.golden.json` sits beside the model, else a fixed one. Each line is one
//! check with its verdict:
//! - every intermediate the GPU can read back (embedding, PLE inputs, per layer q/k/v/attention/MLP/PLE/output,
//!   final norm): NMSE and max |Δ| against the reference's trace;
//! - the prefill logits: NMSE, max |Δ|, top-1 agreement and the GPU's top-1 within the reference's top-5;
//! - teacher-forced decoding: the reference's greedy continuation of `--tokens` N tokens fed to the GPU one token
//!   at a time, the GPU's top-1 compared at every step;
//! - prefill against token-by-token decode on the GPU.
//!
//! [`check_counts`] returns the passed and failed counts; the command closes with them.

use crate::golden::{argmax, nmse_and_max_abs};
use crate::npy;
use crate::reference::{Forward, Reference};
use ferrogem::gpu::Context;
use ferrogem::models::ModelFile;
use ferrogem::models::gemma::{GemmaOptions, LogitRows, Logits, check_fit, gguf_has_attn_v};
use std::time::Instant;

/// Intermediates: NMSE = Σ(GPU − ref)² / Σ ref². Both sides are f32 math on the same dequantized weights, so only
/// summation orders differ: measured ≤ 3.3e-12 on the 12 tiny goldens and ≤ 4.7e-12 on the real Gemma 3 270M (full
/// and downlevel). 1e-9 leaves two orders of magnitude for deeper models yet flags the near-misses: √H rounded to
/// bf16 (7e-9 on the logits), erf GELU (6e-8).
pub const MAX_NMSE_INTERMEDIATE: f64 = 1e-9;
/// Final logits (same reasoning; measured ≤ 4.3e-12 tiny, 6.4e-12 on the 270M).
pub const MAX_NMSE_LOGITS: f64 = 1e-9;
/// Top-1 agreement of prefill rows and teacher-forced steps: near-ties may flip under a different summation
/// order, so 90 % (never fewer than all but one row on short prompts).
pub const MIN_TOP1_FRACTION: f64 = 0.9;
/// Prefill against token-by-token decode on the GPU: NMSE (measured ≤ 2.8e-12 tiny, 3.3e-12 on the 270M).
pub const MAX_NMSE_PREFILL_VS_DECODE: f64 = 1e-9;
/// The prompt when no golden sits beside the model: "The capital of France is" in Gemma's tokenizer (ids wrap
/// around for tiny vocabularies).
pub const FIXED_PROMPT: [u32; 6] = [2, 818, 5279, 529, 7001, 563];

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
}

impl Tally {
    fn check(&mut self, ok: bool, line: String) {
        println!("{line}: {}", if ok { "OK" } else { "FAIL" });
        if ok { self.passed += 1 } else { self.failed += 1 }
    }
}

fn top_k(row: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    idx.truncate(k);
    idx
}

/// The prompt: `--prompt`, else the golden beside the file, else [`FIXED_PROMPT`] (mod the vocabulary).
pub fn prompt_for(model: &ModelFile, explicit: Option<&str>, vocab: u32) -> Result<(Vec<u32>, String), String> {
    if let Some(list) = explicit {
        let ids = parse_ids(list)?;
        return Ok((ids, "--prompt".into()));
    }
    let golden = model.path.with_extension("golden.json");
    if model.ollama.is_none()
        && let Ok(text) = std::fs::read_to_string(&golden)
    {
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", golden.display()))?;
        let ids = json["ids"].as_array().ok_or_else(|| format!("{}: no `ids`", golden.display()))?;
        let ids =
            ids.iter().map(|v| v.as_u64().map(|i| i as u32).ok_or("a non-integer id")).collect::<Result<_, _>>()?;
        return Ok((ids, golden.display().to_string()));
    }
    Ok((FIXED_PROMPT.iter().map(|t| t % vocab).collect(), "the fixed prompt".into()))
}

/// Comma-separated token ids; an empty entry (`2,,3`, a trailing comma) is an error, not a skip.
pub fn parse_ids(list: &str) -> Result<Vec<u32>, String> {
    list.split(',')
        .enumerate()
        .map(|(i, s)| match s.trim() {
            "" => Err(format!("token id {} of `{list}` is empty", i + 1)),
            id => id.parse::<u32>().map_err(|e| format!("token id {} `{id}`: {e}", i + 1)),
        })
        .collect()
}

/// The reference's intermediates by the GPU trace's names, each flattened token-major.
fn reference_tensors(f: &Forward) -> candle_core::Result<Vec<(String, Vec<f32>)>> {
    f.named_intermediates().into_iter().map(|(name, t)| Ok((name, t.flatten_all()?.to_vec1::<f32>()?))).collect()
}

fn logits_rows(t: &candle_core::Tensor) -> Result<Vec<f32>, String> {
    t.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(|e| e.to_string())
}

/// Runs every model check, printing one line each; returns (passed, failed). An error that stops the checks
/// counts as one failure.
pub fn check_counts(ctx: &Context, model: &ModelFile, tokens: usize, prompt: Option<&str>) -> (usize, usize) {
    match check(ctx, model, tokens, prompt) {
        Ok(tally) => (tally.passed, tally.failed),
        Err(message) => {
            eprintln!("error: {message}");
            (0, 1)
        }
    }
}

fn check(ctx: &Context, model: &ModelFile, tokens: usize, prompt: Option<&str>) -> Result<Tally, String> {
    let text = |e: ferrogem::Error| e.to_string();
    let source = model.source.as_ref();
    let t0 = Instant::now();
    let mut reference = Reference::from_gguf(&model.gguf, source).map_err(|e| format!("CPU reference: {e}"))?;
    // The engine's own check first, so an adapter for another model gets its message, not the reference's.
    let has_attn_v = gguf_has_attn_v(&model.gguf);
    for applied in &model.adapters {
        check_fit(&reference.config, &has_attn_v, &applied.adapter).map_err(|e| e.to_string())?;
    }
    reference.merge_adapters(&model.adapters).map_err(|e| format!("CPU reference: {e}"))?;
    let cfg = reference.config.clone();
    let explicit_prompt = prompt;
    let (prompt, from) = prompt_for(model, explicit_prompt, cfg.vocab)?;
    let n = prompt.len();
    if n == 0 {
        return Err("an empty prompt".into());
    }
    let n_ctx = (n + tokens + 1) as u32;
    let options = GemmaOptions { max_chunk: n as u32, n_ctx, ..GemmaOptions::default() };
    let mut gpu = model.load(ctx, options, &mut |_| {}).map_err(text)?;
    let with_adapters: String = model.adapters.iter().map(|a| format!(" + adapter {} ×{}", a.label, a.scale)).collect();
    println!(
        "{}{with_adapters}: {:?}, {} layers, vocab {}; prompt of {n} tokens from {from}; loaded in {:.2?} ({} weight \
         bytes on the GPU)",
        model.display,
        cfg.arch,
        cfg.n_layers(),
        cfg.vocab,
        t0.elapsed(),
        gpu.weights.size_bytes()
    );
    let mut tally = Tally::default();

    // Prefill, traced, against the reference's prefill.
    let mut cache = reference.new_cache();
    let cpu = reference.forward_incremental(&prompt, &mut cache).map_err(|e| format!("CPU reference: {e}"))?;
    let t1 = Instant::now();
    let (prefill, traces) = gpu.forward_traced_blocking(&prompt, 0, LogitRows::All).map_err(text)?;
    println!("GPU prefill (traced) in {:.2?}, {} dispatches", t1.elapsed(), gpu.last_dispatches);
    let want = reference_tensors(&cpu).map_err(|e| e.to_string())?;
    for traced in &traces {
        let Some((_, w)) = want.iter().find(|(name, _)| *name == traced.name) else {
            tally.check(false, format!("{}: the reference has no such intermediate", traced.name));
            continue;
        };
        let (nmse, max_abs) = nmse_and_max_abs(&traced.values, w);
        tally.check(nmse <= MAX_NMSE_INTERMEDIATE, format!("{}: NMSE {nmse:.2e}, max|Δ| {max_abs:.2e}", traced.name));
    }
    let cpu_logits = logits_rows(&cpu.logits)?;
    compare_logits(&mut tally, "prefill logits", &prefill, &cpu_logits);
    // HF transformers on the same dequantized weights, when the golden sits beside the model (of the base: not
    // with adapters).
    let hf_path = model.path.with_extension("hf_dequant_logits.npy");
    if model.ollama.is_none() && model.adapters.is_empty() && explicit_prompt.is_none() && hf_path.exists() {
        let hf = npy::read_f32(&hf_path)?;
        let (nmse, max_abs) = nmse_and_max_abs(&prefill.values, &hf.data);
        tally.check(
            nmse <= MAX_NMSE_LOGITS,
            format!("prefill logits vs {}: NMSE {nmse:.2e}, max|Δ| {max_abs:.2e}", hf_path.display()),
        );
    }
    // The GPU rings hold at least what the reference keeps after the prompt (a sliding layer: window − 1).
    let short = cfg.layers.iter().filter(|l| l.owns_kv()).find(|l| {
        let held = cache.cached_positions(l.index).map_or(0, |r| r.len());
        gpu.kv.layers[l.index].as_ref().is_none_or(|c| (c.capacity as usize) < held)
    });
    tally.check(
        short.is_none(),
        format!(
            "KV rings cover the reference's caches{}",
            short.map_or(String::new(), |l| format!(" (not layer {})", l.index))
        ),
    );

    // Teacher-forced decode: the reference's greedy continuation, fed to both.
    let vocab = cfg.vocab as usize;
    let mut want_next = argmax(&cpu_logits[(n - 1) * vocab..]);
    let mut got_next = argmax(prefill.row(n - 1));
    let (mut agree, mut steps, mut decode_dispatches) = (0, 0, 0);
    let t2 = Instant::now();
    for i in 0..tokens {
        steps += 1;
        agree += usize::from(got_next == want_next);
        if i + 1 == tokens {
            break;
        }
        let fed = want_next as u32;
        let pos = (n + i) as u32;
        let step = gpu.forward_blocking(&[fed], pos, LogitRows::Last).map_err(text)?;
        decode_dispatches = gpu.last_dispatches;
        got_next = argmax(step.row(0));
        let cpu_step = reference.forward_incremental(&[fed], &mut cache).map_err(|e| format!("CPU reference: {e}"))?;
        if cpu_step.positions.start != pos as usize {
            return Err(format!("the reference decoded position {} instead of {pos}", cpu_step.positions.start));
        }
        want_next = argmax(&logits_rows(&cpu_step.logits)?);
    }
    let per_step = t2.elapsed() / tokens.max(1) as u32;
    let needed = min_agreement(steps);
    tally.check(
        agree >= needed,
        format!("teacher-forced top-1 over {steps} tokens: {agree}/{steps} (need {needed}); {decode_dispatches} dispatches and ~{per_step:.2?} per decoded token (with the CPU step)"),
    );

    // Prefill against token-by-token decode, both on the GPU.
    gpu.reset();
    let mut decoded = Vec::with_capacity(n * vocab);
    for (i, &t) in prompt.iter().enumerate() {
        decoded.extend(gpu.forward_blocking(&[t], i as u32, LogitRows::Last).map_err(text)?.values);
    }
    let (nmse, max_abs) = nmse_and_max_abs(&decoded, &prefill.values);
    tally.check(
        nmse <= MAX_NMSE_PREFILL_VS_DECODE,
        format!("GPU prefill vs token-by-token decode: NMSE {nmse:.2e}, max|Δ| {max_abs:.2e}"),
    );

    drop(gpu);
    let mem = ctx.memory();
    tally.check(
        mem.live_bytes == 0,
        format!("memory: peak {} bytes tracked, {} live after the model was dropped", mem.peak_bytes, mem.live_bytes),
    );
    Ok(tally)
}

/// Rows that must agree on top-1 out of `n`.
fn min_agreement(n: usize) -> usize {
    ((n as f64 * MIN_TOP1_FRACTION).floor() as usize).min(n.saturating_sub(1)).max(1).min(n)
}

fn compare_logits(tally: &mut Tally, what: &str, gpu: &Logits, cpu: &[f32]) {
    let vocab = gpu.vocab as usize;
    let (nmse, max_abs) = nmse_and_max_abs(&gpu.values, cpu);
    tally.check(nmse <= MAX_NMSE_LOGITS, format!("{what}: NMSE {nmse:.2e}, max|Δ| {max_abs:.2e}"));
    let rows = gpu.n_rows as usize;
    let (mut top1, mut in_top5, mut overlap5) = (0, 0, 0);
    for r in 0..rows {
        let (g, c) = (gpu.row(r), &cpu[r * vocab..(r + 1) * vocab]);
        let c5 = top_k(c, 5);
        top1 += usize::from(argmax(g) == c5[0]);
        in_top5 += usize::from(c5.contains(&argmax(g)));
        overlap5 += top_k(g, 5).iter().filter(|i| c5.contains(i)).count();
    }
    let needed = min_agreement(rows);
    tally.check(top1 >= needed, format!("{what}: top-1 agrees at {top1}/{rows} rows (need {needed})"));
    tally.check(
        in_top5 == rows,
        format!(
            "{what}: GPU top-1 within the reference's top-5 at {in_top5}/{rows} rows; top-5 overlap {overlap5}/{}",
            rows * 5
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrogem::gpu::ContextOptions;

    /// `check model` on two golden models (Gemma 4 with PLE and KV sharing; Gemma 3), every line passing.
    #[test]
    fn check_model_passes_on_tiny_goldens() {
        let ctx = Context::new_blocking(ContextOptions::from_env()).expect("GPU test needs an adapter");
        for name in ["tiny-gemma4-Q4_K_M", "tiny-gemma3-Q6_K"] {
            let path = format!("{}/../golden/fixtures/{name}.gguf", env!("CARGO_MANIFEST_DIR"));
            let model = ModelFile::open(&path).unwrap();
            let tally = check(&ctx, &model, 4, None).unwrap();
            assert_eq!(tally.failed, 0, "{name}");
            // Embedding, PLE inputs, 11 per owner layer (fewer on shared/PLE-less ones), final norm; 9 more checks.
            assert!(tally.passed > 50, "{name}: only {} checks ran", tally.passed);
        }
    }
}
