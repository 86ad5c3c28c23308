//! The context's pipeline cache: a kernel variant is preprocessed, validated with naga and compiled with its
//! explicit bind-group layout on first use, then shared by name.

use super::Context;
use crate::gpu::kernels::{Access, KernelKey, Pipeline, validate, variant_source};
use crate::gpu::{GpuError, Result};
use std::sync::Arc;

impl Context {
    /// The pipeline for `key`, built (and validated with naga first) on first use.
    pub fn pipeline<K: KernelKey>(&self, key: &K) -> Result<Arc<Pipeline>> {
        let name = key.name();
        if let Some(p) = self.shared.lock_state().pipelines.get(&name) {
            return Ok(Arc::clone(p));
        }
        if !key.requires().met_by(self.caps()) {
            return Err(GpuError::Unsupported {
                op: name,
                reason: format!(
                    "needs {:?}, the device granted f16={} subgroups={}",
                    key.requires(),
                    self.caps().f16,
                    self.caps().subgroups
                ),
            });
        }
        let variant = variant_source(key)?;
        validate(&variant)?;
        let device = self.device();
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&name),
            source: wgpu::ShaderSource::Wgsl(variant.source.into()),
        });
        let entries: Vec<wgpu::BindGroupLayoutEntry> = key
            .bindings()
            .iter()
            .enumerate()
            .map(|(i, access)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match access {
                    Access::Read => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: true },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Access::ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: false },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Access::Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
        let layout =
            device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(&name), entries: &entries });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&name),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&name),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        self.check_errors().map_err(|e| GpuError::Shader {
            kernel: name.clone(),
            stage: "create pipeline",
            message: e.to_string(),
        })?;
        let mut state = self.shared.lock_state();
        let id = state.next_id();
        let p = Arc::new(Pipeline { id, name: name.clone(), pipeline, layout, bindings: key.bindings() });
        Ok(Arc::clone(state.pipelines.entry(name).or_insert(p)))
    }
}
