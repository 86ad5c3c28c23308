//! NMSE limits, one table keyed by (op, storage type). Each entry says where its number comes from.

/// The largest NMSE against the candle reference that passes for `op` on tensors stored as `dtype` (ggml
/// spelling, lower case: "f32", "f16", "q4_k", …).
pub fn max_nmse(op: &str, dtype: &str) -> f64 {
    match (op, dtype) {
        // Every product in a ggml dequantizer is exact in f32 and rounds once, even when fused: our WGSL decoders
        // must equal gguf-py's (and ggml's) values bit for bit. Any difference is a bug.
        ("dequant", _) => 0.0,
        // A gather only decodes: exact but for at most one fused multiply-add rounding in `d·q − m`. Measured 0 on
        // lavapipe and an H100; the generic quant limit below would hide decoding bugs.
        ("get_rows", _) => 1e-12,
        // One f32 rounding of the same inputs in kernel and reference: only fused-multiply-add contraction
        // differs. Measured ≤ 1e-15 on lavapipe.
        ("add" | "mul" | "scale" | "mul_scalar", "f32") => 1e-12,
        // A copy, or a copy with one f16 rounding that the reference rounds the same way: exact. Measured 0.
        ("set_rows", _) => 0.0,
        // Products of dequantized weights (any storage type) with f32 activations, accumulated in f32, against
        // candle's dequantization of the same blocks times x in f64: only the f32 accumulation differs, NMSE
        // ~k·2^-48 ≈ 4e-11 at k = 12288. Measured ≤ 3.3e-13. (ggml's own bound, 5e-4, is for 8-bit activations.)
        ("mul_mat" | "mul_mat_vec", _) => 1e-9,
        // The same products on cooperative matrices: W's dequantized values and x rounded to f16 (2^-11 relative
        // each) before f32 products and sums, so NMSE ≈ 2·(2^-11)²/3 ≈ 1.6e-7 for any k; the f16 storage bound.
        ("mul_mat_coop", _) => 1e-6,
        // The same products (NMSE ≤ 1e-9, above) through the f32 tanh-form gelu and a product, as `geglu`: the
        // activation's f32 rounding bounds it, so the `geglu` f32 bound applies.
        ("mul_mat_vec_geglu", _) => 1e-7,
        // Two f32 row reductions (the post-norm's and the next pre-norm's) and an add: ~n·2^-24 relative per sum, the
        // bound for f32 ops with reductions (as rms_norm).
        ("rms_norm_add", "f32") => 1e-7,
        // rms_norm then rope in f32; the position-dependent rope term is added by `cases::norm_rope`, and an f16 cache
        // store falls to the f16 storage bound below.
        ("rms_norm_rope" | "rms_norm_rope_kv", "f32") => 1e-7,
        // A rank-r dot product in f32 added to y, against candle's f32 matmul and add: summation order only, at
        // r ≤ 64 ~r·2^-48. The bound of plain f32 ops with dot products (brief: ~1e-7) would hide a wrong slice
        // far less often than this one. Measured ≤ 1.4e-14 on lavapipe.
        ("lora_add", "f32") => 1e-10,
        // A down-projection of length in_dim (≤ 12288) summed in f32 in another order than candle's: still
        // summation order only.
        ("lora_down", "f32") => 1e-10,
        // A half-precision store rounds at 2^-11 relative: (2^-11)^2 / 3 ≈ 8e-8 NMSE; the reference rounds the
        // same way, so only ties differ. Brief: "f16 storage ≥ 1e-6".
        (_, "f16" | "bf16") => 1e-6,
        // Backward kernels (grad mode) against f64 finite differences and f64 autograd of the reference forward, which
        // agree with each other to far below this: the kernel's f32 rounding bounds the gap, as for the forward f32
        // ops with reductions and transcendental functions below.
        (
            "rms_norm_back" | "geglu_back" | "cross_entropy_back" | "gelu_back" | "softcap_back" | "attention_back",
            "f32",
        ) => 1e-7,
        // A few f32 roundings per element (two moments, a sqrt and a divide, twice) against f64: ~1e-14 expected. The
        // cases size parameters so each term moves them (cases::adamw), so this bound still sees a wrong term.
        ("adamw", "f32") => 1e-10,
        // One f32 sum of squares (≤ 3e6 terms in 256 partial sums of ≤ 12k, then one of 256), a sqrt and a divide,
        // against f64: positive terms in short partial sums keep the relative error near ε·log(n) rather than the
        // ~n·ε worst case; measured ≤ 4.6e-15 on lavapipe. The sum_rows bound.
        ("grad_norm", "f32") => 1e-10,
        // A product with the scale: one f32 rounding, as `scale` below.
        ("scale_back", "f32") => 1e-12,
        // mul_mat's gradients are f32 dot products like its forward (below): summation order only.
        ("mul_mat_back", "f32") => 1e-9,
        // The input gradient on cooperative matrices: dy (scaled per token by a power of two, which is exact) and W's
        // dequantized values rounded to f16 before f32 products and sums, as `mul_mat_coop`'s forward: ≈ 1.6e-7.
        ("mul_mat_coop_back", "f32") => 1e-6,
        // f32 sums in a different order: ~n·2^-24 relative per term; measured ≤ 1e-13 at n = 2048.
        ("sum_rows" | "stream_read", "f32") => 1e-10,
        // rope's bound grows with the largest angle (see `cases::rope::rope_max_nmse`); this is its floor, for small
        // angles: a rotation by cos/sin good to f32 rounding. It fails sin/cos at the 2^-11 absolute error WGSL
        // permits (NMSE ~1e-7, what Chromium's SwiftShader gave before rope_angle.wgsl computed its own).
        ("rope", "f32") => 1e-11,
        // The brief's bound for plain f32 ops with reductions, transcendental functions or dot products.
        (_, "f32") => 1e-7,
        // Quantized products with f32 dequantization and f32 activations differ from the reference on the same
        // dequantized weights only by summation order; ggml's own bound with 8-bit activations is 5e-4 (the brief).
        _ => 5e-4,
    }
}
