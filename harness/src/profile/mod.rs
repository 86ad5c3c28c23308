//! The measuring half of `ferrogem profile`, which the command runs natively and the browser runs on WebGPU: the
//! measured run (load → prefill → decode → unload), summary.json, and the trajectory as CSV and as an SVG chart.
//! What only the command does (device profiles from files, the memory plan printout, progress bars, writing the
//! files) stays in the binary.

pub mod measure;
pub mod summary;
pub mod svg;

use ferrogem::gpu::{Context, DeviceProfile};

/// trajectory.csv: every alloc and free (time, label, category, bytes, running total, phase).
pub fn trajectory_csv(ctx: &Context) -> ferrogem::Result<String> {
    let mut csv = Vec::new();
    ctx.write_trajectory_csv(&mut csv)?;
    // Every field comes from a Rust string or number, so the bytes are UTF-8 and nothing is replaced.
    Ok(String::from_utf8_lossy(&csv).into_owned())
}

/// trajectory.svg: live bytes by category over the context's lifetime, titled "{model} on {adapter}", with the
/// device profile's name and ceiling.
pub fn trajectory_svg(ctx: &Context, model: &str, profile: Option<&DeviceProfile>) -> String {
    let title = format!("{model} on {}", ctx.caps().adapter.name);
    let chart = svg::Chart {
        title: &title,
        profile: profile.map(|p| p.name.as_str()),
        events: &ctx.memory_events(),
        phases: &ctx.phase_marks(),
        end_s: ctx.elapsed_s(),
        ceiling_bytes: ctx.memory().ceiling_bytes,
    };
    chart.render()
}
