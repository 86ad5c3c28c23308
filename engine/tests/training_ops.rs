//! The training ops' dispatchers on a real adapter (lavapipe in CI): bad shapes, aliasing and out-of-range
//! settings are typed errors that name the op and the problem, recorded nothing and leaked nothing. Their numerics
//! are the op registry's job (`ferrogem check ops --mode grad`, and test mode for adamw, grad_norm, cross_entropy).

mod common;

use common::gpu;
use ferrogem::gpu::{Category, Context, GpuBuffer, GpuError};
use ferrogem::ops::adamw::{AdamwConfig, AdamwState, adamw};
use ferrogem::ops::attention_back::{AttentionBackShape, AttentionGrads, attention_back};
use ferrogem::ops::cross_entropy::{CrossEntropyInput, cross_entropy, cross_entropy_back};
use ferrogem::ops::glu_back::geglu_back;
use ferrogem::ops::grad_norm::grad_scale;
use ferrogem::ops::mul_mat_grad::{MulMatShape, mul_mat_grad_w, mul_mat_grad_x};
use ferrogem::ops::rms_norm_back::rms_norm_back;
use ferrogem::ops::rope::{RopeShape, rope_back};
use ferrogem::ops::unary::{UnaryOp, unary_back};
use ferrogem::quant::QuantType;

fn buffer(ctx: &Context, label: &str, elems: u64) -> GpuBuffer {
    ctx.alloc(label, Category::Scratch, elems * 4, None).unwrap()
}

/// `result` is `Unsupported` for `op` with a reason containing `needle`.
fn refused(result: ferrogem::gpu::Result<()>, op: &str, needle: &str) {
    match result {
        Err(GpuError::Unsupported { op: got, reason }) => {
            assert!(got.contains(op), "op `{got}`, expected `{op}` ({reason})");
            assert!(reason.contains(needle), "{op}: `{reason}` does not say `{needle}`");
        }
        other => panic!("{op}: expected Unsupported containing `{needle}`, got {other:?}"),
    }
}

#[test]
fn bad_arguments_are_typed_errors_that_record_nothing() {
    let ctx = gpu(true);
    let [a, b, c, d, e] = ["a", "b", "c", "d", "e"].map(|l| buffer(&ctx, l, 64));
    let (small, scalar) = (buffer(&ctx, "small", 4), buffer(&ctx, "scalar", 1));
    let partials = buffer(&ctx, "partials", 256);
    let live = ctx.memory().live_buffers;
    let mut batch = ctx.batch("bad arguments");

    refused(rms_norm_back(&mut batch, &a, None, &b, &a, 4, 16, 1e-6), "rms_norm_back", "both an input and the output");
    refused(rms_norm_back(&mut batch, &a, None, &b, &c, 4, 16, f32::NAN), "rms_norm_back", "eps");
    refused(rms_norm_back(&mut batch, &a, Some(&c), &b, &c, 4, 16, 1e-6), "rms_norm_back", "both an input");
    refused(rms_norm_back(&mut batch, &a, None, &b, &small, 4, 16, 1e-6), "rms_norm_back", "holds 16 bytes");

    refused(geglu_back(&mut batch, &a, &b, &c, &d, &d, 64), "geglu_back", "both an input and the output");
    refused(geglu_back(&mut batch, &a, &b, &small, &d, &e, 64), "geglu_back", "dy `small`");

    refused(unary_back(&mut batch, UnaryOp::Softcap, 0.0, &a, &b, &c, 64), "softcap", "out of range");
    refused(unary_back(&mut batch, UnaryOp::Gelu, 0.0, &a, &b, &b, 64), "gelu_back", "both an input");

    let odd = RopeShape { n_tokens: 1, n_heads: 1, head_dim: 8, n_dims: 7, freq_base: 1e4, freq_scale: 1.0 };
    refused(rope_back(&mut batch, &a, &b, &c, None, &odd), "rope_back", "n_dims 7 must be even");

    let logits = CrossEntropyInput { logits: &a, targets: &b, n_rows: 2, n_elems: 0 };
    refused(cross_entropy(&mut batch, logits, &c), "cross_entropy", "zero logits");
    let logits = CrossEntropyInput { logits: &a, targets: &b, n_rows: 4, n_elems: 16 };
    refused(cross_entropy_back(&mut batch, logits, &c, &small), "cross_entropy_back", "holds 16 bytes");

    let shape = MulMatShape { m: 4, k: 16, n: 2 };
    refused(
        mul_mat_grad_x(&mut batch, shape, &a, &b, QuantType::Q8_0, &c, false, None),
        "mul_mat_grad_x",
        "multiple of 32",
    );
    let blocks = MulMatShape { m: 1, k: 32, n: 1 };
    refused(
        mul_mat_grad_x(&mut batch, blocks, &a, &b, QuantType::Q8_0, &c, true, None),
        "mul_mat_grad_x",
        "accumulating",
    );
    refused(mul_mat_grad_w(&mut batch, shape, &a, &b, &c, f32::INFINITY, false), "mul_mat_grad_w", "scale");
    refused(mul_mat_grad_w(&mut batch, shape, &a, &b, &a, 1.0, false), "mul_mat_grad_w", "both an input");

    let state = AdamwState { param: &a, grad: &b, m: &c, v: &d, grad_scale: &scalar, n_elems: 64 };
    refused(adamw(&mut batch, &AdamwConfig::default(), 0, &state), "adamw", "steps count from 1");
    let betas = AdamwConfig { beta2: 1.0, ..AdamwConfig::default() };
    refused(adamw(&mut batch, &betas, 1, &state), "adamw", "betas");
    let aliased = AdamwState { m: &a, ..state };
    refused(adamw(&mut batch, &AdamwConfig::default(), 1, &aliased), "adamw", "both an input");

    refused(grad_scale(&mut batch, &[(&a, 64)], &b, &scalar, Some(0.0), 1.0), "grad_norm", "max_norm");
    refused(grad_scale(&mut batch, &[(&a, 64)], &small, &scalar, None, 1.0), "grad_norm", "partials `small`");
    refused(grad_scale(&mut batch, &[], &partials, &scalar, None, 1.0), "grad_norm", "no gradient tensors");
    refused(grad_scale(&mut batch, &[(&a, 64), (&partials, 64)], &partials, &scalar, None, 1.0), "grad_norm", "both");

    let heads =
        AttentionBackShape { n_tokens: 2, n_head: 3, n_kv_head: 2, head_dim: 4, window: 0, scale: 1.0, softcap: 0.0 };
    let grads = AttentionGrads {
        q: &a,
        k: &b,
        v: &c,
        d_out: &d,
        dq: &e,
        dk: &small,
        dv: &scalar,
        probs: &a,
        dscores: &b,
        parts: &partials,
    };
    refused(attention_back(&mut batch, &heads, &grads), "attention_back", "3 heads over 2 kv heads");
    let long = AttentionBackShape { n_tokens: 16, n_head: 2, n_kv_head: 1, ..heads };
    refused(attention_back(&mut batch, &long, &grads), "attention_back", "holds");

    assert_eq!(batch.dispatches(), 0, "a refused call records nothing");
    drop(batch);
    assert_eq!(ctx.memory().live_buffers, live, "refused calls leak nothing");
}
