//! The op case registry, after llama.cpp's test-backend-ops: one case declares its op, parameters, needed
//! features, tolerance, FLOPs and bytes, and how to build its GPU inputs and its CPU reference (candle-core, never
//! a port of our kernels). The same case runs in test mode (check against the reference), perf mode (time it) and,
//! where the op has a backward kernel, grad mode (its gradients against finite differences and autograd, `grad`).
//! Inputs are seeded from the case name, so the `--filter` a failure prints re-runs exactly that case.

mod adamw;
mod attention;
mod attention_grad;
mod binary;
mod compare;
mod cross_entropy;
mod dequant;
mod get_rows;
mod glu;
pub mod grad;
mod grad_norm;
mod lora_add;
mod lora_down;
mod model_shapes;
mod mul_mat;
mod mul_mat_vec;
mod mul_mat_vec_geglu;
mod rms_norm;
mod rms_norm_add;
mod rms_norm_rope;
mod rope;
pub mod runner;
mod set_rows;
mod soft_max;
pub mod stream_read;
mod sum_rows;

mod unary;

use ferrogem::gpu::kernels::Requires;
use ferrogem::gpu::{Batch, Category, Context, GpuBuffer};
use ferrogem::sampling::SplitMix64;
use std::collections::BTreeMap;
use std::rc::Rc;

pub type CaseResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How an output is stored on the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutType {
    F32,
    F16,
}

/// Records a case's op into a batch.
pub type Record = Box<dyn Fn(&mut Batch) -> ferrogem::gpu::Result<()>>;

/// A case with its GPU buffers uploaded and its reference computed.
pub struct Built {
    /// Records the op into a batch; called once in test mode, many times in perf mode.
    pub record: Record,
    /// The output buffer, `output_elems` values followed by guard values that must survive.
    pub output: Rc<GpuBuffer>,
    pub output_type: OutType,
    pub reference: Vec<f32>,
}

pub trait OpCase {
    /// ggml's name for the op.
    fn op(&self) -> &'static str;
    /// The parameters, printed so that `op(vars)` is a filter for exactly this case.
    fn vars(&self) -> String;
    fn requires(&self) -> Requires {
        Requires::default()
    }
    /// Largest NMSE against the reference that passes.
    fn max_nmse(&self) -> f64;
    fn flops(&self) -> u64;
    /// Bytes the op must read and write at least once.
    fn bytes(&self) -> u64;
    /// Elements of the largest tensor, for the `--max-elements` budget on slow adapters.
    fn elems(&self) -> u64;
    fn build(&self, ctx: &Context) -> CaseResult<Built>;
    /// Grad mode: the op's backward kernels and the CPU gradients they must match. `None` where the op has no
    /// backward kernel, or the shape is over `grad::GRAD_MAX_ELEMS`.
    fn build_grad(&self, _ctx: &Context) -> Option<CaseResult<grad::BuiltGrad>> {
        None
    }
    /// Largest NMSE of each backward output against either CPU gradient.
    fn max_grad_nmse(&self) -> f64 {
        crate::tolerance::max_nmse(&format!("{}_back", self.op()), "f32")
    }

    fn name(&self) -> String {
        format!("{}({})", self.op(), self.vars())
    }
}

/// Every case, in a stable order.
pub fn all_cases() -> Vec<Box<dyn OpCase>> {
    let mut cases = Vec::new();
    cases.extend(binary::cases());
    cases.extend(sum_rows::cases());
    for family in [
        mul_mat::cases,
        mul_mat_vec::cases,
        mul_mat_vec_geglu::cases,
        get_rows::cases,
        rms_norm::cases,
        rms_norm_add::cases,
        rms_norm_rope::cases,
        rope::cases,
        glu::cases,
        lora_add::cases,
        lora_down::cases,
        soft_max::cases,
        cross_entropy::cases,
        stream_read::cases,
        unary::cases,
        set_rows::cases,
        attention::cases,
        adamw::cases,
        grad_norm::cases,
        dequant::cases,
        model_shapes::cases,
    ] {
        cases.extend(family());
    }
    cases
}

/// The cases a device with `caps` can run, by op family: each family's smallest case, and every other case up to
/// `max_elements` elements. A small bound still covers every family (and most variants), which is what a slow
/// adapter (a phone, a software one) or a CPU reference compiled to wasm can afford.
pub fn device_subset(
    caps: &ferrogem::gpu::Capabilities,
    max_elements: u64,
) -> BTreeMap<&'static str, Vec<Box<dyn OpCase>>> {
    let mut by_op: BTreeMap<&'static str, Vec<Box<dyn OpCase>>> = BTreeMap::new();
    for case in all_cases() {
        if case.requires().met_by(caps) {
            by_op.entry(case.op()).or_default().push(case);
        }
    }
    for cases in by_op.values_mut() {
        cases.sort_by_key(|c| c.elems());
        let keep = cases.iter().enumerate().take_while(|(i, c)| *i == 0 || c.elems() <= max_elements).count();
        cases.truncate(keep);
    }
    by_op
}

/// splitmix64 over an FNV-1a hash of `name`: values uniform in [-1, 1).
pub fn seeded(name: &str, n: usize) -> Vec<f32> {
    let mut rng = SplitMix64::from_name(name);
    (0..n).map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0).collect()
}

/// Elements past every output that the kernel must not touch.
pub const GUARD_ELEMS: usize = 16;
pub const GUARD_VALUE: f32 = -7.25;

/// An output buffer of `elems` values plus guards, pre-filled with the guard value.
pub fn guarded_output(ctx: &Context, elems: usize, out_type: OutType) -> ferrogem::Result<Rc<GpuBuffer>> {
    let n = elems + GUARD_ELEMS;
    let bytes: Vec<u8> = match out_type {
        OutType::F32 => bytemuck::cast_slice(&vec![GUARD_VALUE; n]).to_vec(),
        OutType::F16 => bytemuck::cast_slice(&vec![half::f16::from_f32(GUARD_VALUE); n]).to_vec(),
    };
    Ok(Rc::new(ctx.upload("out", Category::Scratch, &bytes)?))
}

pub fn upload_f32(ctx: &Context, label: &str, data: &[f32]) -> ferrogem::Result<Rc<GpuBuffer>> {
    Ok(Rc::new(ctx.upload(label, Category::Scratch, bytemuck::cast_slice(data))?))
}

/// The CPU device of the reference.
pub fn cpu() -> candle_core::Device {
    candle_core::Device::Cpu
}

/// One test per op family: `cargo test -p ferrogem-harness --lib rms_norm` runs the cases of `rms_norm` (and of the
/// ops whose names contain it) on the adapter, in test mode on the full device, as `ferrogem check` runs them.
/// CI runs the whole registry through `ferrogem check` (full and downlevel) and skips these.
#[cfg(test)]
mod family_tests {
    use super::all_cases;
    use super::runner::{Mode, RunOptions, run_case};
    use ferrogem::gpu::{Context, ContextOptions};

    fn run_family(op: &str) {
        let ctx = Context::new_blocking(ContextOptions::from_env())
            .unwrap_or_else(|e| panic!("op cases need a GPU adapter and found none: {e}"));
        let options = RunOptions { mode: Mode::Test, max_elements: 1 << 24, read_gb_per_s: None };
        let (mut ran, mut failures) = (0, Vec::new());
        for case in all_cases().into_iter().filter(|c| c.op() == op) {
            let row = pollster::block_on(run_case(&ctx, case.as_ref(), &options));
            println!("{}", row.line());
            match row.status.as_str() {
                "ok" => ran += 1,
                "fail" => failures.push(format!("{}\n  re-run: --filter '^{}$'", row.line(), regex::escape(&row.case))),
                _ => {}
            }
        }
        assert!(failures.is_empty(), "{} failed:\n{}", failures.len(), failures.join("\n"));
        assert!(ran > 0, "no case of `{op}` ran");
    }

    macro_rules! families {
        ($($op:ident),* $(,)?) => {
            $(#[test] fn $op() { run_family(stringify!($op)) })*
            pub(super) const FAMILIES: &[&str] = &[$(stringify!($op)),*];
        };
    }

    families!(
        add,
        mul,
        scale,
        softcap,
        gelu,
        mul_scalar,
        sum_rows,
        mul_mat,
        mul_mat_vec,
        mul_mat_vec_geglu,
        get_rows,
        rms_norm,
        rms_norm_add,
        rms_norm_rope,
        rms_norm_rope_kv,
        rope,
        geglu,
        lora_add,
        lora_down,
        soft_max,
        cross_entropy,
        stream_read,
        set_rows,
        attention,
        adamw,
        grad_norm,
        dequant,
    );
}

#[cfg(test)]
mod tests {
    use super::all_cases;
    use super::family_tests::FAMILIES;
    use std::collections::BTreeSet;

    #[test]
    fn every_op_of_the_registry_has_a_family_test() {
        let ops: BTreeSet<&str> = all_cases().iter().map(|c| c.op()).collect();
        let families: BTreeSet<&str> = FAMILIES.iter().copied().collect();
        assert_eq!(ops, families, "add or remove the family tests to match the registry's ops");
    }
}
