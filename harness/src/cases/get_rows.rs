//! Cases for ggml `get_rows` (embedding lookup) from tables in every weight type. The table is random f32
//! quantized by candle; the reference is candle's dequantization of the same blocks, indexed by the ids, with zero
//! rows for out-of-range ids (the engine's documented behaviour). The gather does no arithmetic beyond the block
//! decode, so it must match to f32 rounding (at most fused multiply-add contraction in `d·q − m`).

use super::mul_mat::quantize_values;
use super::{Built, CaseResult, OpCase, OutType, cpu, guarded_output, seeded};
use candle_core::Tensor;
use ferrogem::gpu::{Category, Context, SplitTensor};
use ferrogem::ops::get_rows::{get_rows, get_rows_part};
use ferrogem::ops::mul_mat::WEIGHT_TYPES;
use ferrogem::quant::QuantType;
use std::rc::Rc;

pub struct GetRowsCase {
    ttype: QuantType,
    rows: u32,
    k: u32,
    n_ids: u32,
    /// Include ids past the table (which must gather zeros).
    out_of_range: bool,
    /// Row parts the table is split into, gathered with one `get_rows_part` per part.
    parts: u32,
    /// Dense types only: a table of tiny values (f16 subnormals) with some huge ones (f16 infinities) and NaNs,
    /// so the exact-widening paths of the half decoders are checked, not just their normal range.
    special: bool,
}

impl GetRowsCase {
    pub fn new(ttype: QuantType, rows: u32, k: u32, n_ids: u32, out_of_range: bool, parts: u32) -> Self {
        GetRowsCase { ttype, rows, k, n_ids, out_of_range, parts: parts.max(1), special: false }
    }

    /// The special-values table for a dense type (see `special`).
    pub fn special(ttype: QuantType, rows: u32, k: u32, n_ids: u32) -> Self {
        GetRowsCase { special: true, ..Self::new(ttype, rows, k, n_ids, false, 1) }
    }

    /// Seeded ids in range, then the boundary rows 0 and rows − 1, a duplicate, and (if asked) ids past the end.
    fn ids(&self) -> Vec<u32> {
        let r = seeded(&format!("{}/ids", self.name()), self.n_ids as usize);
        let mut ids: Vec<u32> = r.iter().map(|v| (((v + 1.0) / 2.0) * self.rows as f32) as u32 % self.rows).collect();
        let mut specials = vec![self.rows - 1, 0, ids[0]];
        if self.out_of_range {
            specials.extend([self.rows, u32::MAX]);
        }
        for (slot, id) in ids.iter_mut().skip(1).zip(specials) {
            *slot = id;
        }
        ids
    }
}

pub fn cases() -> Vec<Box<dyn OpCase>> {
    let mut cases: Vec<Box<dyn OpCase>> = Vec::new();
    for ttype in WEIGHT_TYPES {
        for (rows, k, n_ids, oob) in
            [(10, 256, 3, false), (100, 512, 7, true), (1000, 256, 1, false), (37, 768, 9, true)]
        {
            cases.push(Box::new(GetRowsCase::new(ttype, rows, k, n_ids, oob, 1)));
        }
        cases.push(Box::new(GetRowsCase::new(ttype, 100, 512, 9, false, 3)));
        if ttype.block_elems() == 1 {
            cases.push(Box::new(GetRowsCase::special(ttype, 20, 256, 20)));
        }
    }
    cases
}

impl OpCase for GetRowsCase {
    fn op(&self) -> &'static str {
        "get_rows"
    }

    fn vars(&self) -> String {
        let mut parts = if self.parts > 1 { format!(",parts={}", self.parts) } else { String::new() };
        if self.special {
            parts.push_str(",special");
        }
        format!(
            "type={},rows={},k={},n_ids={},oob={}{parts}",
            self.ttype.name().to_lowercase(),
            self.rows,
            self.k,
            self.n_ids,
            self.out_of_range
        )
    }

    fn max_nmse(&self) -> f64 {
        crate::tolerance::max_nmse("get_rows", &self.ttype.name().to_lowercase())
    }

    fn flops(&self) -> u64 {
        self.n_ids as u64 * self.k as u64
    }

    fn bytes(&self) -> u64 {
        let row_bytes = self.ttype.bytes_for(self.k as u64).unwrap_or(0);
        self.n_ids as u64 * (row_bytes + 4 + 4 * self.k as u64)
    }

    fn elems(&self) -> u64 {
        self.rows as u64 * self.k as u64
    }

    fn build(&self, ctx: &Context) -> CaseResult<Built> {
        let (rows, k) = (self.rows as usize, self.k as usize);
        let mut values = seeded(&format!("{}/w", self.name()), rows * k);
        if self.special {
            for (i, v) in values.iter_mut().enumerate() {
                *v = if i % 97 == 5 {
                    f32::NAN
                } else if i % 13 == 0 {
                    v.signum() * 1e6
                } else {
                    *v * 3e-5
                };
            }
        }
        let (bytes, table) = quantize_values(values, self.ttype, rows, k)?;
        let ids = self.ids();
        let clamped: Vec<u32> = ids.iter().map(|&i| i.min(self.rows - 1)).collect();
        let gathered = table.index_select(&Tensor::new(clamped.as_slice(), &cpu())?, 0)?.to_vec2::<f32>()?;
        let reference: Vec<f32> = gathered
            .into_iter()
            .zip(&ids)
            .flat_map(|(row, &id)| if id < self.rows { row } else { vec![0.0; k] })
            .collect();

        let row_bytes = bytes.len() as u64 / self.rows as u64;
        let part_limit = (self.rows.div_ceil(self.parts) as u64 * row_bytes).next_multiple_of(4);
        let table = SplitTensor::upload_with_limit(ctx, "table", Category::Weights, &bytes, row_bytes, part_limit)?;
        let gids = Rc::new(ctx.upload("ids", Category::Scratch, bytemuck::cast_slice(&ids))?);
        let output = guarded_output(ctx, ids.len() * k, OutType::F32)?;
        let (out, ttype, row_elems, n_rows, n_ids) = (Rc::clone(&output), self.ttype, self.k, self.rows, self.n_ids);
        Ok(Built {
            record: Box::new(move |batch| {
                if table.parts.len() == 1 {
                    return get_rows(batch, &table.parts[0], ttype, row_elems, n_rows, &gids, n_ids, &out);
                }
                for (part, &(first, part_rows)) in table.parts.iter().zip(&table.plan.parts) {
                    get_rows_part(batch, part, ttype, row_elems, first as u32, part_rows as u32, &gids, n_ids, &out)?;
                }
                Ok(())
            }),
            output,
            output_type: OutType::F32,
            reference,
        })
    }
}
