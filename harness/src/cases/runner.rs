//! Runs cases in test, perf or grad mode and turns each into a report row.
//!
//! [`run_case`] is async because the browser cannot block on a buffer map: web/'s tests await it inside Chromium,
//! native callers block on it. Perf mode times with a blocking wait and the process clock, so it is native only.

use super::compare::judge;
use super::grad::BuiltGrad;
use super::{OpCase, OutType};
use ferrogem::gpu::Context;
use serde::Serialize;
#[cfg(not(target_arch = "wasm32"))]
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Each case against its CPU reference: guards, NaN/Inf parity, then NMSE.
    Test,
    /// Each case timed: µs, GB/s, GFLOP/s and the fraction of the measured read bandwidth.
    Perf,
    /// Each case with a backward kernel: its gradients against f64 finite differences and autograd.
    Grad,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub case: String,
    pub op: String,
    pub mode: Mode,
    /// ok, fail, not_supported, over_budget, no_grad (grad mode, a case without a backward)
    pub status: String,
    pub detail: String,
    pub nmse: Option<f64>,
    pub max_abs: Option<f64>,
    pub max_nmse: f64,
    pub flops: u64,
    pub bytes: u64,
    pub us: Option<f64>,
    pub gb_per_s: Option<f64>,
    pub gflop_per_s: Option<f64>,
    /// Achieved GB/s over the measured read bandwidth (`measure_read_bandwidth`).
    pub read_bw_fraction: Option<f64>,
}

impl Row {
    pub fn line(&self) -> String {
        match self.status.as_str() {
            "ok" => format!("{}: OK {}", self.case, self.detail),
            "fail" => format!("{}: FAIL {}", self.case, self.detail),
            _ => format!("{}: not supported ({})", self.case, self.detail),
        }
    }
}

fn row(case: &dyn OpCase, mode: Mode, status: &str, detail: String) -> Row {
    Row {
        case: case.name(),
        op: case.op().to_owned(),
        mode,
        status: status.to_owned(),
        detail,
        nmse: None,
        max_abs: None,
        max_nmse: case.max_nmse(),
        flops: case.flops(),
        bytes: case.bytes(),
        us: None,
        gb_per_s: None,
        gflop_per_s: None,
        read_bw_fraction: None,
    }
}

pub struct RunOptions {
    pub mode: Mode,
    /// Cases whose largest tensor exceeds this are declined, with the reason, on slow adapters.
    pub max_elements: u64,
    /// Measured read bandwidth in GB/s (perf mode).
    pub read_gb_per_s: Option<f64>,
}

pub async fn run_case(ctx: &Context, case: &dyn OpCase, options: &RunOptions) -> Row {
    // Grad mode builds first: a case without a backward is left out before any other verdict, and grad shapes are
    // bounded by `grad::GRAD_MAX_ELEMS`, not by --max-elements.
    let grad_built = match options.mode {
        Mode::Grad => match case.build_grad(ctx) {
            None => return row(case, Mode::Grad, "no_grad", "no backward kernel for this case".into()),
            some => some,
        },
        Mode::Test | Mode::Perf => None,
    };
    if !case.requires().met_by(ctx.caps()) {
        let reason = format!(
            "needs {:?}; the device granted f16={} subgroups={} coop_matrix={}",
            case.requires(),
            ctx.caps().f16,
            ctx.caps().subgroups,
            ctx.caps().coop_matrix
        );
        return row(case, options.mode, "not_supported", reason);
    }
    if options.mode != Mode::Grad && case.elems() > options.max_elements {
        let reason = format!("{} elements is over --max-elements {}", case.elems(), options.max_elements);
        return row(case, options.mode, "over_budget", reason);
    }
    let result = match (options.mode, grad_built) {
        (Mode::Grad, Some(built)) => match built {
            Ok(built) => grad(ctx, case, built).await,
            Err(e) => Err(e),
        },
        (Mode::Perf, _) => perf(ctx, case, options.read_gb_per_s),
        _ => test(ctx, case).await,
    };
    result.unwrap_or_else(|e| row(case, options.mode, "fail", e.to_string()))
}

async fn read_output(ctx: &Context, built: &super::Built) -> ferrogem::Result<Vec<f32>> {
    let bytes = ctx.read_bytes(&built.output).await?;
    Ok(match built.output_type {
        OutType::F32 => bytemuck::pod_collect_to_vec(&bytes),
        OutType::F16 => bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
    })
}

async fn test(ctx: &Context, case: &dyn OpCase) -> super::CaseResult<Row> {
    let built = case.build(ctx)?;
    let mut batch = ctx.batch(&case.name());
    (built.record)(&mut batch)?;
    batch.submit()?;
    let got = read_output(ctx, &built).await?;
    let verdict = judge(&got, &built.reference, case.max_nmse());
    let mut r = row(case, Mode::Test, if verdict.passed { "ok" } else { "fail" }, verdict.detail);
    r.nmse = verdict.nmse;
    r.max_abs = verdict.max_abs;
    Ok(r)
}

/// Every gradient output against both CPU gradients; the row's NMSE and max |Δ| are the worst of them.
async fn grad(ctx: &Context, case: &dyn OpCase, built: BuiltGrad) -> super::CaseResult<Row> {
    let mut batch = ctx.batch(&case.name());
    (built.record)(&mut batch)?;
    batch.submit()?;
    let (mut passed, mut nmse, mut max_abs, mut details) = (true, 0.0f64, 0.0f64, Vec::new());
    for g in &built.grads {
        let bytes = ctx.read_bytes(&g.output).await?;
        let got: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes);
        for (against, want) in [("fd", &g.finite_diff), ("autograd", &g.autograd)] {
            let verdict = judge(&got, want, case.max_grad_nmse());
            passed &= verdict.passed;
            nmse = nmse.max(verdict.nmse.unwrap_or(f64::INFINITY));
            max_abs = max_abs.max(verdict.max_abs.unwrap_or(f64::INFINITY));
            details.push(format!("d{} vs {against}: {}", g.input, verdict.detail));
        }
    }
    if built.grads.is_empty() {
        return Err("the grad case has no outputs".into());
    }
    let mut r = row(case, Mode::Grad, if passed { "ok" } else { "fail" }, details.join("; "));
    (r.max_nmse, r.nmse, r.max_abs) = (case.max_grad_nmse(), Some(nmse), Some(max_abs));
    Ok(r)
}

/// Perf mode in the browser: not built (it needs a clock and a wait the page can give, through the engine's
/// timestamp queries).
#[cfg(target_arch = "wasm32")]
fn perf(_: &Context, case: &dyn OpCase, _: Option<f64>) -> super::CaseResult<Row> {
    Ok(row(case, Mode::Perf, "not_supported", "perf mode runs natively only".into()))
}

/// Wall-clock time per op over batches of repeated dispatches, each batch waited for; the batch grows until one
/// takes long enough that submission and wait overheads are small beside it.
#[cfg(not(target_arch = "wasm32"))]
fn perf(ctx: &Context, case: &dyn OpCase, read_gb_per_s: Option<f64>) -> super::CaseResult<Row> {
    let built = case.build(ctx)?;
    let run = |reps: u32| -> ferrogem::Result<f64> {
        let mut batch = ctx.batch(&case.name());
        for _ in 0..reps {
            (built.record)(&mut batch)?;
        }
        let start = Instant::now();
        batch.submit()?;
        ctx.wait_idle()?;
        Ok(start.elapsed().as_secs_f64())
    };
    run(1)?;
    let mut reps = 1u32;
    let mut seconds = run(reps)?;
    while seconds < 0.05 && reps < 4096 {
        reps *= 4;
        seconds = run(reps)?;
    }
    let us = seconds / reps as f64 * 1e6;
    let gb_per_s = case.bytes() as f64 / (us * 1e3);
    let mut r = row(case, Mode::Perf, "ok", String::new());
    r.detail = format!("{us:.1} us, {gb_per_s:.2} GB/s, {:.2} GFLOP/s", case.flops() as f64 / (us * 1e3));
    if let Some(read) = read_gb_per_s {
        r.detail.push_str(&format!(", {:.0}% of read bandwidth", 100.0 * gb_per_s / read));
        r.read_bw_fraction = Some(gb_per_s / read);
    }
    r.us = Some(us);
    r.gb_per_s = Some(gb_per_s);
    r.gflop_per_s = Some(case.flops() as f64 / (us * 1e3));
    Ok(r)
}

/// What a shader measurably reads from device memory, in GB/s: `stream_read` over a 256 MiB buffer (or the
/// largest one binding takes), timed over repeated dispatches. The yardstick of bandwidth-bound kernels and of the
/// decode roofline; a buffer copy is not what the kernels do (on an H200 it measured 845 GB/s against HBM's ~4.8
/// TB/s).
#[cfg(not(target_arch = "wasm32"))]
pub fn measure_read_bandwidth(ctx: &Context) -> ferrogem::Result<f64> {
    use super::stream_read::MEASURE_WORKGROUPS;
    use ferrogem::gpu::Category;
    use ferrogem::ops::stream_read::stream_read;
    let caps = ctx.caps();
    let size = (256u64 << 20).min(caps.max_storage_buffer_binding_bytes).min(caps.max_buffer_bytes) & !255;
    let src = ctx.alloc("read bandwidth src", Category::Scratch, size, None)?;
    let out = ctx.alloc("read bandwidth sums", Category::Scratch, MEASURE_WORKGROUPS as u64 * 4, None)?;
    let run = |reps: u32| -> ferrogem::Result<f64> {
        let mut batch = ctx.batch("read bandwidth");
        for _ in 0..reps {
            stream_read(&mut batch, &src, size / 16, &out, MEASURE_WORKGROUPS)?;
        }
        let start = Instant::now();
        batch.submit()?;
        ctx.wait_idle()?;
        Ok(start.elapsed().as_secs_f64())
    };
    run(1)?;
    let mut reps = 1;
    let mut seconds = run(reps)?;
    while seconds < 0.1 && reps < 1024 {
        reps *= 4;
        seconds = run(reps)?;
    }
    Ok(size as f64 * reps as f64 / seconds / 1e9)
}
