//! Cases for `rms_norm_rope` (ggml rms_norm + mul + rope, NeoX) and its KV-writing form (+ set_rows of the keys,
//! and the values after Gemma 4's unweighted norm or as they are), into f32 and f16 caches. The reference composes
//! the references of the separate ops (`reference::ops`): `rms_norm` (f64), then `rope` (f64 angles, f32 rotation), then
//! `Tensor::scatter` into the seeded cache rows (skipped slots mapped to u32::MAX). A KV case checks one cache
//! (`out=k` or `out=v`); the whole cache is compared, so rows that must stay untouched are checked too.

use super::rope::{case_positions, freq_factors, rope_max_nmse};
use super::{Built, CaseResult, GUARD_ELEMS, GUARD_VALUE, OpCase, OutType, cpu, guarded_output, seeded, upload_f32};
use crate::reference::ops::{rms_norm, rope};
use crate::tolerance::max_nmse;
use candle_core::{DType, Tensor};
use ferrogem::gpu::kernels::Requires;
use ferrogem::gpu::{Category, Context, GpuBuffer};
use ferrogem::ops::binary::StorageType;
use ferrogem::ops::rms_norm_rope::{KvWrite, NormRope, rms_norm_rope, rms_norm_rope_kv};
use ferrogem::ops::rope::RopeShape;
use std::rc::Rc;

/// The cache-writing form of a case.
#[derive(Debug, Clone, Copy)]
pub struct KvCase {
    pub cache: StorageType,
    pub v_norm: bool,
    /// Slots in each cache; token i goes to slot (ring_start + i) % n_dst_rows, every third one past the end when
    /// `out_of_range`.
    pub n_dst_rows: u32,
    pub ring_start: u32,
    pub out_of_range: bool,
    /// V is K itself (K = V files).
    pub v_is_k: bool,
    /// Check the V cache rather than the K cache.
    pub check_v: bool,
}

pub struct RmsNormRopeCase {
    head_dim: u32,
    n_heads: u32,
    n_tokens: u32,
    base: f32,
    /// Pairs that rotate when frequency factors are used; None: no factors.
    rotated_pairs: Option<u32>,
    max_pos: u32,
    eps: f32,
    kv: Option<KvCase>,
}

impl RmsNormRopeCase {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        head_dim: u32,
        n_heads: u32,
        n_tokens: u32,
        base: f32,
        rotated_pairs: Option<u32>,
        max_pos: u32,
        eps: f32,
        kv: Option<KvCase>,
    ) -> Self {
        RmsNormRopeCase { head_dim, n_heads, n_tokens, base, rotated_pairs, max_pos, eps, kv }
    }

    fn slots(&self, kv: &KvCase) -> Vec<u32> {
        let n = kv.n_dst_rows;
        (0..self.n_tokens)
            .map(|i| if kv.out_of_range && i % 3 == 1 { n + i } else { (kv.ring_start + i) % n })
            .collect()
    }
}

pub fn cases() -> Vec<Box<dyn OpCase>> {
    let mut cases: Vec<Box<dyn OpCase>> = Vec::new();
    // (head_dim, heads, tokens, base, rotated pairs, max position)
    let shapes = [
        (8, 1, 1, 1e4, None, 0),
        (32, 3, 5, 1e4, None, 4096),
        (64, 2, 7, 1e6, Some(8), 32768),
        (128, 4, 3, 1e4, None, 100),
        (256, 8, 1, 1e4, None, 32768),
        (512, 2, 2, 1e6, Some(64), 131071),
    ];
    for (hd, nh, nt, base, ff, max_pos) in shapes {
        cases.push(Box::new(RmsNormRopeCase::new(hd, nh, nt, base, ff, max_pos, 1e-6, None)));
        for cache in [StorageType::F32, StorageType::F16] {
            for (v_norm, v_is_k, check_v) in [(true, false, false), (true, false, true), (false, true, true)] {
                let oob = nt >= 5;
                let kv =
                    KvCase { cache, v_norm, n_dst_rows: nt + 3, ring_start: 2, out_of_range: oob, v_is_k, check_v };
                cases.push(Box::new(RmsNormRopeCase::new(hd, nh, nt, base, ff, max_pos, 1e-6, Some(kv))));
            }
        }
    }
    cases
}

impl OpCase for RmsNormRopeCase {
    fn op(&self) -> &'static str {
        if self.kv.is_some() { "rms_norm_rope_kv" } else { "rms_norm_rope" }
    }

    fn vars(&self) -> String {
        let ff = self.rotated_pairs.map_or(String::new(), |k| format!(",ff_pairs={k}"));
        let kv = self.kv.map_or(String::new(), |kv| {
            let t = if kv.cache == StorageType::F16 { "f16" } else { "f32" };
            let out = if kv.check_v { "v" } else { "k" };
            format!(
                ",cache={t},dst_rows={},ring{},oob={},v_norm={},v_is_k={},out={out}",
                kv.n_dst_rows, kv.ring_start, kv.out_of_range as u8, kv.v_norm as u8, kv.v_is_k as u8
            )
        });
        format!(
            "type=f32,ne=[{},{},{}],base={:e}{ff},max_pos={}{kv}",
            self.head_dim, self.n_heads, self.n_tokens, self.base, self.max_pos
        )
    }

    fn requires(&self) -> Requires {
        let f16 = self.kv.is_some_and(|kv| kv.cache == StorageType::F16);
        Requires { f16, subgroups: false, coop_matrix: false }
    }

    fn max_nmse(&self) -> f64 {
        let store = match self.kv {
            Some(kv) if kv.cache == StorageType::F16 => max_nmse("rms_norm_rope", "f16"),
            _ => max_nmse("rms_norm_rope", "f32"),
        };
        let max_pos = case_positions(&self.name(), self.n_tokens, self.max_pos).into_iter().max().unwrap_or(0);
        store + rope_max_nmse(max_pos as f64) - max_nmse("rope", "f32")
    }

    fn flops(&self) -> u64 {
        8 * self.elems()
    }

    fn bytes(&self) -> u64 {
        let out_bytes = self.kv.map_or(4, |kv| kv.cache.elem_bytes());
        let tensors = if self.kv.is_some() { 2 } else { 1 };
        tensors * self.elems() * (4 + out_bytes)
    }

    fn elems(&self) -> u64 {
        let rows = self.kv.map_or(self.n_tokens, |kv| kv.n_dst_rows.max(self.n_tokens));
        self.head_dim as u64 * self.n_heads as u64 * rows as u64
    }

    fn build(&self, ctx: &Context) -> CaseResult<Built> {
        let name = self.name();
        let (hd, nh, nt) = (self.head_dim as usize, self.n_heads as usize, self.n_tokens as usize);
        let x = seeded(&format!("{name}/x"), nt * nh * hd);
        let w: Vec<f32> = seeded(&format!("{name}/w"), hd).iter().map(|v| 1.0 + v).collect();
        let positions = case_positions(&name, self.n_tokens, self.max_pos);
        let ff = freq_factors(self.head_dim, self.rotated_pairs);
        let xt = Tensor::from_vec(x.clone(), (nt, nh, hd), &cpu())?;
        let normed = rms_norm(&xt.to_dtype(DType::F64)?, Some(&Tensor::from_vec(w.clone(), hd, &cpu())?), self.eps)?;
        let roped = rope(&normed.to_dtype(DType::F32)?, &positions, hd, self.base, 1.0, ff.as_deref())?;

        let gx = upload_f32(ctx, "x", &x)?;
        let gw = upload_f32(ctx, "w", &w)?;
        let gpos = Rc::new(ctx.upload("positions", Category::Scratch, bytemuck::cast_slice(&positions))?);
        let gff: Option<Rc<GpuBuffer>> = match &ff {
            Some(ff) => Some(upload_f32(ctx, "freq_factors", ff)?),
            None => None,
        };
        let shape = RopeShape {
            n_tokens: self.n_tokens,
            n_heads: self.n_heads,
            head_dim: self.head_dim,
            n_dims: self.head_dim,
            freq_base: self.base,
            freq_scale: 1.0,
        };
        let eps = self.eps;
        let Some(kv) = self.kv else {
            let reference = roped.flatten_all()?.to_vec1::<f32>()?;
            let output = guarded_output(ctx, x.len(), OutType::F32)?;
            let out = Rc::clone(&output);
            return Ok(Built {
                record: Box::new(move |batch| {
                    let nr = NormRope { weight: &gw, positions: &gpos, freq_factors: gff.as_deref(), shape, eps };
                    rms_norm_rope(batch, &gx, &out, &nr)
                }),
                output,
                output_type: OutType::F32,
                reference,
            });
        };

        // The V heads, and what lands in the V cache.
        let v = if kv.v_is_k { x.clone() } else { seeded(&format!("{name}/v"), nt * nh * hd) };
        let vt = Tensor::from_vec(v.clone(), (nt, nh, hd), &cpu())?;
        let v_stored =
            if kv.v_norm { rms_norm(&vt.to_dtype(DType::F64)?, None, eps)?.to_dtype(DType::F32)? } else { vt };
        let row = nh * hd;
        let n_dst = kv.n_dst_rows as usize;
        let slots = self.slots(&kv);
        let dtype = if kv.cache == StorageType::F16 { DType::F16 } else { DType::F32 };
        let scatter = |init: &[f32], rows: &Tensor| -> candle_core::Result<Vec<f32>> {
            let dst = Tensor::from_vec(init.to_vec(), (n_dst, row), &cpu())?.to_dtype(dtype)?;
            let skip_or_slot: Vec<u32> = slots.iter().map(|&s| if s < kv.n_dst_rows { s } else { u32::MAX }).collect();
            let index = Tensor::from_vec(skip_or_slot, (nt, 1), &cpu())?.broadcast_as((nt, row))?.contiguous()?;
            let src = rows.reshape((nt, row))?.to_dtype(dtype)?;
            dst.scatter(&index, &src, 0)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
        };
        let k_init = seeded(&format!("{name}/k_cache"), n_dst * row);
        let v_init = seeded(&format!("{name}/v_cache"), n_dst * row);
        let reference = if kv.check_v { scatter(&v_init, &v_stored)? } else { scatter(&k_init, &roped)? };

        let cache = |label: &str, init: &[f32]| -> ferrogem::Result<Rc<GpuBuffer>> {
            let bytes: Vec<u8> = match kv.cache {
                StorageType::F32 => {
                    let mut all = init.to_vec();
                    all.extend([GUARD_VALUE; GUARD_ELEMS]);
                    bytemuck::cast_slice(&all).to_vec()
                }
                StorageType::F16 => {
                    let mut all: Vec<half::f16> = init.iter().map(|&x| half::f16::from_f32(x)).collect();
                    all.extend([half::f16::from_f32(GUARD_VALUE); GUARD_ELEMS]);
                    bytemuck::cast_slice(&all).to_vec()
                }
            };
            Ok(Rc::new(ctx.upload(label, Category::Scratch, &bytes)?))
        };
        let (gk_cache, gv_cache) = (cache("k_cache", &k_init)?, cache("v_cache", &v_init)?);
        let gv = if kv.v_is_k { Rc::clone(&gx) } else { upload_f32(ctx, "v", &v)? };
        let gslots = Rc::new(ctx.upload("slots", Category::Scratch, bytemuck::cast_slice(&slots))?);
        let output = Rc::clone(if kv.check_v { &gv_cache } else { &gk_cache });
        let output_type = if kv.cache == StorageType::F16 { OutType::F16 } else { OutType::F32 };
        Ok(Built {
            record: Box::new(move |batch| {
                let nr = NormRope { weight: &gw, positions: &gpos, freq_factors: gff.as_deref(), shape, eps };
                let write = KvWrite {
                    v: &gv,
                    slots: &gslots,
                    k_cache: &gk_cache,
                    v_cache: &gv_cache,
                    cache_type: kv.cache,
                    n_dst_rows: kv.n_dst_rows,
                    v_norm: kv.v_norm,
                };
                rms_norm_rope_kv(batch, &gx, &nr, &write)
            }),
            output,
            output_type,
            reference,
        })
    }
}
