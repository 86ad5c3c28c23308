//! What several subcommands share: a device profile named on the command line, and the typed error of a file
//! that cannot be read or written.

use ferrogem::gpu::DeviceProfile;
use std::path::Path;

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
