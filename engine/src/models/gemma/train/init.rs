//! A fresh adapter as HF peft initializes one (`init_lora_weights=True`): A from a Kaiming-uniform draw with
//! a = √5, which is U(−1/√in, 1/√in), and B zero, so training starts from the base model's outputs exactly.

use super::super::target_shape;
use crate::error::{Error, Result};
use crate::lora::{AdapterFormat, LoraAdapter, LowRank, Target};
use crate::models::TextConfig;
use crate::sampling::Xoshiro256;

/// What to train: rank, α (scale α/r, or α/√r with rsLoRA), the projections, and the seed of A's draw.
#[derive(Debug, Clone)]
pub struct FreshLora {
    pub rank: u32,
    pub alpha: f32,
    pub use_rslora: bool,
    pub targets: Vec<Target>,
    pub seed: u64,
}

/// Updates on every layer that has each target. Layers whose k/v the model never uses (KV-shared) and K = V layers'
/// missing V get none, as HF has no such modules; a target no layer has is an error.
pub fn fresh_adapter(cfg: &TextConfig, has_attn_v: &dyn Fn(usize) -> bool, spec: &FreshLora) -> Result<LoraAdapter> {
    let bad = |reason: String| Err(Error::Unsupported { op: "a fresh adapter".into(), reason });
    if spec.rank == 0 || !(spec.alpha.is_finite() && spec.alpha > 0.0) {
        return bad(format!("rank {} and alpha {} must be > 0", spec.rank, spec.alpha));
    }
    if spec.targets.is_empty() {
        return bad("no target projections".into());
    }
    let scale = match spec.use_rslora {
        true => spec.alpha / (spec.rank as f32).sqrt(),
        false => spec.alpha / spec.rank as f32,
    };
    let mut rng = Xoshiro256::seed_from_u64(spec.seed);
    let mut updates = Vec::new();
    for &target in &spec.targets {
        let mut reason = None;
        let before = updates.len();
        for l in 0..cfg.n_layers() {
            let (out_dim, in_dim) = match target_shape(cfg, has_attn_v, l, target) {
                Ok(Some(shape)) => shape,
                Ok(None) => continue,
                Err(why) => {
                    reason = Some(why);
                    continue;
                }
            };
            let bound = 1.0 / (in_dim as f64).sqrt();
            let a = (0..spec.rank as usize * in_dim as usize)
                .map(|_| ((2.0 * rng.next_unit_f64() - 1.0) * bound) as f32)
                .collect();
            let b = vec![0.0; out_dim as usize * spec.rank as usize];
            updates.push(LowRank { layer: l as u32, target, rank: spec.rank, in_dim, out_dim, scale, a, b });
        }
        if updates.len() == before {
            let why = reason.unwrap_or_else(|| "no layer uses it".into());
            return bad(format!("the model has no {} ({}): {why}", target.gguf_stem(), target.hf_module()));
        }
    }
    let arch = Some(cfg.arch.gguf_name().to_owned());
    Ok(LoraAdapter::new(AdapterFormat::Peft, arch, None, spec.alpha, updates)?)
}
