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
}

impl ContextOptions {
    /// Options from `FERROGEM_ADAPTER` and `FERROGEM_DOWNLEVEL`.
    pub fn from_env() -> Self {
        let adapter_filter = std::env::var("FERROGEM_ADAPTER").ok().filter(|s| !s.is_empty());
        let downlevel = std::env::var("FERROGEM_DOWNLEVEL").is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes"));
        ContextOptions { adapter_filter, downlevel, profile: None }
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
const OPTIONAL_FEATURES: [(&str, wgpu::Features); 6] = [
    ("SHADER_F16", wgpu::Features::SHADER_F16),
    ("SUBGROUP", wgpu::Features::SUBGROUP),
    ("SUBGROUP_BARRIER", wgpu::Features::SUBGROUP_BARRIER),
    ("TIMESTAMP_QUERY", wgpu::Features::TIMESTAMP_QUERY),
    ("TIMESTAMP_QUERY_INSIDE_ENCODERS", wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS),
    ("TIMESTAMP_QUERY_INSIDE_PASSES", wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
];

/// What to ask the adapter for: the profile's features and limits (an error if the adapter has less), or without a
/// profile the adapter's own limits and the optional features ferrogem uses that it has. Timestamp queries are
/// instrumentation, not a device property: asked for whenever present.
pub(crate) fn device_request(
    adapter: &wgpu::Adapter,
    profile: Option<&DeviceProfile>,
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
            let optional = wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::SUBGROUP_BARRIER;
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
            "{} ({}, {}, driver {} {}){}; f16={} subgroups={} timestamps={}; max binding {} MiB, max buffer {} MiB",
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
            self.max_storage_buffer_binding_bytes >> 20,
            self.max_buffer_bytes >> 20,
        )
    }
}
