//! Device profiles (`profiles/*.toml`): a target device's name, the ceiling for tracked GPU bytes, and the limits
//! and features it grants. A context opened with a profile asks the adapter for exactly those (starting from the
//! WebGPU defaults), so a phone's constraints run on any machine that has at least as much; an adapter with less
//! is a typed error naming the limit or feature and both values. Profiles are parsed from text, never read from
//! disk here (the browser build has no file system): the harness reads files, and the repository's own profiles
//! are compiled in.

use super::{GpuError, ProfileMismatch, Result};
use serde::{Deserialize, Serialize};

/// The profile `--downlevel` and `FERROGEM_DOWNLEVEL=1` select.
pub const WEBGPU_DEFAULT_PROFILE: &str = "webgpu-default";

/// The repository's profiles, by name.
const BUILT_IN: [(&str, &str); 4] = [
    ("iphone-16e", include_str!("../../../profiles/iphone-16e.toml")),
    ("webgpu-default", include_str!("../../../profiles/webgpu-default.toml")),
    ("desktop-8gb", include_str!("../../../profiles/desktop-8gb.toml")),
    ("h200", include_str!("../../../profiles/h200.toml")),
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceProfile {
    pub name: String,
    pub description: String,
    /// Tracked GPU bytes (the accountant's total) that the device tolerates; `None`: no ceiling.
    pub ceiling_bytes: Option<u64>,
    pub features: ProfileFeatures,
    pub limits: ProfileLimits,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileFeatures {
    /// WebGPU `shader-f16` (wgpu `SHADER_F16`).
    pub shader_f16: bool,
    /// WebGPU `subgroups` (wgpu `SUBGROUP` and `SUBGROUP_BARRIER`).
    pub subgroups: bool,
}

/// Limits the profile raises above (or, for alignments, lowers below) the WebGPU defaults. Names and units are
/// the WebGPU spec's (`maxStorageBufferBindingSize` is `max_storage_buffer_binding_size`, in bytes); a limit not
/// listed keeps its default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileLimits {
    pub max_storage_buffer_binding_size: Option<u64>,
    pub max_buffer_size: Option<u64>,
    pub max_compute_workgroup_storage_size: Option<u32>,
    pub max_compute_invocations_per_workgroup: Option<u32>,
    pub max_compute_workgroup_size_x: Option<u32>,
    pub max_compute_workgroup_size_y: Option<u32>,
    pub max_compute_workgroup_size_z: Option<u32>,
    pub max_compute_workgroups_per_dimension: Option<u32>,
    pub max_storage_buffers_per_shader_stage: Option<u32>,
    pub max_bind_groups: Option<u32>,
    pub min_storage_buffer_offset_alignment: Option<u32>,
    pub min_uniform_buffer_offset_alignment: Option<u32>,
}

/// The file layout; `DeviceProfile` is what it means.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    name: String,
    description: String,
    ceiling_bytes: Option<u64>,
    features: ProfileFeatures,
    #[serde(default)]
    limits: ProfileLimits,
}

impl DeviceProfile {
    /// Parses a profile; `origin` (a path or a name) is only for the error message.
    pub fn parse(text: &str, origin: &str) -> Result<DeviceProfile> {
        let bad = |message: String| GpuError::BadProfile { origin: origin.to_owned(), message };
        let file: ProfileFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if file.name.is_empty() {
            return Err(bad("`name` is empty".into()));
        }
        if file.ceiling_bytes == Some(0) {
            return Err(bad("`ceiling_bytes` is 0; leave it out for no ceiling".into()));
        }
        let profile = DeviceProfile {
            name: file.name,
            description: file.description,
            ceiling_bytes: file.ceiling_bytes,
            features: file.features,
            limits: file.limits,
        };
        let limits = profile.wgpu_limits();
        for (what, value) in [
            ("min_storage_buffer_offset_alignment", limits.min_storage_buffer_offset_alignment),
            ("min_uniform_buffer_offset_alignment", limits.min_uniform_buffer_offset_alignment),
        ] {
            if !value.is_power_of_two() {
                return Err(bad(format!("`{what}` = {value} is not a power of two")));
            }
        }
        Ok(profile)
    }

    /// One of the repository's profiles (`iphone-16e`, `webgpu-default`, `desktop-8gb`, `h200`).
    pub fn built_in(name: &str) -> Option<DeviceProfile> {
        let (_, text) = BUILT_IN.iter().find(|(n, _)| *n == name)?;
        // The built-in files are checked by a unit test, so a parse failure here cannot reach a user.
        DeviceProfile::parse(text, name).ok()
    }

    pub fn built_in_names() -> impl Iterator<Item = &'static str> {
        BUILT_IN.iter().map(|(name, _)| *name)
    }

    /// What `--downlevel` asks for.
    pub fn webgpu_default() -> DeviceProfile {
        DeviceProfile {
            name: WEBGPU_DEFAULT_PROFILE.into(),
            description: "WebGPU spec default limits, no f16, no subgroups, no memory ceiling".into(),
            ceiling_bytes: None,
            features: ProfileFeatures::default(),
            limits: ProfileLimits::default(),
        }
    }

    /// The WebGPU defaults with this profile's limits applied.
    pub fn wgpu_limits(&self) -> wgpu::Limits {
        let l = &self.limits;
        let d = wgpu::Limits::defaults();
        wgpu::Limits {
            max_storage_buffer_binding_size: l
                .max_storage_buffer_binding_size
                .unwrap_or(d.max_storage_buffer_binding_size),
            max_buffer_size: l.max_buffer_size.unwrap_or(d.max_buffer_size),
            max_compute_workgroup_storage_size: l
                .max_compute_workgroup_storage_size
                .unwrap_or(d.max_compute_workgroup_storage_size),
            max_compute_invocations_per_workgroup: l
                .max_compute_invocations_per_workgroup
                .unwrap_or(d.max_compute_invocations_per_workgroup),
            max_compute_workgroup_size_x: l.max_compute_workgroup_size_x.unwrap_or(d.max_compute_workgroup_size_x),
            max_compute_workgroup_size_y: l.max_compute_workgroup_size_y.unwrap_or(d.max_compute_workgroup_size_y),
            max_compute_workgroup_size_z: l.max_compute_workgroup_size_z.unwrap_or(d.max_compute_workgroup_size_z),
            max_compute_workgroups_per_dimension: l
                .max_compute_workgroups_per_dimension
                .unwrap_or(d.max_compute_workgroups_per_dimension),
            max_storage_buffers_per_shader_stage: l
                .max_storage_buffers_per_shader_stage
                .unwrap_or(d.max_storage_buffers_per_shader_stage),
            max_bind_groups: l.max_bind_groups.unwrap_or(d.max_bind_groups),
            min_storage_buffer_offset_alignment: l
                .min_storage_buffer_offset_alignment
                .unwrap_or(d.min_storage_buffer_offset_alignment),
            min_uniform_buffer_offset_alignment: l
                .min_uniform_buffer_offset_alignment
                .unwrap_or(d.min_uniform_buffer_offset_alignment),
            ..d
        }
    }

    /// What to request from an adapter with `adapter` limits: the profile's limits, except the two offset
    /// alignments where the adapter needs coarser ones (NVIDIA: 64 bytes where an A18 takes 32). A coarser alignment
    /// only constrains more, so the profile's device is still emulated; and the engine binds whole buffers.
    pub fn limits_for(&self, adapter: &wgpu::Limits) -> wgpu::Limits {
        let mut limits = self.wgpu_limits();
        limits.min_storage_buffer_offset_alignment =
            limits.min_storage_buffer_offset_alignment.max(adapter.min_storage_buffer_offset_alignment);
        limits.min_uniform_buffer_offset_alignment =
            limits.min_uniform_buffer_offset_alignment.max(adapter.min_uniform_buffer_offset_alignment);
        limits
    }

    /// The optional features the profile grants.
    pub fn wgpu_features(&self) -> wgpu::Features {
        let mut features = wgpu::Features::empty();
        if self.features.shader_f16 {
            features |= wgpu::Features::SHADER_F16;
        }
        if self.features.subgroups {
            features |= wgpu::Features::SUBGROUP | wgpu::Features::SUBGROUP_BARRIER;
        }
        features
    }

    /// Fails with the first feature or limit this profile asks for beyond what the adapter offers.
    pub fn check_adapter(&self, adapter: &str, features: wgpu::Features, limits: &wgpu::Limits) -> Result<()> {
        let exceeds = |what: String, requested: String, available: String| {
            GpuError::ProfileExceedsAdapter(Box::new(ProfileMismatch {
                profile: self.name.clone(),
                adapter: adapter.to_owned(),
                what,
                requested,
                available,
            }))
        };
        let wanted = [
            ("shader-f16 (SHADER_F16)", self.features.shader_f16, wgpu::Features::SHADER_F16),
            ("subgroups (SUBGROUP)", self.features.subgroups, wgpu::Features::SUBGROUP),
            ("subgroups (SUBGROUP_BARRIER)", self.features.subgroups, wgpu::Features::SUBGROUP_BARRIER),
        ];
        if let Some((name, _, _)) = wanted.iter().find(|(_, asked, flag)| *asked && !features.contains(*flag)) {
            return Err(exceeds(format!("feature {name}"), "present".into(), "absent".into()));
        }
        let mut first: Option<(&'static str, u64, u64)> = None;
        self.limits_for(limits).check_limits_with_fail_fn(limits, true, |name, requested, available| {
            first = Some((name, requested, available));
        });
        match first {
            Some((name, requested, available)) => {
                Err(exceeds(format!("limit {name}"), requested.to_string(), available.to_string()))
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_profile_parses_and_keeps_its_file_name() {
        for (name, text) in BUILT_IN {
            let profile = DeviceProfile::parse(text, name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(profile.name, name);
        }
        assert_eq!(DeviceProfile::built_in(WEBGPU_DEFAULT_PROFILE), Some(DeviceProfile::webgpu_default()));
        let phone = DeviceProfile::built_in("iphone-16e").unwrap();
        assert_eq!(phone.wgpu_limits().max_storage_buffer_binding_size, 1 << 30);
        assert_eq!(phone.wgpu_features(), wgpu::Features::SHADER_F16);
        assert_eq!(phone.ceiling_bytes, Some(2_250_000_000));
    }

    #[test]
    fn the_default_profile_asks_for_exactly_the_webgpu_defaults() {
        assert_eq!(DeviceProfile::webgpu_default().wgpu_limits(), wgpu::Limits::defaults());
        assert!(DeviceProfile::webgpu_default().wgpu_features().is_empty());
    }

    #[test]
    fn bad_profiles_are_typed_errors_naming_the_problem() {
        let typo = "name = \"x\"\ndescription = \"\"\n[features]\nshader_f16 = true\nsubgroups = false\n\
                    [limits]\nmax_storage_buffer_binding_sise = 5\n";
        let message = DeviceProfile::parse(typo, "typo.toml").unwrap_err().to_string();
        assert!(message.contains("typo.toml") && message.contains("max_storage_buffer_binding_sise"), "{message}");
        let odd = "name = \"x\"\ndescription = \"\"\n[features]\nshader_f16 = true\nsubgroups = false\n\
                   [limits]\nmin_storage_buffer_offset_alignment = 48\n";
        let message = DeviceProfile::parse(odd, "odd").unwrap_err().to_string();
        assert!(message.contains("power of two"), "{message}");
    }

    #[test]
    fn a_profile_beyond_the_adapter_names_the_limit_and_both_values() {
        let phone = DeviceProfile::built_in("iphone-16e").unwrap();
        let lavapipe_like = wgpu::Limits { max_storage_buffer_binding_size: 128 << 20, ..phone.wgpu_limits() };
        let message = phone.check_adapter("llvmpipe", phone.wgpu_features(), &lavapipe_like).unwrap_err().to_string();
        assert!(message.contains("max_storage_buffer_binding_size"), "{message}");
        assert!(message.contains("1073741824") && message.contains("134217728"), "{message}");
        let message = phone.check_adapter("llvmpipe", wgpu::Features::empty(), &phone.wgpu_limits()).unwrap_err();
        assert!(message.to_string().contains("SHADER_F16"), "{message}");
        assert!(phone.check_adapter("big", wgpu::Features::all(), &phone.wgpu_limits()).is_ok());
        let coarse = wgpu::Limits { min_uniform_buffer_offset_alignment: 64, ..phone.wgpu_limits() };
        assert!(phone.check_adapter("nvidia-like", wgpu::Features::all(), &coarse).is_ok());
        assert_eq!(phone.limits_for(&coarse).min_uniform_buffer_offset_alignment, 64);
    }
}
