//! What was asked of the adapter and what it granted. Kernel variants are chosen from `Capabilities`, never
//! from the adapter's name.

use serde::Serialize;

/// How to pick and open a device.
#[derive(Debug, Clone, Default)]
pub struct ContextOptions {
    /// Case-insensitive substring of the adapter name (`FERROGEM_ADAPTER`).
    pub adapter_filter: Option<String>,
    /// Ask only for the WebGPU default limits and no f16 or subgroups (`FERROGEM_DOWNLEVEL=1`), so the
    /// browser-class code paths run on any machine.
    pub downlevel: bool,
}

impl ContextOptions {
    /// Options from `FERROGEM_ADAPTER` and `FERROGEM_DOWNLEVEL`.
    pub fn from_env() -> Self {
        let adapter_filter = std::env::var("FERROGEM_ADAPTER").ok().filter(|s| !s.is_empty());
        let downlevel = std::env::var("FERROGEM_DOWNLEVEL").is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes"));
        ContextOptions { adapter_filter, downlevel }
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
    pub downlevel: bool,
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

/// Optional features ferrogem uses when the adapter has them.
pub(crate) fn wanted_features(downlevel: bool) -> wgpu::Features {
    let timestamps = wgpu::Features::TIMESTAMP_QUERY
        | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
        | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
    if downlevel {
        timestamps
    } else {
        timestamps | wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::SUBGROUP_BARRIER
    }
}

impl Capabilities {
    pub(crate) fn new(info: &wgpu::AdapterInfo, features: wgpu::Features, limits: &wgpu::Limits, downlevel: bool) -> Self {
        let subgroups = features.contains(wgpu::Features::SUBGROUP);
        Capabilities {
            adapter: AdapterReport::from_info(info),
            downlevel,
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
            if self.downlevel { " [downlevel]" } else { "" },
            self.f16,
            if self.subgroups { format!("{}..{}", self.subgroup_min_size, self.subgroup_max_size) } else { "no".into() },
            self.timestamps,
            self.max_storage_buffer_binding_bytes >> 20,
            self.max_buffer_bytes >> 20,
        )
    }
}
