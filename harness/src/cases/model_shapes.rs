//! The exact op shapes of real models — Gemma 4 E2B and E4B, Gemma 3 270M — derived from GGUF metadata alone
//! (`golden/shapes/*.gguf`: hyperparameters without tensors, made by `golden/scripts/make_shape_metadata.py`).
//! Large ones are declined on slow adapters by `--max-elements`, with the reason printed; a real GPU runs them all.

use super::OpCase;
use super::attention::{AttentionCase, shape as attention_shape};
use super::get_rows::GetRowsCase;
use super::glu::GegluCase;
use super::mul_mat::MulMatCase;
use super::mul_mat_vec_geglu::{MulMatGluCase, UpSource};
use super::rms_norm::RmsNormCase;
use super::rms_norm_add::RmsNormAddCase;
use super::rms_norm_rope::{KvCase, RmsNormRopeCase};
use super::rope::RopeCase;
use super::unary::{UnaryCase, UnaryCaseOp};
use ferrogem::gguf::GgufFile;
use ferrogem::models::{Arch, TextConfig};
use ferrogem::ops::attention::CacheType;
use ferrogem::ops::binary::StorageType;
use ferrogem::ops::mul_mat::MulMatPath;
use ferrogem::ops::unary::UnaryOp;
use ferrogem::quant::QuantType;
use ferrogem::source::MemSource;
use std::collections::BTreeSet;

const MODELS: [(&str, &[u8]); 3] = [
    ("gemma4-e2b", include_bytes!("../../../golden/shapes/gemma4-e2b.gguf")),
    ("gemma4-e4b", include_bytes!("../../../golden/shapes/gemma4-e4b.gguf")),
    ("gemma3-270m", include_bytes!("../../../golden/shapes/gemma3-270m.gguf")),
];

/// Tokens in the prefill-shaped cases: one llama-bench-style prompt chunk.
const PREFILL_TOKENS: u32 = 512;
/// Decode position in the attention cases: past the sliding window, so rings have wrapped.
const DECODE_POS: u32 = 1500;
/// Weight types a Q4_K_M file uses for its matrices: Q4_K mostly, Q6_K for some ffn_down/attn_v and the
/// embedding, Q8_0 in small or first/last layers; and Q5_0 in Gemma 3 270M.
const DECODE_TYPES: [QuantType; 4] = [QuantType::Q4K, QuantType::Q6K, QuantType::Q8_0, QuantType::Q5_0];

/// `max_storage_buffer_binding_size` in the WebGPU defaults (and on lavapipe): 128 MiB.
const WEBGPU_DEFAULT_BINDING_BYTES: u64 = 128 << 20;

pub fn configs() -> Vec<(&'static str, TextConfig)> {
    MODELS
        .iter()
        .map(|(name, bytes)| {
            let gguf = GgufFile::read(&MemSource::new(bytes.to_vec())).expect("committed shape metadata parses");
            (*name, TextConfig::from_gguf(&gguf).expect("committed shape metadata is a Gemma config"))
        })
        .collect()
}

pub fn cases() -> Vec<Box<dyn OpCase>> {
    let mut cases: Vec<Box<dyn OpCase>> = Vec::new();
    // Shapes repeat across layers and models: keep each case once, in first-seen order.
    let mut seen = BTreeSet::new();
    let mut push = |case: Box<dyn OpCase>| {
        if seen.insert(case.name()) {
            cases.push(case);
        }
    };
    for (_, c) in configs() {
        let h = c.hidden;
        let mut matmuls: Vec<(u32, u32)> = Vec::new();
        for l in &c.layers {
            let (q, kv) = (c.n_head * l.head_dim, l.n_kv_head * l.head_dim);
            matmuls.extend([(q, h), (h, q), (l.ffn_dim, h), (h, l.ffn_dim)]);
            if l.owns_kv() {
                matmuls.push((kv, h));
            }
            if c.ple_dim > 0 {
                matmuls.extend([(c.ple_dim, h), (h, c.ple_dim)]);
            }
            for rows in [c.n_head, l.n_kv_head] {
                push(Box::new(RmsNormCase::new(l.head_dim, rows, true, c.rms_eps)));
            }
            if c.arch == Arch::Gemma4 {
                push(Box::new(RmsNormCase::new(l.head_dim, l.n_kv_head, false, c.rms_eps)));
            }
            let rotated = (c.arch == Arch::Gemma4 && !l.sliding).then_some(l.head_dim / 8);
            push(Box::new(RopeCase::new(l.head_dim, l.head_dim, c.n_head, 1, l.rope_base, rotated, DECODE_POS, true)));
            push(Box::new(GegluCase::new(l.ffn_dim as usize, 4.0)));
            let window = l.window.unwrap_or(u32::MAX);
            let capacity = if l.sliding { window } else { DECODE_POS + 1 };
            // The decode step's fused per-head kernels: q norm + RoPE, and on owner layers k norm + RoPE + KV write
            // beside the V norm + write, into the ring slot of DECODE_POS.
            let (hd, base, eps) = (l.head_dim, l.rope_base, c.rms_eps);
            push(Box::new(RmsNormRopeCase::new(hd, c.n_head, 1, base, rotated, DECODE_POS, eps, None)));
            if l.owns_kv() {
                for (cache, check_v) in [(StorageType::F32, false), (StorageType::F32, true), (StorageType::F16, false)]
                {
                    let kv = KvCase {
                        cache,
                        v_norm: c.arch == Arch::Gemma4,
                        n_dst_rows: capacity,
                        ring_start: DECODE_POS % capacity,
                        out_of_range: false,
                        v_is_k: false,
                        check_v,
                    };
                    push(Box::new(RmsNormRopeCase::new(hd, l.n_kv_head, 1, base, rotated, DECODE_POS, eps, Some(kv))));
                }
            }
            // GeGLU fused into the stacked gate/up product (Q4_K_M: both Q4_K; Q8_0 where a row is not whole
            // super-blocks).
            let glu_type = if h % QuantType::Q4K.block_elems() as u32 == 0 { QuantType::Q4K } else { QuantType::Q8_0 };
            push(Box::new(MulMatGluCase::new(glu_type, l.ffn_dim, h, 1, UpSource::Stacked, 1)));
            for (n, pos0) in [(1, DECODE_POS), (64, 0)] {
                let cap = capacity.max(if l.sliding { window + n - 1 } else { pos0 + n });
                let s = attention_shape(
                    l.head_dim,
                    c.n_head,
                    l.n_kv_head,
                    n,
                    pos0,
                    cap,
                    window,
                    c.attention_scale,
                    CacheType::F32,
                );
                push(Box::new(AttentionCase::new(s, n == 1)));
            }
        }
        if c.ple_dim > 0 {
            let total_ple = c.ple_dim * c.n_layers() as u32;
            // The PLE gate fused with its GeGLU, reading layer 5's slice of the token-major PLE inputs.
            let up = UpSource::Vector { offset: 5 * c.ple_dim, stride: total_ple };
            push(Box::new(MulMatGluCase::new(QuantType::Q4K, c.ple_dim, h, 1, up, 1)));
            matmuls.push((total_ple, h));
            push(Box::new(RmsNormCase::new(c.ple_dim, c.n_layers() as u32, true, c.rms_eps)));
            // The PLE rows of a 7-token prompt, gathered on the host and dequantized on the GPU.
            push(Box::new(GetRowsCase::new(QuantType::Q6K, 7, total_ple, 7, false, 1)));
        }
        for tokens in [1, 7] {
            push(Box::new(RmsNormCase::new(h, tokens, true, c.rms_eps)));
            // Post-norm + residual add (+ layer scale) + the next pre-norm, both outputs.
            for check_normed in [false, true] {
                push(Box::new(RmsNormAddCase::new(h, tokens, Some(0.75), true, check_normed, c.rms_eps)));
            }
            push(Box::new(RmsNormAddCase::new(h, tokens, None, false, false, c.rms_eps)));
        }
        push(Box::new(UnaryCase::new(UnaryCaseOp::MulScalar(0.75), h as usize, 4.0, true)));
        push(Box::new(UnaryCase::new(UnaryCaseOp::Op(UnaryOp::Softcap, 30.0), c.vocab as usize, 60.0, true)));
        // Q4_K_M embeds in Q6_K where the row is whole super-blocks, else (Gemma 3 270M, H = 640) in Q8_0.
        let embd_type = if h % QuantType::Q6K.block_elems() as u32 == 0 { QuantType::Q6K } else { QuantType::Q8_0 };
        push(Box::new(GetRowsCase::new(embd_type, c.vocab, h, 7, false, 1)));
        // The tied LM head (the embedding table as a matrix) runs for the last token only, also after a prefill.
        // It is split on rows under the WebGPU default binding limit, as the model loads it.
        for wtype in DECODE_TYPES.into_iter().filter(|t| (h as u64).is_multiple_of(t.block_elems())) {
            let table_bytes = c.vocab as u64 * (h as u64 / wtype.block_elems()) * wtype.block_bytes();
            let parts = table_bytes.div_ceil(WEBGPU_DEFAULT_BINDING_BYTES) as u32;
            push(Box::new(MulMatCase::new(wtype, c.vocab, h, 1, MulMatPath::Vec, parts)));
        }
        for (m, k) in matmuls {
            // A row must be whole blocks: quantizers fall back to other types where it is not.
            let fits = |t: QuantType| (k as u64).is_multiple_of(t.block_elems());
            for wtype in DECODE_TYPES.into_iter().filter(|t| fits(*t)) {
                push(Box::new(MulMatCase::new(wtype, m, k, 1, MulMatPath::Vec, 1)));
            }
            let prefill_type = if fits(QuantType::Q4K) { QuantType::Q4K } else { QuantType::Q5_0 };
            for path in [MulMatPath::Tiled, MulMatPath::Coop, MulMatPath::CoopWide] {
                push(Box::new(MulMatCase::new(prefill_type, m, k, PREFILL_TOKENS, path, 1)));
            }
            // The square coop tile with room to split k, as the model lends its products (gate/up aside). Not the
            // tiled kernel's: it would double the time these shapes take on lavapipe.
            let split = MulMatCase::new(prefill_type, m, k, PREFILL_TOKENS, MulMatPath::Coop, 1).with_k_split();
            push(Box::new(split));
        }
    }
    cases
}
