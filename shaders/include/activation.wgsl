// Scalar activations shared by unary.wgsl (gelu, softcap) and glu.wgsl (geglu), all in f32.
// safe_tanh clamps its argument first: tanh lowered as (e^2z − 1)/(e^2z + 1) overflows to inf/inf = NaN for
// |z| ≳ 44 on some drivers, and tanh(±10) already rounds to ±1 in f32, so the clamp changes no result.
// gelu is the tanh approximation (ggml `gelu`, PyTorch `gelu_pytorch_tanh`, candle `Tensor::gelu`):
// 0.5·x·(1 + tanh(√(2/π)·x·(1 + 0.044715·x²))); x³ overflowing to ±inf is clamped like any large argument.

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const GELU_COEF_A: f32 = 0.044715;

fn safe_tanh(z: f32) -> f32 {
    return tanh(clamp(z, -10.0, 10.0));
}

fn gelu(x: f32) -> f32 {
    return 0.5 * x * (1.0 + safe_tanh(SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x)));
}
