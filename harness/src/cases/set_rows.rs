//! Cases for ggml `set_rows` (the KV-cache write) into f32 and f16 destinations: ring-slot ids that wrap, shuffled
//! ids, and ids past the destination (which must not be written). The destination starts with seeded contents
//! and the whole of it is compared, so rows that must stay untouched are checked too. Reference: candle
//! `Tensor::scatter` along rows, with out-of-range ids mapped to u32::MAX (candle's "skip this index").

use super::{Built, CaseResult, GUARD_ELEMS, GUARD_VALUE, OpCase, OutType, cpu, seeded, upload_f32};
use crate::tolerance::max_nmse;
use candle_core::{DType, Tensor};
use ferrogem::gpu::kernels::Requires;
use ferrogem::gpu::{Category, Context};
use ferrogem::ops::binary::StorageType;
use ferrogem::ops::set_rows::set_rows;
use std::rc::Rc;

pub struct SetRowsCase {
    dst_type: StorageType,
    row_elems: u32,
    n_ids: u32,
    n_dst_rows: u32,
    /// Ring slots (first + i) mod n_dst_rows when set; otherwise a seeded permutation of the rows.
    ring_start: Option<u32>,
    /// Replace every third id with one past the end.
    out_of_range: bool,
}

impl SetRowsCase {
    pub fn new(
        dst_type: StorageType,
        row_elems: u32,
        n_ids: u32,
        n_dst_rows: u32,
        ring_start: Option<u32>,
        out_of_range: bool,
    ) -> Self {
        SetRowsCase { dst_type, row_elems, n_ids, n_dst_rows, ring_start, out_of_range }
    }

    fn ids(&self) -> Vec<u32> {
        let n = self.n_dst_rows;
        let mut ids: Vec<u32> = match self.ring_start {
            Some(first) => (0..self.n_ids).map(|i| (first + i) % n).collect(),
            None => {
                // A seeded permutation of the rows, so no two ids collide (their order is unspecified).
                let keys = seeded(&format!("{}/ids", self.name()), n as usize);
                let mut rows: Vec<u32> = (0..n).collect();
                rows.sort_by(|&a, &b| keys[a as usize].total_cmp(&keys[b as usize]));
                rows.truncate(self.n_ids as usize);
                rows
            }
        };
        if self.out_of_range {
            for (i, id) in ids.iter_mut().enumerate().filter(|(i, _)| i % 3 == 1) {
                *id = n + i as u32;
            }
        }
        ids
    }

    fn type_name(&self) -> &'static str {
        match self.dst_type {
            StorageType::F32 => "f32",
            StorageType::F16 => "f16",
        }
    }
}

pub fn cases() -> Vec<Box<dyn OpCase>> {
    let mut cases: Vec<Box<dyn OpCase>> = Vec::new();
    for dst_type in [StorageType::F32, StorageType::F16] {
        // (row_elems, n_ids, n_dst_rows, ring start, out of range)
        for (row_elems, n_ids, n_dst_rows, ring_start, oob) in [
            (1, 1, 4, Some(3), false),
            (7, 5, 9, Some(6), false),
            (256, 1, 16, Some(15), false),
            (256, 13, 16, Some(9), false),
            (512, 7, 32, None, false),
            (1000, 5, 8, None, true),
            (1024, 13, 13, None, false),
            (13, 11, 40, Some(35), true),
            (2048, 3, 5, Some(4), false),
        ] {
            cases.push(Box::new(SetRowsCase::new(dst_type, row_elems, n_ids, n_dst_rows, ring_start, oob)));
        }
    }
    cases
}

impl OpCase for SetRowsCase {
    fn op(&self) -> &'static str {
        "set_rows"
    }

    fn vars(&self) -> String {
        let ids = self.ring_start.map_or("perm".to_owned(), |s| format!("ring{s}"));
        format!(
            "type=f32,dst={},ne=[{},{}],dst_rows={},ids={ids},oob={}",
            self.type_name(),
            self.row_elems,
            self.n_ids,
            self.n_dst_rows,
            self.out_of_range as u8
        )
    }

    fn requires(&self) -> Requires {
        Requires { f16: self.dst_type == StorageType::F16, subgroups: false, coop_matrix: false }
    }

    fn max_nmse(&self) -> f64 {
        max_nmse("set_rows", self.type_name())
    }

    fn flops(&self) -> u64 {
        0
    }

    fn bytes(&self) -> u64 {
        let row_elems = self.row_elems as u64 * self.n_ids as u64;
        4 * self.n_ids as u64 + row_elems * (4 + self.dst_type.elem_bytes())
    }

    fn elems(&self) -> u64 {
        self.row_elems as u64 * self.n_dst_rows as u64
    }

    fn build(&self, ctx: &Context) -> CaseResult<Built> {
        let name = self.name();
        let (k, n_ids, n_dst) = (self.row_elems as usize, self.n_ids as usize, self.n_dst_rows as usize);
        let src = seeded(&format!("{name}/src"), n_ids * k);
        let dst_init = seeded(&format!("{name}/dst"), n_dst * k);
        let ids = self.ids();
        let dtype = match self.dst_type {
            StorageType::F32 => DType::F32,
            StorageType::F16 => DType::F16,
        };
        let dst_t = Tensor::from_vec(dst_init.clone(), (n_dst, k), &cpu())?.to_dtype(dtype)?;
        let src_t = Tensor::from_vec(src.clone(), (n_ids, k), &cpu())?.to_dtype(dtype)?;
        let skip_or_id: Vec<u32> = ids.iter().map(|&id| if id < self.n_dst_rows { id } else { u32::MAX }).collect();
        let index = Tensor::from_vec(skip_or_id, (n_ids, 1), &cpu())?.broadcast_as((n_ids, k))?.contiguous()?;
        let written = dst_t.scatter(&index, &src_t, 0)?;
        let reference = written.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;

        // The destination: its seeded rows in the stored type, then the guards.
        let dst_bytes: Vec<u8> = match self.dst_type {
            StorageType::F32 => {
                let mut v = dst_init;
                v.extend([GUARD_VALUE; GUARD_ELEMS]);
                bytemuck::cast_slice(&v).to_vec()
            }
            StorageType::F16 => {
                let mut v: Vec<half::f16> = dst_init.iter().map(|&x| half::f16::from_f32(x)).collect();
                v.extend([half::f16::from_f32(GUARD_VALUE); GUARD_ELEMS]);
                bytemuck::cast_slice(&v).to_vec()
            }
        };
        let output = Rc::new(ctx.upload("dst", Category::Scratch, &dst_bytes)?);
        let gsrc = upload_f32(ctx, "src", &src)?;
        let gids = Rc::new(ctx.upload("ids", Category::Scratch, bytemuck::cast_slice(&ids))?);
        let out_type = match self.dst_type {
            StorageType::F32 => OutType::F32,
            StorageType::F16 => OutType::F16,
        };
        let (out, dst_type, n_ids, n_dst_rows, row_elems) =
            (Rc::clone(&output), self.dst_type, self.n_ids, self.n_dst_rows, self.row_elems);
        Ok(Built {
            record: Box::new(move |batch| set_rows(batch, &gsrc, &gids, n_ids, &out, dst_type, n_dst_rows, row_elems)),
            output,
            output_type: out_type,
            reference,
        })
    }
}
