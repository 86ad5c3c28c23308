//! The GPU Gemma forward pass against the independent goldens (`golden/README.md`), on every tiny Gemma 4 / Gemma 3
//! GGUF, with the full device and in downlevel mode (WebGPU defaults: no f16, no subgroups, 128 MiB bindings):
//! - prefill logits of the 33-token golden prompt against HF transformers' float32 forward on the same dequantized
//!   weights (`hf_dequant_logits.npy`, the exact-math reference): max |Δ| and NMSE;
//! - argmax against llama.cpp (`llama_logits.npy`), which quantizes activations and is only close;
//! - prefill against token-by-token decode through the KV cache (rings of window + max_chunk − 1 slots, donors);
//! - every byte freed when the model is dropped.
//!
//! Run with `cargo test -p ferrogem-harness --test model_goldens -- --nocapture` to see the table. A GPU test never
//! skips: no adapter fails it (CI has lavapipe).

use ferrogem::gpu::{Context, ContextOptions};
use ferrogem::models::ModelFile;
use ferrogem::models::gemma::{GemmaOptions, LogitRows};
use ferrogem::ops::attention::CacheType;
use ferrogem_harness::golden::{
    LogitAgreement, MAX_ABS_PREFILL_VS_DECODE, MAX_ABS_VS_HF_F16_KV, MODELS, Peer, argmax, fixture, within,
};

fn prompt(name: &str) -> Vec<u32> {
    ferrogem_harness::golden::prompt(name).unwrap()
}

fn golden(name: &str, peer: Peer) -> Vec<f32> {
    ferrogem_harness::golden::logits(name, peer).unwrap().concat()
}

fn open(name: &str) -> ModelFile {
    ModelFile::open(fixture(&format!("{name}.gguf")).to_str().unwrap()).unwrap()
}

fn gpu(downlevel: bool) -> Context {
    let options = ContextOptions { downlevel, ..ContextOptions::from_env() };
    Context::new_blocking(options).unwrap_or_else(|e| panic!("GPU test needs an adapter and found none: {e}"))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn goldens(downlevel: bool) {
    let ctx = gpu(downlevel);
    let mode = if downlevel { "downlevel" } else { "full" };
    let mut failures = Vec::new();
    println!(
        "[{mode}] {:<20} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "model", "max|Δ|HF", "NMSE HF", "=HF", "=llama", "chunked", "decode", "rewind", "disp/token"
    );
    for name in MODELS {
        let file = open(name);
        let ids = prompt(name);
        let n = ids.len();
        let hf = golden(name, Peer::Hf);
        let llama = golden(name, Peer::Llama);
        let mut fail = |what: String| failures.push(format!("[{mode}] {name}: {what}"));

        // The whole prompt in one chunk (tiled mul_mat, one attention pass over 33 queries).
        let options = GemmaOptions { max_chunk: 64, n_ctx: 64, ..GemmaOptions::default() };
        let mut model = file.load(&ctx, options, &mut |_| {}).unwrap();
        let prefill = model.forward_blocking(&ids, 0, LogitRows::All).unwrap();
        let vocab = prefill.vocab as usize;
        let st = LogitAgreement::measure(&prefill.values, vocab, &hf, &llama);
        drop(model);

        // Chunks of 16 (16 + 16 + 1): sliding rings of 8 + 16 − 1 slots wrap; then token by token, then a rewind.
        let options = GemmaOptions { max_chunk: 16, n_ctx: 64, ..GemmaOptions::default() };
        let mut model = file.load(&ctx, options, &mut |_| {}).unwrap();
        let chunked = model.forward_blocking(&ids, 0, LogitRows::All).unwrap();
        let chunked_max = max_abs_diff(&chunked.values, &prefill.values);
        model.reset();
        let (mut decode_max, mut dispatches, mut misses_after_warmup) = (0.0f32, 0, 0);
        for (i, &t) in ids.iter().enumerate() {
            let step = model.forward_blocking(&[t], i as u32, LogitRows::Last).unwrap();
            decode_max = decode_max.max(max_abs_diff(step.row(0), prefill.row(i)));
            dispatches = model.last_dispatches;
            let misses = ctx.bind_cache_stats().by_phase.iter().map(|(_, c)| c.misses).sum::<u64>();
            // Steady-state decode creates no bind group once every split plan has been seen (the window fills).
            if i == 20 {
                misses_after_warmup = misses;
            } else if i > 20 && misses != misses_after_warmup {
                fail(format!("decode step {i} created bind groups"));
                misses_after_warmup = misses;
            }
        }
        // Rewind 3 positions (the rings still hold what they see) and redo them as one chunk.
        let redo = model.forward_blocking(&ids[n - 3..], (n - 3) as u32, LogitRows::All).unwrap();
        let rewind_max = max_abs_diff(&redo.values, &prefill.values[(n - 3) * vocab..]);
        // Rewinding further than a sliding ring reaches is refused.
        if model.forward_blocking(&ids[..1], 2, LogitRows::Last).is_ok() {
            fail("a rewind past the sliding ring's reach was accepted".into());
        }
        println!(
            "[{mode}] {name:<20} {:>9.2e} {:>9.2e} {:>6}/{n} {:>6}/{n} {chunked_max:>9.2e} {decode_max:>9.2e} {rewind_max:>9.2e} {dispatches:>10}",
            st.max_abs, st.nmse, st.agree_hf, st.agree_llama
        );
        st.shortfalls().into_iter().for_each(&mut fail);
        for (what, d) in
            [("chunked prefill", chunked_max), ("token-by-token decode", decode_max), ("rewound chunk", rewind_max)]
        {
            if !within(d as f64, MAX_ABS_PREFILL_VS_DECODE as f64) {
                fail(format!("{what} differs from the one-chunk prefill by {d:.3e} > {MAX_ABS_PREFILL_VS_DECODE:e}"));
            }
        }
        drop(model);
        ctx.wait_idle().unwrap();
        let live = ctx.memory().live_bytes;
        if live != 0 {
            fail(format!("{live} bytes still live after the model was dropped"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// An f16 KV cache (where the device grants SHADER_F16): K and V rounded to f16 on write.
#[test]
fn gpu_model_f16_kv_cache() {
    let ctx = gpu(false);
    if !ctx.caps().f16 {
        // Refused with a typed error rather than silently run in f32.
        let file = open("tiny-gemma4-f32");
        let options = GemmaOptions { kv_cache: CacheType::F16, ..GemmaOptions::default() };
        assert!(file.load(&ctx, options, &mut |_| {}).is_err());
        return;
    }
    for name in ["tiny-gemma4-f32", "tiny-gemma3-Q4_K_M"] {
        let file = open(name);
        let ids = prompt(name);
        let options = GemmaOptions { max_chunk: 16, n_ctx: 64, kv_cache: CacheType::F16, ..GemmaOptions::default() };
        let mut model = file.load(&ctx, options, &mut |_| {}).unwrap();
        let logits = model.forward_blocking(&ids, 0, LogitRows::All).unwrap();
        let st = LogitAgreement::measure(
            &logits.values,
            logits.vocab as usize,
            &golden(name, Peer::Hf),
            &golden(name, Peer::Llama),
        );
        println!(
            "[f16 kv] {name:<20} max|Δ|HF {:.2e} NMSE {:.2e} argmax=HF {}/{}",
            st.max_abs,
            st.nmse,
            st.agree_hf,
            ids.len()
        );
        assert!(st.max_abs <= MAX_ABS_VS_HF_F16_KV, "{name}: max |Δ| vs HF {:.3e}", st.max_abs);
        assert!(st.agree_hf + 1 >= ids.len(), "{name}: argmax agrees with HF at {} positions", st.agree_hf);
    }
}

#[test]
fn gpu_model_goldens_full() {
    goldens(false);
}

#[test]
fn gpu_model_goldens_downlevel() {
    goldens(true);
}

/// The real Gemma 3 270M (`golden/README.md` "The real model"; `ci/fetch-models.sh` puts its path in
/// FERROGEM_GEMMA3_270M): greedy decoding of "The capital of France is" on the GPU follows llama.cpp's continuation,
/// full and downlevel. Its 262144-row tied embedding (178 MB of Q8_0) is split in two under the 128 MiB binding
/// limit, so the LM head and the embedding lookup run per part.
#[test]
fn gpu_real_gemma3_270m_greedy_matches_llama_cpp() {
    let path = std::env::var("FERROGEM_GEMMA3_270M").expect(
        "FERROGEM_GEMMA3_270M must name the real Gemma 3 270M: run `export FERROGEM_GEMMA3_270M=$(bash ci/fetch-models.sh)`",
    );
    let file = ModelFile::open(&path).unwrap();
    let ids = [2u32, 818, 5279, 529, 7001, 563];
    for downlevel in [false, true] {
        let ctx = gpu(downlevel);
        let t0 = std::time::Instant::now();
        let mut model = file.load(&ctx, GemmaOptions { n_ctx: 64, ..GemmaOptions::default() }, &mut |_| {}).unwrap();
        assert!(model.weights.token_embd.w.parts.len() >= 2, "the embedding should be split under a 128 MiB binding");
        let t_load = t0.elapsed();
        let t1 = std::time::Instant::now();
        let mut next = argmax(model.forward_blocking(&ids, 0, LogitRows::Last).unwrap().row(0)) as u32;
        let t_prefill = t1.elapsed();
        let mut greedy = vec![next];
        let t2 = std::time::Instant::now();
        for pos in ids.len()..ids.len() + 6 {
            next = argmax(model.forward_blocking(&[next], pos as u32, LogitRows::Last).unwrap().row(0)) as u32;
            greedy.push(next);
        }
        println!(
            "270M on the GPU ({}): load {t_load:.2?}, prefill of 6 {t_prefill:.2?}, 6 decode steps {:.2?} ({} dispatches each); greedy {greedy:?}",
            if downlevel { "downlevel" } else { "full" },
            t2.elapsed(),
            model.last_dispatches
        );
        assert_eq!(greedy, [506, 5279, 529, 506, 2891, 529, 7001]);
        drop(model);
        ctx.wait_idle().unwrap();
        assert_eq!(ctx.memory().live_bytes, 0, "bytes outlived the model");
    }
}
