//! Grad mode for `attention`: `attention_back` on the cases shaped like a training chunk (f32, from position 0, the
//! chunk's own keys in a ring that holds them all, one pass), against the gradients of q, k and v of
//! `reference::ops::attention` in f64: the case's mask, window, grouped-query heads and softcap.

use super::grad::{BuiltGrad, GRAD_MAX_ELEMS, GradOutput, cpu_gradients};
use super::{CaseResult, OutType, guarded_output, seeded, upload_f32};
use crate::reference::ops;
use candle_core::Tensor;
use ferrogem::gpu::{Category, Context};
use ferrogem::ops::attention::{AttentionShape, CacheType};
use ferrogem::ops::attention_back::{AttentionBackShape, AttentionGrads, attention_back};
use std::rc::Rc;

/// The backward's shape for a forward shape it covers.
pub fn training_shape(s: &AttentionShape) -> Option<AttentionBackShape> {
    let (q, kv) = (s.q_elems(), s.n_tokens as u64 * s.n_kv_head as u64 * s.head_dim as u64);
    let covered = s.cache_type == CacheType::F32 && s.q_pos0 == 0 && s.kv_capacity >= s.n_tokens;
    (covered && q + 2 * kv <= 2 * GRAD_MAX_ELEMS).then_some(AttentionBackShape {
        n_tokens: s.n_tokens,
        n_head: s.n_head,
        n_kv_head: s.n_kv_head,
        head_dim: s.head_dim,
        window: s.window,
        scale: s.scale,
        softcap: s.softcap,
    })
}

pub fn build(name: &str, s: &AttentionBackShape, ctx: &Context) -> CaseResult<BuiltGrad> {
    let (n, nh, nkv, hd) = (s.n_tokens as usize, s.n_head as usize, s.n_kv_head as usize, s.head_dim as usize);
    let q = seeded(&format!("{name}/grad_q"), n * nh * hd);
    let k = seeded(&format!("{name}/grad_k"), n * nkv * hd);
    let v = seeded(&format!("{name}/grad_v"), n * nkv * hd);
    let d_out = seeded(&format!("{name}/grad_dy"), n * nh * hd);
    let key_positions: Vec<u64> = (0..n as u64).collect();
    let window = match s.window {
        0 | u32::MAX => None,
        w => Some(w),
    };
    let forward = |t: &[Tensor]| ops::attention(&t[0], &t[1], &t[2], 0, &key_positions, window, s.scale, s.softcap);
    let inputs = [(q.clone(), vec![n, nh, hd]), (k.clone(), vec![n, nkv, hd]), (v.clone(), vec![n, nkv, hd])];
    let mut cpu = cpu_gradients(&inputs, &d_out, &[0, 1, 2], &forward)?.into_iter();
    let mut grads = Vec::new();
    let mut outputs = Vec::new();
    for (input, elems) in [("q", n * nh * hd), ("k", n * nkv * hd), ("v", n * nkv * hd)] {
        let (finite_diff, autograd) = cpu.next().ok_or("cpu_gradients gave fewer than three gradients")?;
        let output = guarded_output(ctx, elems, OutType::F32)?;
        outputs.push(Rc::clone(&output));
        grads.push(GradOutput { input, output, finite_diff, autograd });
    }
    let (gq, gk, gv) = (upload_f32(ctx, "q", &q)?, upload_f32(ctx, "k", &k)?, upload_f32(ctx, "v", &v)?);
    let gd_out = upload_f32(ctx, "d_out", &d_out)?;
    let table_bytes = s.table_elems() * 4;
    let probs = ctx.alloc("probs", Category::Scratch, table_bytes, None)?;
    let dscores = ctx.alloc("dscores", Category::Scratch, table_bytes, None)?;
    let parts = ctx.alloc("dkv parts", Category::Scratch, s.part_elems() * 4, None)?;
    let shape = *s;
    Ok(BuiltGrad {
        record: Box::new(move |batch| {
            let b = AttentionGrads {
                q: &gq,
                k: &gk,
                v: &gv,
                d_out: &gd_out,
                dq: &outputs[0],
                dk: &outputs[1],
                dv: &outputs[2],
                probs: &probs,
                dscores: &dscores,
                parts: &parts,
            };
            attention_back(batch, &shape, &b)
        }),
        grads,
    })
}
