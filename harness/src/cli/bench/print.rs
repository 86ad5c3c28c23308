//! The human-readable result: the summary lines and the per-kernel GPU time tables.

use super::measure::Timing;
use super::{BenchReport, Rate};
use ferrogem::gpu::GpuTimes;
use std::fmt::Write;

/// Kernels shown per table; the rest are summed in one line.
const TOP_KERNELS: usize = 15;

/// One kernel variant's totals across batch labels.
pub struct KernelTotal {
    pub name: String,
    pub dispatches: u64,
    pub gpu_ns: f64,
}

/// GPU time per kernel variant, summed over batch labels, largest first.
pub fn by_kernel(times: &GpuTimes) -> Vec<KernelTotal> {
    let mut totals: Vec<KernelTotal> = Vec::new();
    for k in &times.kernels {
        match totals.iter_mut().find(|t| t.name == k.kernel) {
            Some(t) => {
                t.dispatches += k.dispatches;
                t.gpu_ns += k.gpu_ns;
            }
            None => totals.push(KernelTotal { name: k.kernel.clone(), dispatches: k.dispatches, gpu_ns: k.gpu_ns }),
        }
    }
    totals.sort_by(|a, b| b.gpu_ns.total_cmp(&a.gpu_ns));
    totals
}

fn mb(bytes: f64) -> String {
    format!("{:.2} MB", bytes / 1e6)
}

pub fn tables(r: &BenchReport) -> String {
    let mut out = String::new();
    let m = &r.model;
    let _ = writeln!(
        out,
        "model: {} ({}, {} layers, {} layer matrices, KV cache {}, n_ctx {})",
        m.name, m.arch, m.layers, m.quant, m.kv_cache, m.n_ctx
    );
    if !m.lora.is_empty() {
        let _ = writeln!(out, "LoRA: {}", m.lora);
    }
    let _ = writeln!(
        out,
        "adapter: {} ({}), commit {}",
        r.environment.adapter, r.environment.backend, r.environment.commit
    );
    for (what, tokens, rate) in
        [("prefill", r.prompt_tokens, &r.prefill_tok_s), ("decode", r.gen_tokens, &r.decode_tok_s)]
    {
        let _ = writeln!(
            out,
            "{what:<8}{tokens:>6} tokens: {:>10.2} tok/s median (min {:.2}, max {:.2}) over {} reps",
            rate.median, rate.min, rate.max, r.reps
        );
    }
    let _ = writeln!(
        out,
        "per decoded token: {:.1} dispatches ({:.2} per layer), {:.2} submissions; \
         per prompt: {:.0} dispatches, {:.2} submissions",
        r.decode.dispatches,
        r.decode_dispatches_per_layer,
        r.decode.submissions,
        r.prefill.dispatches,
        r.prefill.submissions
    );
    let b = &r.decode_bytes;
    let _ = writeln!(
        out,
        "bytes read per decoded token: {} (weights {}, KV {})",
        mb(b.total_bytes),
        mb(b.weights_bytes as f64),
        mb(b.kv_bytes)
    );
    let _ = writeln!(
        out,
        "bandwidth: shader read (stream_read) {:.2} GB/s; decode achieves {:.3} GB/s = {:.2}% of the decode roofline ({:.1} tok/s)",
        r.read_gb_per_s,
        r.achieved_gb_per_s,
        100.0 * r.roofline_fraction,
        r.roofline_tok_s
    );
    let _ = writeln!(
        out,
        "memory peak {}; bind-group hit rate: prefill {:.1}%, decode {:.1}%",
        mb(r.memory_peak_bytes as f64),
        100.0 * r.bind_hit_rate_prefill,
        100.0 * r.bind_hit_rate_decode
    );
    match &r.gpu_timing {
        Timing::Unavailable { reason } => {
            let _ = writeln!(out, "GPU time per kernel: unavailable ({reason})");
        }
        Timing::Measured { method, prefill_s, decode_s, prefill, decode } => {
            // Shares are of the wall time of the same timed reps the GPU times come from.
            let step_ns = decode_s.iter().sum::<f64>() * 1e9 / r.timed_tokens();
            let prompt_ns = prefill_s.iter().sum::<f64>() * 1e9 / r.reps as f64;
            let timed_tok_s = Rate::new(r.gen_tokens, decode_s).median;
            let timed_prefill_tok_s = Rate::new(r.prompt_tokens, prefill_s).median;
            let cost_pct = 100.0 * r.timing_cost_fraction.unwrap_or(0.0);
            let _ = writeln!(
                out,
                "GPU timing ({method:?}): decode {timed_tok_s:.2} tok/s with timing on (cost vs off \
                 {cost_pct:+.1}%), prefill {timed_prefill_tok_s:.2} tok/s (medians over {} reps)",
                r.reps
            );
            if decode.invalid_pairs + prefill.invalid_pairs > 0 {
                let _ = writeln!(
                    out,
                    "  {} timestamp pairs ended before they began and were left out",
                    decode.invalid_pairs + prefill.invalid_pairs
                );
            }
            kernel_table(&mut out, "GPU time per decoded token", decode, r.timed_tokens(), step_ns);
            kernel_table(&mut out, "GPU time per prompt", prefill, r.reps as f64, prompt_ns);
        }
    }
    out
}

/// A table of the top kernels: dispatches and µs per `per` (a token or a prompt), share of GPU time and share of
/// the mean wall time of one `per` in the timed reps (`step_ns`).
fn kernel_table(out: &mut String, title: &str, times: &GpuTimes, per: f64, step_ns: f64) {
    let kernels = by_kernel(times);
    let total_ns = times.total_gpu_ns();
    let _ = writeln!(
        out,
        "{title}: {:.1} µs of GPU time = {:.1}% of the {:.1} µs it took (the rest: host work and an idle GPU)",
        total_ns / per / 1e3,
        100.0 * total_ns / per / step_ns,
        step_ns / 1e3
    );
    if kernels.is_empty() {
        let _ = writeln!(out, "  (no timed dispatches)");
        return;
    }
    let width = kernels.iter().take(TOP_KERNELS).map(|k| k.name.len()).max().unwrap_or(6).max(6);
    let _ = writeln!(out, "  {:<width$} {:>10} {:>10} {:>7} {:>7}", "kernel", "dispatches", "µs", "% GPU", "% wall");
    let row = |out: &mut String, name: &str, dispatches: u64, ns: f64| {
        let _ = writeln!(
            out,
            "  {name:<width$} {:>10.1} {:>10.1} {:>7.1} {:>7.1}",
            dispatches as f64 / per,
            ns / per / 1e3,
            100.0 * ns / total_ns.max(f64::MIN_POSITIVE),
            100.0 * ns / per / step_ns
        );
    };
    for k in kernels.iter().take(TOP_KERNELS) {
        row(out, &k.name, k.dispatches, k.gpu_ns);
    }
    if kernels.len() > TOP_KERNELS {
        let rest = &kernels[TOP_KERNELS..];
        let label = format!("({} more)", rest.len());
        row(out, &label, rest.iter().map(|k| k.dispatches).sum(), rest.iter().map(|k| k.gpu_ns).sum());
    }
}
