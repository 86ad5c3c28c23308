//! One CPU reference per op, on candle-core, shared by the op cases (`cases/<op>.rs`) and the reference model
//! (`forward.rs`, `attention.rs`), named as the ops are. Each computes in the dtype of its inputs: the cases pass
//! f64 (or f32 where the kernel's own rounding is the point), the model f32. None is a port of a kernel.

use super::weights::err;
use candle_core::{D, DType, Device, Result, Tensor};

/// `rms_norm`: `x / sqrt(mean(x²) + eps) ⊙ w` over the last axis; `w` = None is the unweighted norm (Gemma 4's V).
pub fn rms_norm(x: &Tensor, w: Option<&Tensor>, eps: f32) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let y = x.broadcast_div(&(ms + eps as f64)?.sqrt()?)?;
    match w {
        Some(w) => y.broadcast_mul(&w.to_dtype(x.dtype())?),
        None => Ok(y),
    }
}

/// `mul_mat` with a row-major `[out][in]` weight (GGUF dims `[in, out]`): `x · wᵀ`, x `[n, in]` → `[n, out]`.
pub fn mul_mat(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.matmul(&w.t()?)
}

/// `geglu`: `gelu(gate) ⊙ up` with the tanh-form gelu (candle's `gelu`; `gelu_erf` is the exact one).
pub fn geglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.gelu()? * up
}

/// `softcap`: `cap · tanh(x / cap)`.
pub fn softcap(x: &Tensor, cap: f32) -> Result<Tensor> {
    (x / cap as f64)?.tanh()? * cap as f64
}

/// NeoX ("rotate-half") `rope` on x `[n, heads, head_dim]`, token t at `positions[t]`: for i < n_dims/2, elements i
/// and i + n_dims/2 turn by θ_i = p · freq_scale · base^(−2i/n_dims) / ff_i; elements past `n_dims` pass through.
/// `freq_divisors` holds ff_i (Gemma 4's `rope_freqs`; 1e30 leaves a pair unrotated). Angles are computed in f64 and
/// their cos/sin rounded once to x's dtype.
pub fn rope(
    x: &Tensor,
    positions: &[u32],
    n_dims: usize,
    base: f32,
    freq_scale: f64,
    freq_divisors: Option<&[f32]>,
) -> Result<Tensor> {
    let (n, _, hd) = x.dims3()?;
    let half = n_dims / 2;
    if !n_dims.is_multiple_of(2) || n_dims > hd || positions.len() != n {
        return Err(err(format!("rope: n_dims {n_dims}, head dim {hd}, {} positions for {n} rows", positions.len())));
    }
    let (mut cos, mut sin) = (Vec::with_capacity(n * half), Vec::with_capacity(n * half));
    for &p in positions {
        for i in 0..half {
            let ff = freq_divisors.map_or(1.0, |f| f[i] as f64);
            let theta = p as f64 * freq_scale * (base as f64).powf(-2.0 * i as f64 / n_dims as f64) / ff;
            cos.push(theta.cos());
            sin.push(theta.sin());
        }
    }
    let table = |v: Vec<f64>| Tensor::from_vec(v, (n, 1, half), x.device())?.to_dtype(x.dtype());
    let (cos, sin) = (table(cos)?, table(sin)?);
    let (x1, x2) = (x.narrow(2, 0, half)?, x.narrow(2, half, half)?);
    let mut parts = vec![
        (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?,
        (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?,
    ];
    if n_dims < hd {
        parts.push(x.narrow(2, n_dims, hd - n_dims)?);
    }
    Tensor::cat(&parts, 2)
}

/// 0 where the query at position `q_pos0 + i` may see the key at `key_positions[t]`, −∞ elsewhere: causal, and
/// within `window` (p − p' < window) on sliding layers. `[n_q, keys]` of `dtype`.
pub fn attention_mask(
    q_pos0: u64,
    n_q: usize,
    key_positions: &[u64],
    window: Option<u32>,
    dtype: DType,
) -> Result<Tensor> {
    let mut m = Vec::with_capacity(n_q * key_positions.len());
    for i in 0..n_q as u64 {
        let p = q_pos0 + i;
        for &pk in key_positions {
            let visible = pk <= p && window.is_none_or(|w| p - pk < w as u64);
            m.push(if visible { 0.0f64 } else { f64::NEG_INFINITY });
        }
    }
    Tensor::from_vec(m, (n_q, key_positions.len()), &Device::Cpu)?.to_dtype(dtype)
}

/// `attention`: softmax(softcap(scale · q·kᵀ) + mask) · v per head. q `[n, nh, hd]` at positions `q_pos0..`; k, v
/// `[keys, nkv, hd]` at `key_positions`; query head j reads KV head ⌊j / (nh/nkv)⌋ (grouped-query attention).
/// `softcap` 0 is none. Returns `[n, nh · hd]`.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    q_pos0: u64,
    key_positions: &[u64],
    window: Option<u32>,
    scale: f32,
    softcap_value: f32,
) -> Result<Tensor> {
    let (n, nh, hd) = q.dims3()?;
    let (_, nkv, _) = k.dims3()?;
    let group = nh / nkv;
    let heads: Vec<u32> = (0..nh).map(|j| (j / group) as u32).collect();
    let heads = Tensor::new(heads.as_slice(), q.device())?;
    // [nh, keys, hd]: each query head's KV head.
    let expand = |x: &Tensor| x.transpose(0, 1)?.contiguous()?.index_select(&heads, 0);
    let (k, v) = (expand(k)?, expand(v)?);
    let q = q.transpose(0, 1)?.contiguous()?;
    let mut scores = (q.matmul(&k.t()?.contiguous()?)? * scale as f64)?;
    if softcap_value > 0.0 {
        scores = softcap(&scores, softcap_value)?;
    }
    let scores = scores.broadcast_add(&attention_mask(q_pos0, n, key_positions, window, q.dtype())?)?;
    let max = scores.max_keepdim(D::Minus1)?;
    let e = scores.broadcast_sub(&max)?.exp()?;
    let probs = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
    probs.matmul(&v)?.transpose(0, 1)?.contiguous()?.reshape((n, nh * hd))
}

/// Per-row cross-entropy of `[rows, n]` logits: `logsumexp(x[r]) − x[r][targets[r]]`, a target ≥ n leaving its
/// row out (loss 0). The maximum subtracted inside logsumexp is detached: it cancels exactly, so autograd through
/// it would only add rounding.
pub fn cross_entropy(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    let (rows, n) = logits.dims2()?;
    let (mut onehot, mut trained) = (vec![0f64; rows * n], vec![0f64; rows]);
    for (r, &t) in targets.iter().enumerate().filter(|&(_, &t)| (t as usize) < n) {
        onehot[r * n + t as usize] = 1.0;
        trained[r] = 1.0;
    }
    let (device, dtype) = (logits.device(), logits.dtype());
    let onehot = Tensor::from_vec(onehot, (rows, n), device)?.to_dtype(dtype)?;
    let trained = Tensor::from_vec(trained, rows, device)?.to_dtype(dtype)?;
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let logsumexp = (logits.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?.log()? + &max)?.squeeze(D::Minus1)?;
    (logsumexp - (logits * onehot)?.sum(D::Minus1)?)? * trained
}
