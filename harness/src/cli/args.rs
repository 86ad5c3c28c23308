//! What several subcommands share: a device profile named on the command line, the GPU memory trajectory files,
//! and the typed error of a file that cannot be read or written.

use ferrogem::atomic_file::write_atomic;
use ferrogem::gpu::{Context, DeviceProfile};
use ferrogem_harness::profile;
use std::path::{Path, PathBuf};

/// A named profile from the repository, or a profile file.
pub fn resolve_profile(arg: &str) -> ferrogem::Result<DeviceProfile> {
    if let Some(profile) = DeviceProfile::built_in(arg) {
        return Ok(profile);
    }
    let path = Path::new(arg);
    if !path.exists() {
        let names: Vec<&str> = DeviceProfile::built_in_names().collect();
        return Err(ferrogem::gpu::GpuError::BadProfile {
            origin: arg.to_owned(),
            message: format!("no such file, and not a built-in profile ({})", names.join(", ")),
        }
        .into());
    }
    let text = std::fs::read_to_string(path).map_err(|e| io_error("read", path, e))?;
    Ok(DeviceProfile::parse(&text, arg)?)
}

pub fn io_error(action: &'static str, path: &Path, e: impl std::fmt::Display) -> ferrogem::Error {
    ferrogem::Error::Io { action, path: path.display().to_string(), message: e.to_string() }
}

/// `trajectory.csv` and `trajectory.svg` in `out`: the GPU memory by category and phase over the context's
/// lifetime; returns their paths.
pub fn write_trajectory(
    out: &Path,
    ctx: &Context,
    model: &str,
    profile: Option<&DeviceProfile>,
) -> ferrogem::Result<(PathBuf, PathBuf)> {
    let csv = out.join("trajectory.csv");
    write_atomic(&csv, profile::trajectory_csv(ctx)?.as_bytes())?;
    let svg = out.join("trajectory.svg");
    write_atomic(&svg, profile::trajectory_svg(ctx, model, profile).as_bytes())?;
    Ok((csv, svg))
}
