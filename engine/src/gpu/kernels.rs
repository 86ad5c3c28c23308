//! The kernel registry. Every kernel is a WGSL file in `shaders/`, embedded at build time; a kernel family is a
//! key type whose values name one variant each (`defines()` feed the preprocessor). Pipelines are built on first
//! use and cached by the variant's name, which is also its label in profiles and tests.

use super::context::Context;
use super::preprocess::preprocess;
use crate::error::{Error, Result};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

include!(concat!(env!("OUT_DIR"), "/shader_files.rs"));

/// The text of a file under `shaders/`.
pub fn shader_file(path: &str) -> Option<&'static str> {
    SHADER_FILES.iter().find(|(p, _)| *p == path).map(|(_, text)| *text)
}

/// How a kernel uses one binding of group 0. Inputs are read-only storage so they may alias; the uniform, if
/// any, is the last binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    ReadWrite,
    Uniform,
}

/// Optional device features a variant needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requires {
    pub f16: bool,
    pub subgroups: bool,
}

impl Requires {
    pub fn met_by(&self, caps: &super::Capabilities) -> bool {
        (!self.f16 || caps.f16) && (!self.subgroups || caps.subgroups)
    }

    fn naga_capabilities(&self) -> naga::valid::Capabilities {
        let mut c = naga::valid::Capabilities::empty();
        if self.f16 {
            c |= naga::valid::Capabilities::SHADER_FLOAT16;
        }
        if self.subgroups {
            c |= naga::valid::Capabilities::SUBGROUP | naga::valid::Capabilities::SUBGROUP_BARRIER;
        }
        c
    }
}

/// One kernel family: a WGSL file and the choices that make its variants.
pub trait KernelKey: Copy + Eq + Hash + Debug + Send + Sync + 'static {
    /// Path under `shaders/`.
    const FILE: &'static str;
    /// Storage bindings in order, then `Uniform` last if the kernel takes parameters.
    const BINDINGS: &'static [Access];

    /// Unique across all kernels, e.g. `binary_add_f16`: pipeline label, profile row and test id.
    fn name(&self) -> String;
    fn defines(&self) -> Vec<(&'static str, String)>;
    fn requires(&self) -> Requires;
    /// Every variant the engine can produce, so all of them are validated without a GPU.
    fn all_variants() -> Vec<Self>;
}

/// A preprocessed variant, ready for naga or the device.
#[derive(Debug, Clone)]
pub struct VariantSource {
    pub name: String,
    pub file: &'static str,
    pub requires: Requires,
    pub source: String,
}

pub fn variant_source<K: KernelKey>(key: &K) -> Result<VariantSource> {
    let mut defines = key.defines();
    if key.requires().f16 {
        defines.push(("F16", String::new()));
    }
    let source = preprocess(K::FILE, &defines, &shader_file).map_err(|e| Error::Shader {
        kernel: key.name(),
        stage: "preprocess",
        message: e.to_string(),
    })?;
    // `enable f16;` must be the first statement, so it is added here rather than from an include.
    let source = if key.requires().f16 { format!("enable f16;\n{source}") } else { source };
    Ok(VariantSource { name: key.name(), file: K::FILE, requires: key.requires(), source })
}

/// Every variant of `K`, preprocessed.
pub fn variants_of<K: KernelKey>() -> Result<Vec<VariantSource>> {
    K::all_variants().iter().map(variant_source).collect()
}

/// Parses and validates a variant with naga, allowing exactly the capabilities it declares.
pub fn validate(variant: &VariantSource) -> Result<naga::Module> {
    validate_with(variant, variant.requires)
}

/// Validates `variant` as if the device granted only `allowed`.
pub fn validate_with(variant: &VariantSource, allowed: Requires) -> Result<naga::Module> {
    let fail = |stage: &'static str, message: String| Error::Shader { kernel: variant.name.clone(), stage, message };
    let module = naga::front::wgsl::parse_str(&variant.source)
        .map_err(|e| fail("parse", e.emit_to_string_with_path(&variant.source, variant.file)))?;
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), allowed.naga_capabilities())
        .validate(&module)
        .map_err(|e| fail("validate", e.emit_to_string_with_path(&variant.source, variant.file)))?;
    Ok(module)
}

/// A compiled variant with its explicit bind-group layout.
pub struct Pipeline {
    pub(crate) id: u64,
    pub name: String,
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) layout: wgpu::BindGroupLayout,
    pub(crate) bindings: &'static [Access],
}

impl Context {
    /// The pipeline for `key`, built (and validated with naga first) on first use.
    pub fn pipeline<K: KernelKey>(&self, key: &K) -> Result<Arc<Pipeline>> {
        let name = key.name();
        if let Some(p) = self.shared.lock_state().pipelines.get(&name) {
            return Ok(Arc::clone(p));
        }
        if !key.requires().met_by(self.caps()) {
            return Err(Error::Unsupported {
                op: name,
                reason: format!("needs {:?}, the device granted f16={} subgroups={}", key.requires(), self.caps().f16, self.caps().subgroups),
            });
        }
        let variant = variant_source(key)?;
        validate(&variant)?;
        let device = self.device();
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&name),
            source: wgpu::ShaderSource::Wgsl(variant.source.into()),
        });
        let entries: Vec<wgpu::BindGroupLayoutEntry> = K::BINDINGS
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
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(&name), entries: &entries });
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
        self.check_errors().map_err(|e| Error::Shader { kernel: name.clone(), stage: "create pipeline", message: e.to_string() })?;
        let mut state = self.shared.lock_state();
        let id = state.next_id();
        let p = Arc::new(Pipeline { id, name: name.clone(), pipeline, layout, bindings: K::BINDINGS });
        Ok(Arc::clone(state.pipelines.entry(name).or_insert(p)))
    }
}
