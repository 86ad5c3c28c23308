//! The kernel registry. Every kernel is a WGSL file in `shaders/`, embedded at build time; a kernel family is a
//! key type whose values name one variant each (`defines()` feed the preprocessor). Pipelines are built on first
//! use and cached by the variant's name, which is also its label in profiles and tests.

use super::preprocess::preprocess;
use super::{GpuError, Result};
use std::fmt::Debug;
use std::hash::Hash;

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
    /// Cooperative matrices as `Capabilities::coop_matrix` grants them (with f16 and subgroups of 32).
    pub coop_matrix: bool,
}

impl Requires {
    /// The matrix-core kernels' needs.
    pub const COOP_MATRIX: Requires = Requires { f16: true, subgroups: true, coop_matrix: true };

    pub fn met_by(&self, caps: &super::Capabilities) -> bool {
        (!self.f16 || caps.f16) && (!self.subgroups || caps.subgroups) && (!self.coop_matrix || caps.coop_matrix)
    }

    fn naga_capabilities(&self) -> naga::valid::Capabilities {
        let mut c = naga::valid::Capabilities::empty();
        if self.f16 {
            c |= naga::valid::Capabilities::SHADER_FLOAT16;
        }
        if self.subgroups {
            c |= naga::valid::Capabilities::SUBGROUP | naga::valid::Capabilities::SUBGROUP_BARRIER;
        }
        if self.coop_matrix {
            c |= naga::valid::Capabilities::COOPERATIVE_MATRIX;
        }
        c
    }
}

/// One kernel family: a WGSL file and the choices that make its variants.
pub trait KernelKey: Copy + Eq + Hash + Debug + Send + Sync + 'static {
    /// Path under `shaders/`.
    const FILE: &'static str;
    /// Storage bindings in order, then `Uniform` last if the kernel takes parameters.
    fn bindings(&self) -> &'static [Access];

    /// Unique across all kernels, e.g. `binary_add_f16`: pipeline label, profile row and test id.
    fn name(&self) -> String;
    fn defines(&self) -> Vec<(&'static str, String)>;
    fn requires(&self) -> Requires;
    /// Every variant the engine can produce, so all of them are validated without a GPU.
    fn all_variants() -> Vec<Self>;
}

/// Every variant of a key type from its declared axes, the first outermost:
/// `key_variants!(RmsNormKey { weight in BOOLS, subgroups in BOOLS })` is the four keys of those two choices.
macro_rules! key_variants {
    ($key:ident { $($field:ident in $values:expr),+ $(,)? }) => {{
        let mut all = Vec::new();
        $crate::gpu::kernels::key_variants!(@nest all, $key, [$($field),+], $($field in $values),+);
        all
    }};
    (@nest $all:ident, $key:ident, [$($f:ident),+], $field:ident in $values:expr $(, $rest:ident in $rv:expr)*) => {
        for $field in $values {
            $crate::gpu::kernels::key_variants!(@nest $all, $key, [$($f),+] $(, $rest in $rv)*);
        }
    };
    (@nest $all:ident, $key:ident, [$($f:ident),+]) => {
        $all.push($key { $($f),+ })
    };
}
pub(crate) use key_variants;

/// The two values of an on/off axis.
pub const BOOLS: [bool; 2] = [false, true];

/// A variant's preprocessor defines: `WG_SIZE` (as a u32 literal), then each flag that is on.
pub fn defines_with(wg_size: u32, flags: &[(&'static str, bool)]) -> Vec<(&'static str, String)> {
    let mut d = vec![("WG_SIZE", format!("{wg_size}u"))];
    d.extend(flags.iter().filter(|(_, on)| *on).map(|(name, _)| (*name, String::new())));
    d
}

/// How a row kernel reduces across its workgroup, as variant names spell it: subgroups or workgroup memory.
pub fn reduction_name(subgroups: bool) -> &'static str {
    if subgroups { "sg" } else { "wgred" }
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
    let source = preprocess(K::FILE, &defines, &shader_file).map_err(|e| GpuError::Shader {
        kernel: key.name(),
        stage: "preprocess",
        message: e.to_string(),
    })?;
    // `enable` directives must come before any other statement, so they are added here rather than from an include.
    let source = if key.requires().coop_matrix { format!("enable wgpu_cooperative_matrix;\n{source}") } else { source };
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
    let fail = |stage: &'static str, message: String| GpuError::Shader { kernel: variant.name.clone(), stage, message };
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
