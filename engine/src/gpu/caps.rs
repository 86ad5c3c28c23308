//! What was asked of the adapter and what it granted. Kernel variants are chosen from `Capabilities`, never
//! from the adapter's name.

use super::device_profile::{DeviceProfile, WEBGPU_DEFAULT_PROFILE};
use serde::Serialize;

/// How to pick and open a device.
#[derive(Debug, Clone, Default)]
pub struct ContextOptions {
    /// Case-insensitive substring of the adapter name (`FERROGEM_ADAPTER`).
    pub adapter_filter: Option<String>,
    /// The `webgpu-default` profile (`FERROGEM_DOWNLEVEL=1`): only the WebGPU default limits, no f16 or subgroups,
    /// so the browser-class code paths run on any machine. `profile`, when set, wins.
    pub downlevel: bool,
    /// Ask the adapter for exactly this profile's limits and features, and enforce its memory ceiling.
    pub profile: Option<DeviceProfile>,
    /// Ask for cooperative matrices where the adapter has the matrix-core kernels' configuration
    /// (`FERROGEM_COOP_MATRIX=1`/`0`; unset: [`COOP_MATRIX_BY_DEFAULT`]). Off, the f32 tiles run everywhere.
    pub coop_matrix: bool,
}

/// Whether cooperative matrices are asked for when `FERROGEM_COOP_MATRIX` is unset: on since the matrix-core kernels
/// passed every `path=coop` registry case on an H100 and cut a training step 494 → 289 ms (perf/LOG.md, stop 34).
/// wgpu marks the feature experimental, so `FERROGEM_COOP_MATRIX=0` keeps the f32 tiles as a way out.
pub const COOP_MATRIX_BY_DEFAULT: bool = true;

impl ContextOptions {
    /// Options from `FERROGEM_ADAPTER` and `FERROGEM_DOWNLEVEL`.
    pub fn from_env() -> Self {
        let adapter_filter = std::env::var("FERROGEM_ADAPTER").ok().filter(|s| !s.is_empty());
        let flag = |name: &str| match std::env::var(name).as_deref() {
            Ok("1" | "true" | "yes") => Some(true),
            Ok("0" | "false" | "no") => Some(false),
            _ => None,
        };
        let downlevel = flag("FERROGEM_DOWNLEVEL") == Some(true);
        let coop_matrix = flag("FERROGEM_COOP_MATRIX").unwrap_or(COOP_MATRIX_BY_DEFAULT);
        ContextOptions { adapter_filter, downlevel, profile: None, coop_matrix }
    }

    /// The profile the device is opened with: `profile`, else `webgpu-default` when `downlevel`, else none (the
    /// adapter's own limits and every optional feature ferrogem uses).
    pub fn effective_profile(&self) -> Option<DeviceProfile> {
        self.profile.clone().or_else(|| self.downlevel.then(DeviceProfile::webgpu_default))
    }
}

/// The adapter as reported by the driver.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterReport {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub vendor_id: u32,
    pub device_id: u32,
}

impl AdapterReport {
    pub(crate) fn from_info(info: &wgpu::AdapterInfo) -> Self {
        AdapterReport {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            vendor_id: info.vendor,
            device_id: info.device,
        }
    }
}

/// What the device was granted.
#[derive(Debug, Clone, Serialize)]
pub struct Capabilities {
    pub adapter: AdapterReport,
    /// Opened with the `webgpu-default` profile (`--downlevel`).
    pub downlevel: bool,
    /// The device profile the device was opened with, if any, and its ceiling for tracked bytes.
    pub profile: Option<String>,
    pub ceiling_bytes: Option<u64>,
    /// The optional features granted, by wgpu name (ferrogem asks for no others).
    pub features: Vec<&'static str>,
    /// `SHADER_F16`: f16 storage and arithmetic in WGSL.
    pub f16: bool,
    /// `SUBGROUP`: subgroup builtins (reductions, broadcasts).
    pub subgroups: bool,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    /// `TIMESTAMP_QUERY`, and whether timestamps may be written inside passes.
    pub timestamps: bool,
    pub timestamps_inside_passes: bool,
    /// Cooperative matrices as the matrix-core kernels use them (`Requires::coop_matrix`): the experimental
    /// feature, a 16 × 16 × 16 f16 → f32 configuration, f16, and subgroups of exactly 32 invocations.
    pub coop_matrix: bool,
    pub max_storage_buffer_binding_bytes: u64,
    pub max_buffer_bytes: u64,
    pub max_workgroup_storage_bytes: u32,
    pub max_invocations_per_workgroup: u32,
    pub max_workgroups_per_dimension: u32,
    pub max_storage_buffers_per_stage: u32,
    pub max_bind_groups: u32,
    pub min_storage_offset_alignment_bytes: u32,
    pub min_uniform_offset_alignment_bytes: u32,
}

/// Every optional feature ferrogem may ask for, by wgpu name.
const OPTIONAL_FEATURES: [(&str, wgpu::Features); 7] = [
    ("SHADER_F16", wgpu::Features::SHADER_F16),
    ("SUBGROUP", wgpu::Features::SUBGROUP),
    ("SUBGROUP_BARRIER", wgpu::Features::SUBGROUP_BARRIER),
    ("TIMESTAMP_QUERY", wgpu::Features::TIMESTAMP_QUERY),
    ("TIMESTAMP_QUERY_INSIDE_ENCODERS", wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS),
    ("TIMESTAMP_QUERY_INSIDE_PASSES", wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
    ("EXPERIMENTAL_COOPERATIVE_MATRIX", wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX),
];

/// The cooperative-matrix shape the kernels are written for: 16 × 16 × 16, f16 operands, f32 accumulator.
fn has_f16_16x16x16(adapter: &wgpu::Adapter) -> bool {
    use wgpu::CooperativeScalarType::{F16, F32};
    adapter
        .cooperative_matrix_properties()
        .iter()
        .any(|p| (p.m_size, p.n_size, p.k_size) == (16, 16, 16) && p.ab_type == F16 && p.cr_type == F32)
}

/// What to ask the adapter for: the profile's features and limits (an error if the adapter has less), or without a
/// profile the adapter's own limits and the optional features ferrogem uses that it has. Timestamp queries are
/// instrumentation, not a device property: asked for whenever present.
/// Cooperative matrices (experimental in wgpu) are asked for only without a profile, only where the adapter has the
/// kernels' configuration, and only with `coop_matrix`.
pub(crate) fn device_request(
    adapter: &wgpu::Adapter,
    profile: Option<&DeviceProfile>,
    coop_matrix: bool,
) -> crate::gpu::Result<(wgpu::Features, wgpu::Limits)> {
    let timestamps = wgpu::Features::TIMESTAMP_QUERY
        | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
        | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
    let available = adapter.features();
    match profile {
        Some(p) => {
            p.check_adapter(&adapter.get_info().name, available, &adapter.limits())?;
            Ok((p.wgpu_features() | (available & timestamps), p.limits_for(&adapter.limits())))
        }
        None => {
            let mut optional = wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::SUBGROUP_BARRIER;
            if coop_matrix && has_f16_16x16x16(adapter) {
                optional |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
            }
            Ok((available & (timestamps | optional), adapter.limits()))
        }
    }
}

impl Capabilities {
    pub(crate) fn new(
        info: &wgpu::AdapterInfo,
        features: wgpu::Features,
        limits: &wgpu::Limits,
        profile: Option<&DeviceProfile>,
    ) -> Self {
        let subgroups = features.contains(wgpu::Features::SUBGROUP);
        Capabilities {
            adapter: AdapterReport::from_info(info),
            downlevel: profile.is_some_and(|p| p.name == WEBGPU_DEFAULT_PROFILE),
            profile: profile.map(|p| p.name.clone()),
            ceiling_bytes: profile.and_then(|p| p.ceiling_bytes),
            features: OPTIONAL_FEATURES.iter().filter(|(_, f)| features.contains(*f)).map(|(name, _)| *name).collect(),
            f16: features.contains(wgpu::Features::SHADER_F16),
            subgroups,
            subgroup_min_size: if subgroups { info.subgroup_min_size } else { 0 },
            subgroup_max_size: if subgroups { info.subgroup_max_size } else { 0 },
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            timestamps_inside_passes: features.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
            // The device request asked for the feature only where the adapter has the kernels' configuration.
            coop_matrix: features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
                && features.contains(wgpu::Features::SHADER_F16)
                && subgroups
                && (info.subgroup_min_size, info.subgroup_max_size) == (32, 32),
            max_storage_buffer_binding_bytes: limits.max_storage_buffer_binding_size,
            max_buffer_bytes: limits.max_buffer_size,
            max_workgroup_storage_bytes: limits.max_compute_workgroup_storage_size,
            max_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            max_storage_buffers_per_stage: limits.max_storage_buffers_per_shader_stage,
            max_bind_groups: limits.max_bind_groups,
            min_storage_offset_alignment_bytes: limits.min_storage_buffer_offset_alignment,
            min_uniform_offset_alignment_bytes: limits.min_uniform_buffer_offset_alignment,
        }
    }

    /// One line for logs and report headers.
    pub fn summary(&self) -> String {
        let a = &self.adapter;
        format!(
            "{} ({}, {}, driver {} {}){}; f16={} subgroups={} timestamps={} coop_matrix={}; max binding {} MiB, max buffer {} MiB",
            a.name,
            a.backend,
            a.device_type,
            a.driver,
            a.driver_info,
            match (&self.profile, self.ceiling_bytes) {
                (Some(p), Some(c)) => format!(" [profile {p}, ceiling {}]", super::memory::human_bytes(c)),
                (Some(p), None) => format!(" [profile {p}]"),
                (None, _) => String::new(),
            },
            self.f16,
            if self.subgroups {
                format!("{}..{}", self.subgroup_min_size, self.subgroup_max_size)
            } else {
                "no".into()
            },
            self.timestamps,
            self.coop_matrix,
            self.max_storage_buffer_binding_bytes >> 20,
            self.max_buffer_bytes >> 20,
        )
    }
}
