//! Op dispatchers. Each validates its inputs, picks a variant key from the device's capabilities, fills its
//! parameters and records one dispatch into a batch; none creates a device, submits or reads back.

pub mod adamw;
mod args;
pub mod attention;
pub mod attention_back;
pub mod binary;
pub mod cross_entropy;
pub mod get_rows;
pub mod glu;
pub mod glu_back;
pub mod grad_norm;
pub mod lora_add;
pub mod lora_down;
pub mod mul_mat;
pub mod mul_mat_grad;
pub mod mul_mat_vec;
pub mod rms_norm;
pub mod rms_norm_add;
pub mod rms_norm_back;
pub mod rms_norm_rope;
pub mod rope;
pub mod set_rows;
pub mod soft_max;
pub mod stream_read;
pub mod sum_rows;
pub mod sum_splits;
pub mod tile;
pub mod unary;
pub mod weights;

use crate::gpu::Result;
use crate::gpu::kernels::{VariantSource, variants_of};

/// Every variant of every kernel the engine can produce, for validation without a GPU.
pub fn all_kernel_variants() -> Result<Vec<VariantSource>> {
    let mut all = variants_of::<binary::BinaryKey>()?;
    all.extend(variants_of::<sum_rows::SumRowsKey>()?);
    for family in [
        adamw::variants,
        attention::variants,
        attention_back::variants,
        cross_entropy::variants,
        get_rows::variants,
        glu::variants,
        glu_back::variants,
        grad_norm::variants,
        lora_add::variants,
        lora_down::variants,
        mul_mat::variants,
        mul_mat_grad::variants,
        rms_norm::variants,
        rms_norm_add::variants,
        rms_norm_back::variants,
        rms_norm_rope::variants,
        rope::variants,
        set_rows::variants,
        soft_max::variants,
        stream_read::variants,
        sum_splits::variants,
        unary::variants,
    ] {
        all.extend(family()?);
    }
    Ok(all)
}

/// Workgroup size of the elementwise and row kernels: a multiple of every subgroup size we have seen (8 on
/// lavapipe, 32 on NVIDIA, up to 64 on AMD) and within the WebGPU default of 256 invocations.
pub const WG_SIZE: u32 = 256;
