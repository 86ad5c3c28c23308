//! Cases for ggml `rope` (NeoX pairing), out of place and in place, with and without frequency factors (Gemma 4
//! proportional RoPE: ff = 1 for the first pairs, 1e30 beyond), small and large positions.
//!
//! The reference is `reference::ops::rope`, the one the reference model uses: angles `pos · freq_scale ·
//! base^(−2i/n_dims) / ff_i` and their cos/sin in f64, rounded once to f32; the rotation is candle
//! narrow/mul/sub/add/cat on `[n_tokens, n_heads, head_dim]` in f32. In grad mode the out-of-place cases check
//! `rope_back` (the rotation's transpose) with the forward's bound: the same angles, the same roundings.

use super::grad::{BuiltGrad, GRAD_MAX_ELEMS, GradOutput, cpu_gradients};
use super::{Built, CaseResult, OpCase, OutType, cpu, guarded_output, seeded, upload_f32};
use crate::reference::ops;
use crate::tolerance::max_nmse;
use candle_core::{DType, Tensor};
use ferrogem::gpu::{Category, Context, GpuBuffer};
use ferrogem::ops::rope::{RopeShape, rope, rope_back, rope_inplace};
use std::rc::Rc;

pub struct RopeCase {
    head_dim: u32,
    n_dims: u32,
    n_heads: u32,
    n_tokens: u32,
    base: f32,
    freq_scale: f32,
    /// Pairs that rotate when frequency factors are used (the rest get ff = 1e30); None: no factors.
    rotated_pairs: Option<u32>,
    /// Positions are 0..n_tokens when this is below n_tokens, else seeded in [0, max_pos] with max_pos included.
    max_pos: u32,
    inplace: bool,
}

impl RopeCase {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        head_dim: u32,
        n_dims: u32,
        n_heads: u32,
        n_tokens: u32,
        base: f32,
        rotated_pairs: Option<u32>,
        max_pos: u32,
        inplace: bool,
    ) -> Self {
        RopeCase { head_dim, n_dims, n_heads, n_tokens, base, freq_scale: 1.0, rotated_pairs, max_pos, inplace }
    }

    pub fn with_freq_scale(self, freq_scale: f32) -> Self {
        RopeCase { freq_scale, ..self }
    }

    fn positions(&self) -> Vec<u32> {
        case_positions(&self.name(), self.n_tokens, self.max_pos)
    }

    fn freq_factors(&self) -> Option<Vec<f32>> {
        freq_factors(self.n_dims, self.rotated_pairs)
    }
}

/// Positions 0..n_tokens when `max_pos` is below n_tokens, else seeded from `name` in [0, max_pos] with max_pos and
/// max_pos − 1 included.
pub fn case_positions(name: &str, n_tokens: u32, max_pos: u32) -> Vec<u32> {
    if max_pos < n_tokens {
        return (0..n_tokens).collect();
    }
    let r = seeded(&format!("{name}/pos"), n_tokens as usize);
    let mut pos: Vec<u32> = r.iter().map(|v| ((v + 1.0) / 2.0 * max_pos as f32) as u32 % (max_pos + 1)).collect();
    pos[0] = max_pos;
    if pos.len() > 1 {
        pos[1] = max_pos - 1;
    }
    pos
}

/// Gemma 4 proportional RoPE factors: 1 for the first `rotated_pairs` pairs, 1e30 (not rotated) beyond.
pub fn freq_factors(n_dims: u32, rotated_pairs: Option<u32>) -> Option<Vec<f32>> {
    rotated_pairs.map(|k| (0..n_dims / 2).map(|i| if i < k { 1.0 } else { 1e30 }).collect())
}

/// The NMSE bound for angles up to `max_angle` radians (pair 0 turns by `freq_scale · pos`). The kernel computes the
/// angle in f32 (as ggml does), so it carries an error proportional to ulp(θ) ≤ θ·2^-23: ½ ulp in the product, ~1–3
/// ulp in its `exp2`-based inverse frequency (22-bit exp2 on lavapipe, and on NVIDIA's ex2.approx); the reference's
/// f64 angle is exact by comparison. A rotation with angle errors δθ_i has NMSE ≈ mean_i(δθ_i²), and only the
/// fastest pairs come near θ_max, so `(θ_max·2^-23)²/8` allows an RMS error of 0.35 ulp(θ_max) over all pairs;
/// measured on lavapipe against an f32-angle reference: ≤ 0.03·(θ_max·2^-23)² (4.6e-7 at position 32768, 5.9e-6 at
/// 131071), and that reference is itself 4.4e-8 (32768) and 6.3e-7 (131071) away from f64 angles, so no fixed f32
/// bound holds at long context. Small angles fall back to the table's f32 entry.
// TODO(tolerance.rs): a ("rope", "f32") entry can't express the position dependence; keep this here.
pub fn rope_max_nmse(max_angle: f64) -> f64 {
    let ulp = max_angle * (-23f64).exp2();
    max_nmse("rope", "f32") + ulp * ulp / 8.0
}

pub fn cases() -> Vec<Box<dyn OpCase>> {
    let mut cases: Vec<Box<dyn OpCase>> = Vec::new();
    for head_dim in [32, 64, 128, 256, 512] {
        let (n_heads, n_tokens) = if head_dim == 512 { (2, 5) } else { (3, 5) };
        for max_pos in [0, 4096, 32768] {
            for base in [1e4, 1e6] {
                cases.push(Box::new(RopeCase::new(head_dim, head_dim, n_heads, n_tokens, base, None, max_pos, false)));
            }
            // Proportional: a quarter of the pairs rotate (Gemma 4 full layers: 64 of 256).
            cases.push(Box::new(RopeCase::new(
                head_dim,
                head_dim,
                n_heads,
                n_tokens,
                1e6,
                Some(head_dim / 8),
                max_pos,
                false,
            )));
        }
        // In place: decode (one token, 8 heads) at a large position, plain and proportional.
        cases.push(Box::new(RopeCase::new(head_dim, head_dim, 8, 1, 1e4, None, 32768, true)));
        cases.push(Box::new(RopeCase::new(head_dim, head_dim, 8, 1, 1e6, Some(head_dim / 8), 32768, true)));
        cases.push(Box::new(RopeCase::new(head_dim, head_dim, 3, 7, 1e4, None, 4096, true)));
    }
    // ggml partial rotation (n_dims < head_dim: the tail passes through), out of place and in place.
    cases.push(Box::new(RopeCase::new(128, 64, 3, 5, 1e4, None, 4096, false)));
    cases.push(Box::new(RopeCase::new(128, 64, 3, 5, 1e4, None, 4096, true)));
    cases.push(Box::new(RopeCase::new(64, 32, 2, 7, 1e6, Some(4), 32768, false)));
    // Linear scaling (Gemma 3 4B+ global layers divide positions by 8).
    cases.push(Box::new(RopeCase::new(256, 256, 4, 5, 1e6, None, 131072, false).with_freq_scale(0.125)));
    // Positions 0..63 (angles up to 63 rad) at the floor tolerance: cos and sin must keep f32 accuracy over the whole
    // reduced range [−π, π], where WGSL's built-ins promise only 2^-11 (Chromium's SwiftShader: NMSE ~1e-7).
    cases.push(Box::new(RopeCase::new(32, 32, 2, 16, 1e4, None, 63, false)));
    // Long-context positions at the full layer shape (E2B: 8 heads of 512).
    cases.push(Box::new(RopeCase::new(512, 512, 8, 3, 1e6, Some(64), 131071, false)));
    cases
}

impl OpCase for RopeCase {
    fn op(&self) -> &'static str {
        "rope"
    }

    fn vars(&self) -> String {
        let ff = self.rotated_pairs.map_or(String::new(), |k| format!(",ff_pairs={k}"));
        let scale = if self.freq_scale != 1.0 { format!(",freq_scale={}", self.freq_scale) } else { String::new() };
        format!(
            "type=f32,ne=[{},{},{}],n_dims={},base={:e}{ff}{scale},max_pos={},inplace={}",
            self.head_dim, self.n_heads, self.n_tokens, self.n_dims, self.base, self.max_pos, self.inplace as u8
        )
    }

    fn max_nmse(&self) -> f64 {
        let max_pos = self.positions().into_iter().max().unwrap_or(0);
        rope_max_nmse(max_pos as f64 * self.freq_scale as f64)
    }

    fn flops(&self) -> u64 {
        3 * self.elems()
    }

    fn bytes(&self) -> u64 {
        8 * self.elems() + 4 * self.n_tokens as u64
    }

    fn elems(&self) -> u64 {
        self.head_dim as u64 * self.n_heads as u64 * self.n_tokens as u64
    }

    fn build(&self, ctx: &Context) -> CaseResult<Built> {
        let name = self.name();
        let (hd, nh, nt) = (self.head_dim as usize, self.n_heads as usize, self.n_tokens as usize);
        let x = seeded(&format!("{name}/x"), nt * nh * hd);
        let positions = self.positions();
        let ff = self.freq_factors();
        let xt = Tensor::from_vec(x.clone(), (nt, nh, hd), &cpu())?;
        let y = ops::rope(&xt, &positions, self.n_dims as usize, self.base, self.freq_scale as f64, ff.as_deref())?;
        let reference = y.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;

        let (gpos, gff, shape) = self.gpu_inputs(ctx, &positions, ff.as_deref())?;
        if self.inplace {
            // The output buffer starts as the input (followed by the guards) and is rotated where it lies.
            let mut init = x.clone();
            init.extend([super::GUARD_VALUE; super::GUARD_ELEMS]);
            let output = upload_f32(ctx, "x", &init)?;
            let out = Rc::clone(&output);
            return Ok(Built {
                record: Box::new(move |batch| rope_inplace(batch, &out, &gpos, gff.as_deref(), &shape)),
                output,
                output_type: OutType::F32,
                reference,
            });
        }
        let src = upload_f32(ctx, "x", &x)?;
        let output = guarded_output(ctx, x.len(), OutType::F32)?;
        let out = Rc::clone(&output);
        Ok(Built {
            record: Box::new(move |batch| rope(batch, &src, &out, &gpos, gff.as_deref(), &shape)),
            output,
            output_type: OutType::F32,
            reference,
        })
    }

    fn build_grad(&self, ctx: &Context) -> Option<CaseResult<BuiltGrad>> {
        (!self.inplace && self.elems() <= GRAD_MAX_ELEMS).then(|| self.grad(ctx))
    }

    fn max_grad_nmse(&self) -> f64 {
        self.max_nmse()
    }
}

impl RopeCase {
    /// Positions, frequency factors (if any) on the GPU, and the kernels' shape.
    fn gpu_inputs(
        &self,
        ctx: &Context,
        positions: &[u32],
        ff: Option<&[f32]>,
    ) -> CaseResult<(Rc<GpuBuffer>, Option<Rc<GpuBuffer>>, RopeShape)> {
        let gpos = Rc::new(ctx.upload("positions", Category::Scratch, bytemuck::cast_slice(positions))?);
        let gff = match ff {
            Some(ff) => Some(upload_f32(ctx, "freq_factors", ff)?),
            None => None,
        };
        let shape = RopeShape {
            n_tokens: self.n_tokens,
            n_heads: self.n_heads,
            head_dim: self.head_dim,
            n_dims: self.n_dims,
            freq_base: self.base,
            freq_scale: self.freq_scale,
        };
        Ok((gpos, gff, shape))
    }

    fn grad(&self, ctx: &Context) -> CaseResult<BuiltGrad> {
        let name = self.name();
        let (hd, nh, nt) = (self.head_dim as usize, self.n_heads as usize, self.n_tokens as usize);
        let x = seeded(&format!("{name}/x"), nt * nh * hd);
        let dy = seeded(&format!("{name}/dy"), nt * nh * hd);
        let (positions, ff) = (self.positions(), self.freq_factors());
        let (n_dims, base, scale) = (self.n_dims as usize, self.base, self.freq_scale as f64);
        let forward = |t: &[Tensor]| ops::rope(&t[0], &positions, n_dims, base, scale, ff.as_deref());
        let (finite_diff, autograd) = cpu_gradients(&[(x, vec![nt, nh, hd])], &dy, &[0], &forward)?.remove(0);
        let (gpos, gff, shape) = self.gpu_inputs(ctx, &positions, ff.as_deref())?;
        let gdy = upload_f32(ctx, "dy", &dy)?;
        let dx = guarded_output(ctx, dy.len(), OutType::F32)?;
        let out = Rc::clone(&dx);
        Ok(BuiltGrad {
            record: Box::new(move |batch| rope_back(batch, &gdy, &out, &gpos, gff.as_deref(), &shape)),
            grads: vec![GradOutput { input: "x", output: dx, finite_diff, autograd }],
        })
    }
}
