//! Cases for the mat-vec with GeGLU fused into its epilogue (ggml mul_mat + geglu): `y = gelu(x·W_gateᵀ) ⊙ up`,
//! with `up = x·W_upᵀ` from the up half of a stacked `[gate; up]` matrix, or `up` a strided vector per token (Gemma
//! 4's PLE gate times `ple[l]`). Weights are quantized by candle; the reference multiplies candle's dequantization by
//! x in f64, then applies `reference::ops::geglu` (tanh-form gelu, and the product) in f64.

use super::mul_mat::{LoraCase, quantized_weights};
use super::{Built, CaseResult, OpCase, OutType, cpu, guarded_output, seeded, upload_f32};
use crate::reference::ops;
use crate::tolerance::max_nmse;
use candle_core::{DType, Tensor};
use ferrogem::gpu::{Category, Context, SplitTensor};
use ferrogem::ops::mul_mat::MulMatArgs;
use ferrogem::ops::mul_mat_vec::{GluUp, mul_mat_vec_geglu};
use ferrogem::quant::QuantType;
use std::rc::Rc;

/// The up operand of a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpSource {
    Stacked,
    /// `up[t][c] = v[offset + t·stride + c]` (stride ≥ m).
    Vector {
        offset: u32,
        stride: u32,
    },
}

pub struct MulMatGluCase {
    wtype: QuantType,
    m: u32,
    k: u32,
    n: u32,
    up: UpSource,
    /// Row parts of the gate weights (vector up only; a stacked matrix is one binding by construction).
    parts: u32,
    /// LoRA updates on the gate product and (stacked) the up product, before GeGLU.
    lora: Option<LoraCase>,
}

impl MulMatGluCase {
    pub fn new(wtype: QuantType, m: u32, k: u32, n: u32, up: UpSource, parts: u32) -> Self {
        let parts = if up == UpSource::Stacked { 1 } else { parts.max(1) };
        MulMatGluCase { wtype, m, k, n, up, parts, lora: None }
    }

    /// With LoRA updates of ranks `rank` (gate) and `up_rank` (the stacked up rows; 0 for a vector up).
    pub fn with_lora(self, rank: u32, up_rank: u32) -> Self {
        MulMatGluCase { lora: Some(LoraCase { rank, up_rank, u_parts: 1 }), ..self }
    }
}

/// (m, k, n): one row, odd row counts, long k, the multi-token variant (short and long rows) and a token tail past
/// it.
const SHAPES: [(u32, u32, u32); 7] =
    [(1, 256, 1), (13, 768, 1), (64, 1024, 1), (3, 4096, 1), (5, 256, 3), (7, 512, 5), (3, 1024, 2)];

pub fn cases() -> Vec<Box<dyn OpCase>> {
    let mut cases: Vec<Box<dyn OpCase>> = Vec::new();
    for wtype in ferrogem::ops::mul_mat::WEIGHT_TYPES {
        for (m, k, n) in SHAPES {
            cases.push(Box::new(MulMatGluCase::new(wtype, m, k, n, UpSource::Stacked, 1)));
            let up = UpSource::Vector { offset: 3 * m, stride: 5 * m + 1 };
            cases.push(Box::new(MulMatGluCase::new(wtype, m, k, n, up, 1)));
        }
        // Gate weights split on rows, each part writing its columns and reading its slice of the vector.
        let up = UpSource::Vector { offset: 8, stride: 40 };
        cases.push(Box::new(MulMatGluCase::new(wtype, 13, 512, 2, up, 2)));
        // LoRA updates before GeGLU: gate and up (one token; several, with more ranks than lanes), only up,
        // and the gate of a split vector-up product.
        cases.push(Box::new(MulMatGluCase::new(wtype, 13, 768, 1, UpSource::Stacked, 1).with_lora(16, 16)));
        cases.push(Box::new(MulMatGluCase::new(wtype, 7, 256, 3, UpSource::Stacked, 1).with_lora(12, 5)));
        cases.push(Box::new(MulMatGluCase::new(wtype, 5, 256, 1, UpSource::Stacked, 1).with_lora(0, 4)));
        let up = UpSource::Vector { offset: 8, stride: 40 };
        cases.push(Box::new(MulMatGluCase::new(wtype, 13, 512, 2, up, 2).with_lora(8, 0)));
        // A dense row with a partial last chunk (the tiny Gemma 4's PLE gate reads k = 128; 40 is not 32-aligned).
        if wtype.block_elems() == 1 {
            cases.push(Box::new(MulMatGluCase::new(wtype, 5, 40, 1, UpSource::Stacked, 1)));
            cases.push(Box::new(MulMatGluCase::new(wtype, 5, 40, 3, UpSource::Vector { offset: 2, stride: 7 }, 1)));
        }
    }
    cases
}

impl OpCase for MulMatGluCase {
    fn op(&self) -> &'static str {
        "mul_mat_vec_geglu"
    }

    fn vars(&self) -> String {
        let up = match self.up {
            UpSource::Stacked => "stacked".to_owned(),
            UpSource::Vector { offset, stride } => format!("vec{offset}+{stride}t"),
        };
        let parts = if self.parts > 1 { format!(",parts={}", self.parts) } else { String::new() };
        let lora = self.lora.map(|l| l.describe()).unwrap_or_default();
        let (t, m, k, n) = (self.wtype.name().to_lowercase(), self.m, self.k, self.n);
        format!("type={t},m={m},k={k},n={n},up={up}{parts}{lora}")
    }

    fn max_nmse(&self) -> f64 {
        max_nmse("mul_mat_vec_geglu", &self.wtype.name().to_lowercase())
    }

    fn flops(&self) -> u64 {
        let matrices = if self.up == UpSource::Stacked { 2 } else { 1 };
        let lora = self.lora.map_or(0, |l| l.flops(self.m, self.n));
        matrices * 2 * self.m as u64 * self.k as u64 * self.n as u64 + lora
    }

    fn bytes(&self) -> u64 {
        let matrices = if self.up == UpSource::Stacked { 2 } else { 1 };
        let weight_bytes = self.wtype.bytes_for(self.m as u64 * self.k as u64).unwrap_or(0);
        let lora = self.lora.map_or(0, |l| l.bytes(self.m, self.n));
        matrices * weight_bytes + 4 * self.n as u64 * (self.k as u64 + 2 * self.m as u64) + lora
    }

    fn elems(&self) -> u64 {
        let (m, k, n) = (self.m as u64, self.k as u64, self.n as u64);
        (2 * m * k).max(n * k)
    }

    fn build(&self, ctx: &Context) -> CaseResult<Built> {
        let name = self.name();
        let (m, k, n) = (self.m as usize, self.k as usize, self.n as usize);
        let stacked_rows = if self.up == UpSource::Stacked { 2 * m } else { m };
        let (bytes, w) = quantized_weights(&name, self.wtype, stacked_rows, k)?;
        // x uniform in ±3/√k makes the products' standard deviation about 1, where gelu is not flat: far below
        // −10 it underflows to exactly 0 in f32 against a tiny f64 value, which says nothing about the kernel.
        let x_range = 3.0 / (k as f32).sqrt();
        let x: Vec<f32> = seeded(&format!("{name}/x"), n * k).iter().map(|v| v * x_range).collect();
        let xt = Tensor::from_vec(x.clone(), (n, k), &cpu())?.to_dtype(DType::F64)?;
        let products = ops::mul_mat(&xt, &w.to_dtype(DType::F64)?)?;
        let lora_data = self.lora.map(|l| (l, l.data(&name, self.m, self.n)));
        // The product's columns `first..first + m`, plus the LoRA update of the gate (`up` false) or up rows.
        let updated = |first: usize, up: bool| -> CaseResult<Tensor> {
            let product = products.narrow(1, first, m)?;
            Ok(match &lora_data {
                Some((l, (b, u))) => (product + l.delta(b, u, self.m, self.n, up)?)?,
                None => product,
            })
        };
        let gate = updated(0, false)?;
        let (up, vector) = match self.up {
            UpSource::Stacked => (updated(m, true)?, None),
            UpSource::Vector { offset, stride } => {
                let (offset, stride) = (offset as usize, stride as usize);
                let v: Vec<f32> = seeded(&format!("{name}/v"), offset + n * stride).iter().map(|v| 3.0 * v).collect();
                let vt = Tensor::from_vec(v[offset..].to_vec(), (n, stride), &cpu())?.narrow(1, 0, m)?;
                (vt.to_dtype(DType::F64)?, Some(v))
            }
        };
        let reference = ops::geglu(&gate, &up)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;

        let row_bytes = bytes.len() as u64 / stacked_rows as u64;
        let part_limit = ((m as u64).div_ceil(self.parts as u64) * row_bytes).next_multiple_of(4);
        let limit = if self.up == UpSource::Stacked { bytes.len() as u64 + 4 } else { part_limit };
        let weights = SplitTensor::upload_with_limit(ctx, "weights", Category::Weights, &bytes, row_bytes, limit)?;
        let gx = upload_f32(ctx, "x", &x)?;
        let gv = match &vector {
            Some(v) => Some(upload_f32(ctx, "up vector", v)?),
            None => None,
        };
        let lora = match lora_data {
            Some((l, (b, u))) => Some((l, upload_f32(ctx, "lora b", &b)?, upload_f32(ctx, "lora u", &u)?)),
            None => None,
        };
        let output = guarded_output(ctx, n * m, OutType::F32)?;
        let (out, wtype, up) = (Rc::clone(&output), self.wtype, self.up);
        let (m_total, k, n) = (self.m, self.k, self.n);
        Ok(Built {
            record: Box::new(move |batch| {
                for (part, &(first, rows)) in weights.parts.iter().zip(&weights.plan.parts) {
                    let (glu, rows) = match (up, &gv) {
                        (UpSource::Vector { offset, stride }, Some(v)) => {
                            let glu = GluUp::Vector { buffer: v, offset_elems: offset, row_stride_elems: stride };
                            (glu, rows as u32)
                        }
                        _ => (GluUp::Stacked { up_row_offset: m_total }, m_total),
                    };
                    let epilogue = lora.as_ref().map(|(l, b, u)| l.epilogue(b, u, m_total).from_row(first as u32));
                    let args = MulMatArgs::new(part, wtype, rows, k, &gx, n, &out)
                        .part(first as u32, m_total)
                        .with_lora(epilogue);
                    mul_mat_vec_geglu(batch, &args, &glu)?;
                }
                Ok(())
            }),
            output,
            output_type: OutType::F32,
            reference,
        })
    }
}
