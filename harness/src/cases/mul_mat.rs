//! Cases for ggml `mul_mat` (the tiled prefill kernel, and the dispatcher's own choice) with block-quantized weights: y = x · Wᵀ, W [m][k] in F32/F16/BF16/Q4_0/Q4_1/Q5_0/
//! Q5_1/Q8_0/Q4_K/Q5_K/Q6_K, x [n][k] f32. Random f32 weights are quantized by candle; the GPU gets candle's raw
//! block bytes and the reference multiplies candle's own dequantization of them by x (in f64), so the comparison
//! is on identical weights and only the kernels' f32 arithmetic differs. The decode kernel's cases, built from the
//! same [`MulMatCase`], are in `mul_mat_vec.rs`. In grad mode the cases check `mul_mat_grad`: the gradient of x
//! for every weight type (a frozen base), and for F32 also the gradient of W (LoRA's A and B).

use super::grad::{BuiltGrad, GRAD_MAX_ELEMS, GradOutput, cpu_gradients};
use super::{Built, CaseResult, OpCase, OutType, cpu, guarded_output, seeded, upload_f32};
use crate::reference::ops;
use crate::tolerance::max_nmse;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Tensor};
use ferrogem::gpu::kernels::Requires;
use ferrogem::gpu::{Category, Context, GpuBuffer, SplitTensor};
use ferrogem::ops::mul_mat::{MulMatArgs, MulMatPath, WEIGHT_TYPES, max_partials_bytes, mul_mat_with};
use ferrogem::ops::mul_mat_grad::{GradXPath, MulMatShape, grad_x_partials_bytes, mul_mat_grad_w, mul_mat_grad_x_with};
use ferrogem::ops::weights::{LoraEpilogue, LoraTerm};
use ferrogem::quant::QuantType;
use std::rc::Rc;

/// candle's name for a weight type.
pub fn ggml_dtype(t: QuantType) -> GgmlDType {
    use QuantType::*;
    match t {
        F32 => GgmlDType::F32,
        F16 => GgmlDType::F16,
        BF16 => GgmlDType::BF16,
        Q4_0 => GgmlDType::Q4_0,
        Q4_1 => GgmlDType::Q4_1,
        Q5_0 => GgmlDType::Q5_0,
        Q5_1 => GgmlDType::Q5_1,
        Q8_0 => GgmlDType::Q8_0,
        Q4K => GgmlDType::Q4K,
        Q5K => GgmlDType::Q5K,
        Q6K => GgmlDType::Q6K,
        other => panic!("no weight-type case for {other}"),
    }
}

/// `rows` random rows of `k` weights quantized to `t` by candle: (raw block bytes, candle's dequantization).
pub fn quantized_weights(name: &str, t: QuantType, rows: usize, k: usize) -> CaseResult<(Vec<u8>, Tensor)> {
    quantize_values(seeded(&format!("{name}/w"), rows * k), t, rows, k)
}

/// `values` as `rows` rows of `k`, quantized to `t` by candle: (raw block bytes, candle's dequantization).
pub fn quantize_values(values: Vec<f32>, t: QuantType, rows: usize, k: usize) -> CaseResult<(Vec<u8>, Tensor)> {
    let w = Tensor::from_vec(values, (rows, k), &cpu())?;
    let q = QTensor::quantize(&w, ggml_dtype(t))?;
    Ok((q.data()?.to_vec(), q.dequantize(&cpu())?))
}

pub struct MulMatCase {
    wtype: QuantType,
    m: u32,
    k: u32,
    n: u32,
    path: MulMatPath,
    /// Row parts the weights are split into (as SplitTensor does for tensors over the binding limit).
    parts: u32,
    lora: Option<LoraCase>,
    /// Lends the product scratch to split k into (`MulMatArgs::with_partials`).
    k_split: bool,
}

impl MulMatCase {
    /// A product of `n` tokens with an [m, k] weight of `wtype`; `parts` > 1 splits W on rows and dispatches per
    /// part into the shared y.
    pub fn new(wtype: QuantType, m: u32, k: u32, n: u32, path: MulMatPath, parts: u32) -> Self {
        MulMatCase { wtype, m, k, n, path, parts: parts.max(1), lora: None, k_split: false }
    }

    /// The same product with room to split k: few tiles, so the tiled kernels take every split k allows.
    pub fn with_k_split(self) -> Self {
        MulMatCase { k_split: true, ..self }
    }

    /// The same product with a LoRA update in its epilogue (the mat-vec path), its u the sum of `u_parts`
    /// parts (as the attention merge makes o's, one per head).
    pub fn with_lora(self, rank: u32, u_parts: u32) -> Self {
        MulMatCase { lora: Some(LoraCase { rank, up_rank: 0, u_parts }), ..self }
    }
}

/// A LoRA update in a mat-vec's epilogue (`LoraEpilogue`): the product's term of rank `rank` and, for a stacked
/// GeGLU, the up rows' of `up_rank` (0: none), u the sum of `u_parts` parts. u's parts are wider than both and
/// the terms start at offsets, so a wrong slice or stride shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoraCase {
    pub rank: u32,
    pub up_rank: u32,
    pub u_parts: u32,
}

/// Where a case's terms live in u and B, and where u's rows start in its buffer.
const LORA_U_FIRST: u32 = 3;
const LORA_U_OFFSET: u32 = 7;
const LORA_B_FIRST: u32 = 5;

impl LoraCase {
    fn part_stride(&self) -> u32 {
        LORA_U_FIRST + self.rank + self.up_rank + 2
    }

    fn u_stride(&self) -> u32 {
        self.u_parts * self.part_stride()
    }

    /// The two terms for `m` rows: the product's, then the up rows'.
    fn terms(&self, m: u32) -> [LoraTerm; 2] {
        let term = LoraTerm { rank: self.rank, b_offset_elems: LORA_B_FIRST, first_rank: LORA_U_FIRST };
        let up = LoraTerm {
            rank: self.up_rank,
            b_offset_elems: LORA_B_FIRST + m * self.rank,
            first_rank: LORA_U_FIRST + self.rank,
        };
        [term, up]
    }

    /// Seeded (B, u) for `m` rows and `n` tokens, B scaled so an update is about as large as a product; u's rows
    /// start at element `LORA_U_OFFSET`.
    pub fn data(&self, name: &str, m: u32, n: u32) -> (Vec<f32>, Vec<f32>) {
        let b_len = (LORA_B_FIRST + m * (self.rank + self.up_rank)) as usize;
        let b_scale = 1.0 / ((self.rank + self.up_rank).max(1) as f32).sqrt();
        let b = seeded(&format!("{name}/lora_b"), b_len).iter().map(|v| v * b_scale).collect();
        (b, seeded(&format!("{name}/lora_u"), (LORA_U_OFFSET + n * self.u_stride()) as usize))
    }

    /// The updates `[n][m]` in f64: the product's (`up` false) or the up rows'.
    pub fn delta(&self, b: &[f32], u: &[f32], m: u32, n: u32, up: bool) -> CaseResult<Tensor> {
        let t = self.terms(m)[usize::from(up)];
        let (rank, m, n) = (t.rank as usize, m as usize, n as usize);
        let b0 = t.b_offset_elems as usize;
        let bt = Tensor::from_slice(&b[b0..b0 + m * rank], (m, rank), &cpu())?.to_dtype(DType::F64)?;
        let shape = (n, self.u_parts as usize, self.part_stride() as usize);
        let ut = Tensor::from_slice(&u[LORA_U_OFFSET as usize..], shape, &cpu())?.to_dtype(DType::F64)?;
        let ut = ut.sum(1)?.narrow(1, t.first_rank as usize, rank)?;
        Ok(ops::mul_mat(&ut, &bt)?)
    }

    pub fn epilogue<'a>(&self, b: &'a GpuBuffer, u: &'a GpuBuffer, m: u32) -> LoraEpilogue<'a> {
        let [term, up] = self.terms(m);
        let (u_offset_elems, u_stride, u_parts, part_stride) =
            (LORA_U_OFFSET, self.u_stride(), self.u_parts, self.part_stride());
        LoraEpilogue { b, u, u_offset_elems, u_stride, u_parts, part_stride, term, up }
    }

    /// FLOPs and bytes the updates add to a product of `m` rows and `n` tokens.
    pub fn flops(&self, m: u32, n: u32) -> u64 {
        2 * n as u64 * m as u64 * (self.rank + self.up_rank) as u64
    }

    pub fn bytes(&self, m: u32, n: u32) -> u64 {
        4 * (m as u64 * (self.rank + self.up_rank) as u64 + n as u64 * self.u_stride() as u64)
    }

    pub fn describe(&self) -> String {
        let parts = if self.u_parts > 1 { format!(",u_parts={}", self.u_parts) } else { String::new() };
        match self.up_rank {
            0 => format!(",lora=r{}{parts}", self.rank),
            up => format!(",lora=r{}+{up}{parts}", self.rank),
        }
    }
}

/// Prefill shapes: within one 64×64 tile, odd edges, and edges past one tile in both directions (the sixth over five
/// row tiles, the last partial). The last is small enough for grad mode's finite differences and walks the tiled
/// input gradient's rows (a wide tile: few tokens) in several splits, the last a partial step.
const TILED_SHAPES: [(u32, u32, u32); 8] = [
    (16, 256, 8),
    (33, 512, 13),
    (64, 768, 32),
    (7, 256, 5),
    (5, 256, 2),
    (300, 512, 11),
    (70, 256, 65),
    (70, 256, 13),
];

pub fn cases() -> Vec<Box<dyn OpCase>> {
    let mut cases: Vec<Box<dyn OpCase>> = Vec::new();
    for wtype in WEIGHT_TYPES {
        for (m, k, n) in TILED_SHAPES {
            cases.push(Box::new(MulMatCase::new(wtype, m, k, n, MulMatPath::Tiled, 1)));
        }
        // The dispatcher's own choice, and weights split on rows into parts of one shared y.
        cases.push(Box::new(MulMatCase::new(wtype, 9, 512, 3, MulMatPath::Auto, 1)));
        cases.push(Box::new(MulMatCase::new(wtype, 33, 512, 13, MulMatPath::Tiled, 3)));
    }
    // Dense types take rows of any multiple of 8: partial column tiles, and in grad mode the tiled input
    // gradient's square tiles (two token tiles; two column tiles over two splits of rows) and a partial wide one.
    for wtype in [QuantType::F16, QuantType::BF16] {
        for (m, k, n) in [(40, 56, 70), (70, 120, 33), (70, 120, 13)] {
            cases.push(Box::new(MulMatCase::new(wtype, m, k, n, MulMatPath::Tiled, 1)));
        }
    }
    // LoRA's own shapes, small enough for finite differences in grad mode: A [r][k] and B [m][r] at r = 16, 5 and 8
    // (the tiled kernel takes F32 rows in multiples of 8).
    for (m, k, n) in [(16, 64, 5), (64, 16, 5), (5, 48, 9), (40, 8, 9), (1, 32, 1)] {
        cases.push(Box::new(MulMatCase::new(QuantType::F32, m, k, n, MulMatPath::Tiled, 1)));
    }
    // The matrix-core tiles (devices with cooperative matrices only; elsewhere "not supported"): whole tiles (the
    // direct store), partial tiles in both directions over two token tiles (the store through workgroup memory),
    // three parts of one y, and a k that ends inside a step. In grad mode the few-token case checks the input
    // gradient's matrix-core tiles (four column tiles, two splits of rows, the second a partial step).
    for wtype in WEIGHT_TYPES {
        for (m, k, n, parts) in [(128, 256, 64, 1), (70, 256, 65, 1), (99, 512, 40, 3), (70, 256, 13, 1)] {
            cases.push(Box::new(MulMatCase::new(wtype, m, k, n, MulMatPath::Coop, parts)));
        }
        // The wide tile: whole tiles, then rows and tokens past the edge over two token tiles.
        for (m, k, n, parts) in [(128, 256, 128, 1), (70, 256, 130, 1)] {
            cases.push(Box::new(MulMatCase::new(wtype, m, k, n, MulMatPath::CoopWide, parts)));
        }
    }
    for wtype in [QuantType::F16, QuantType::BF16] {
        cases.push(Box::new(MulMatCase::new(wtype, 40, 56, 70, MulMatPath::Coop, 1)));
    }
    // k split over partial sums: whole splits, and (F16) a last split shorter than the rest that ends inside a
    // step, over two token tiles. Rows not a multiple of 4 keep one split: the case checks that fallback.
    let tiled_paths = [MulMatPath::Tiled, MulMatPath::Coop, MulMatPath::CoopWide];
    for wtype in WEIGHT_TYPES {
        for path in tiled_paths {
            cases.push(Box::new(MulMatCase::new(wtype, 64, 512, 13, path, 1).with_k_split()));
        }
    }
    for path in tiled_paths {
        for (m, k, n) in [(72, 840, 70), (70, 512, 9)] {
            cases.push(Box::new(MulMatCase::new(QuantType::F16, m, k, n, path, 1).with_k_split()));
        }
    }
    cases
}

impl OpCase for MulMatCase {
    /// The decode kernel has its own name, as in the engine (`ops/mul_mat_vec.rs`, `mul_mat_vec.wgsl`).
    fn op(&self) -> &'static str {
        match self.path {
            MulMatPath::Vec => "mul_mat_vec",
            MulMatPath::Auto | MulMatPath::Tiled | MulMatPath::Coop | MulMatPath::CoopWide => "mul_mat",
        }
    }

    fn vars(&self) -> String {
        let path = match self.path {
            MulMatPath::Auto => "auto",
            MulMatPath::Vec => "vec",
            MulMatPath::Tiled => "tiled",
            MulMatPath::Coop => "coop",
            MulMatPath::CoopWide => "coop_wide",
        };
        let parts = if self.parts > 1 { format!(",parts={}", self.parts) } else { String::new() };
        let lora = self.lora.map(|l| l.describe()).unwrap_or_default();
        let k_split = if self.k_split { ",k_split" } else { "" };
        let (t, m, k, n) = (self.wtype.name().to_lowercase(), self.m, self.k, self.n);
        format!("type={t},m={m},k={k},n={n},path={path}{parts}{lora}{k_split}")
    }

    fn requires(&self) -> Requires {
        if self.path.coop_tile().is_some() { Requires::COOP_MATRIX } else { Requires::default() }
    }

    fn max_nmse(&self) -> f64 {
        let op = if self.path.coop_tile().is_some() { "mul_mat_coop" } else { self.op() };
        max_nmse(op, &self.wtype.name().to_lowercase())
    }

    fn max_grad_nmse(&self) -> f64 {
        let op = if self.path.coop_tile().is_some() { "mul_mat_coop_back" } else { "mul_mat_back" };
        max_nmse(op, "f32")
    }

    fn flops(&self) -> u64 {
        let lora = self.lora.map_or(0, |l| l.flops(self.m, self.n));
        2 * self.m as u64 * self.k as u64 * self.n as u64 + lora
    }

    fn bytes(&self) -> u64 {
        let weight_bytes = self.wtype.bytes_for(self.m as u64 * self.k as u64).unwrap_or(0);
        let lora = self.lora.map_or(0, |l| l.bytes(self.m, self.n));
        weight_bytes + 4 * self.n as u64 * (self.k as u64 + self.m as u64) + lora
    }

    fn elems(&self) -> u64 {
        let (m, k, n) = (self.m as u64, self.k as u64, self.n as u64);
        (m * k).max(n * k).max(n * m)
    }

    fn build(&self, ctx: &Context) -> CaseResult<Built> {
        let name = self.name();
        let (m, k, n) = (self.m as usize, self.k as usize, self.n as usize);
        let (bytes, w) = quantized_weights(&name, self.wtype, m, k)?;
        let x = seeded(&format!("{name}/x"), n * k);
        let xt = Tensor::from_vec(x.clone(), (n, k), &cpu())?;
        let mut reference = ops::mul_mat(&xt.to_dtype(DType::F64)?, &w.to_dtype(DType::F64)?)?;
        let lora = match self.lora {
            Some(l) => {
                let (b, u) = l.data(&name, self.m, self.n);
                reference = (reference + l.delta(&b, &u, self.m, self.n, false)?)?;
                Some((l, upload_f32(ctx, "lora b", &b)?, upload_f32(ctx, "lora u", &u)?))
            }
            None => None,
        };
        let reference = reference.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;

        let row_bytes = bytes.len() as u64 / self.m as u64;
        let part_limit = (self.m.div_ceil(self.parts) as u64 * row_bytes).next_multiple_of(4);
        let weights = SplitTensor::upload_with_limit(ctx, "weights", Category::Weights, &bytes, row_bytes, part_limit)?;
        let gx = upload_f32(ctx, "x", &x)?;
        let output = guarded_output(ctx, n * m, OutType::F32)?;
        let partials_bytes = max_partials_bytes(self.m, self.k, self.n);
        let partials =
            self.k_split.then(|| ctx.alloc("k partials", Category::Scratch, partials_bytes, None)).transpose()?;
        let (out, wtype, path) = (Rc::clone(&output), self.wtype, self.path);
        let (m_total, k, n) = (self.m, self.k, self.n);
        Ok(Built {
            record: Box::new(move |batch| {
                for (part, &(first, rows)) in weights.parts.iter().zip(&weights.plan.parts) {
                    let epilogue = lora.as_ref().map(|(l, b, u)| l.epilogue(b, u, m_total).from_row(first as u32));
                    let args = MulMatArgs::new(part, wtype, rows as u32, k, &gx, n, &out)
                        .part(first as u32, m_total)
                        .with_lora(epilogue)
                        .with_partials(partials.as_ref());
                    mul_mat_with(batch, &args, path)?;
                }
                Ok(())
            }),
            output,
            output_type: OutType::F32,
            reference,
        })
    }

    /// Plain products (no LoRA epilogue, one part) small enough for finite differences; the backward does not
    /// depend on the forward's path, so only `mul_mat`'s cases (not `mul_mat_vec`'s) check it.
    fn build_grad(&self, ctx: &Context) -> Option<CaseResult<BuiltGrad>> {
        let (m, k, n) = (self.m as u64, self.k as u64, self.n as u64);
        // F32 weights have one input-gradient kernel, which the tiled cases check; the wide coop tile has none of
        // its own (the square coop cases check the matrix-core input gradient).
        let checks_backward = match self.path {
            MulMatPath::Vec | MulMatPath::CoopWide => false,
            MulMatPath::Coop => self.wtype != QuantType::F32,
            MulMatPath::Auto | MulMatPath::Tiled => true,
        };
        let plain = self.lora.is_none() && self.parts == 1 && !self.k_split && checks_backward;
        let fd_elems = n * k + if self.wtype == QuantType::F32 { m * k } else { 0 };
        (plain && fd_elems <= 2 * GRAD_MAX_ELEMS && n * k <= GRAD_MAX_ELEMS).then(|| self.grad(ctx))
    }
}

impl MulMatCase {
    /// dx for every type. For F32, dx is recorded twice from dy/2 (exact), overwriting then accumulating, and dW
    /// twice at scale ½ the same way, so that each output is the gradient itself and every variant and the scale
    /// are exercised.
    fn grad(&self, ctx: &Context) -> CaseResult<BuiltGrad> {
        let name = self.name();
        let (m, k, n) = (self.m as usize, self.k as usize, self.n as usize);
        let (bytes, w) = quantized_weights(&name, self.wtype, m, k)?;
        let x = seeded(&format!("{name}/x"), n * k);
        let dy = seeded(&format!("{name}/dy"), n * m);
        let trains_w = self.wtype == QuantType::F32;
        let w_values = w.flatten_all()?.to_vec1::<f32>()?;
        let forward = |t: &[Tensor]| ops::mul_mat(&t[0], &t[1]);
        let inputs = [(x.clone(), vec![n, k]), (w_values, vec![m, k])];
        let wrt: &[usize] = if trains_w { &[0, 1] } else { &[0] };
        let mut cpu_grads = cpu_gradients(&inputs, &dy, wrt, &forward)?.into_iter();
        let (x_fd, x_auto) = cpu_grads.next().ok_or("no gradient of x")?;
        let gw = Rc::new(ctx.upload("weights", Category::Weights, &bytes)?);
        let (gx, gdy) = (upload_f32(ctx, "x", &x)?, upload_f32(ctx, "dy", &dy)?);
        let half_dy: Vec<f32> = dy.iter().map(|v| v * 0.5).collect();
        let gdy_half = upload_f32(ctx, "dy/2", &half_dy)?;
        let dx = guarded_output(ctx, n * k, OutType::F32)?;
        let mut grads = vec![GradOutput { input: "x", output: Rc::clone(&dx), finite_diff: x_fd, autograd: x_auto }];
        let dw = match cpu_grads.next() {
            Some((w_fd, w_auto)) => {
                let dw = guarded_output(ctx, m * k, OutType::F32)?;
                grads.push(GradOutput { input: "w", output: Rc::clone(&dw), finite_diff: w_fd, autograd: w_auto });
                Some(dw)
            }
            None => None,
        };
        let (shape, wtype) = (MulMatShape { m: self.m, k: self.k, n: self.n }, self.wtype);
        // A tiled case checks the tiled input gradient, a coop case its matrix-core tiles; the dispatcher's own
        // choice takes the columns kernel on these few tokens.
        let path = match self.path {
            MulMatPath::Tiled => GradXPath::Tiled,
            MulMatPath::Coop | MulMatPath::CoopWide => GradXPath::Coop,
            MulMatPath::Auto | MulMatPath::Vec => GradXPath::Auto,
        };
        // Room for every split the kernel asks for: shapes of 8+ rows (64+ tiled) take the split path, smaller
        // ones not.
        let partials_bytes = grad_x_partials_bytes(shape, path);
        let partials = (partials_bytes > 0)
            .then(|| ctx.alloc("grad partials", Category::Scratch, partials_bytes, None))
            .transpose()?;
        Ok(BuiltGrad {
            record: Box::new(move |batch| match &dw {
                None => mul_mat_grad_x_with(batch, shape, &gdy, &gw, wtype, &dx, false, partials.as_ref(), path),
                Some(dw) => {
                    mul_mat_grad_x_with(batch, shape, &gdy_half, &gw, wtype, &dx, false, None, path)?;
                    mul_mat_grad_x_with(batch, shape, &gdy_half, &gw, wtype, &dx, true, None, path)?;
                    mul_mat_grad_w(batch, shape, &gdy, &gx, dw, 0.5, false)?;
                    mul_mat_grad_w(batch, shape, &gdy, &gx, dw, 0.5, true)
                }
            }),
            grads,
        })
    }
}
