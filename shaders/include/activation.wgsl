// Scalar activations shared by unary.wgsl (gelu, softcap), glu.wgsl (geglu) and glu_back.wgsl (gelu_grad), all
// in f32.
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

// d gelu / dx of the tanh form: with u = √(2/π)·(x + 0.044715·x³) and t = tanh(u),
// 0.5·(1 + t) + 0.5·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²). Past safe_tanh's clamp (|u| ≥ 10) t is ±1 and the
// second term under 1e-7, returned as 0 so that x³ overflowing cannot make it 0·inf = NaN.
fn gelu_grad(x: f32) -> f32 {
    let u = SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x);
    let t = safe_tanh(u);
    if abs(u) >= 10.0 {
        return 0.5 * (1.0 + t);
    }
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_COEF_A * x * x);
}
