//! The tensor list of a synthetic model (gemma4.md §2.2 for Gemma 4, §5 for Gemma 3): names, ggml shapes, how
//! each is filled, and which type each gets under a `--quant` mix, chosen the way llama.cpp's `llama-quantize`
//! chooses (`src/llama-quant.cpp`: `llama_tensor_get_type_impl` and `tensor_type_fallback`).

use super::presets::Preset;
use clap::ValueEnum;
use ferrogem::models::Arch;
use ferrogem::quant::QuantType;

/// A file-wide type choice, named as `llama-quantize` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[allow(non_camel_case_types)]
pub enum QuantMix {
    #[value(name = "F32")]
    F32,
    #[value(name = "F16")]
    F16,
    #[value(name = "BF16")]
    BF16,
    #[value(name = "Q8_0")]
    Q8_0,
    #[value(name = "Q4_0")]
    Q4_0,
    #[value(name = "Q5_0")]
    Q5_0,
    #[value(name = "Q4_K_M")]
    Q4_K_M,
    #[value(name = "Q5_K_M")]
    Q5_K_M,
    #[value(name = "Q6_K")]
    Q6_K,
}

impl QuantMix {
    /// The type most 2-D weights get (`llama_ftype_get_default_type`).
    fn default_type(self) -> QuantType {
        use QuantType as T;
        match self {
            QuantMix::F32 => T::F32,
            QuantMix::F16 => T::F16,
            QuantMix::BF16 => T::BF16,
            QuantMix::Q8_0 => T::Q8_0,
            QuantMix::Q4_0 => T::Q4_0,
            QuantMix::Q5_0 => T::Q5_0,
            QuantMix::Q4_K_M => T::Q4K,
            QuantMix::Q5_K_M => T::Q5K,
            QuantMix::Q6_K => T::Q6K,
        }
    }

    /// `general.file_type` (llama.cpp's `llama_ftype`).
    pub fn file_type(self) -> u32 {
        match self {
            QuantMix::F32 => 0,
            QuantMix::F16 => 1,
            QuantMix::Q4_0 => 2,
            QuantMix::Q8_0 => 7,
            QuantMix::Q5_0 => 8,
            QuantMix::Q4_K_M => 15,
            QuantMix::Q5_K_M => 17,
            QuantMix::Q6_K => 18,
            QuantMix::BF16 => 32,
        }
    }

    /// The name `llama-quantize` and Ollama's config blob use (also the `--quant` value).
    pub fn name(self) -> &'static str {
        match self {
            QuantMix::F32 => "F32",
            QuantMix::F16 => "F16",
            QuantMix::BF16 => "BF16",
            QuantMix::Q8_0 => "Q8_0",
            QuantMix::Q4_0 => "Q4_0",
            QuantMix::Q5_0 => "Q5_0",
            QuantMix::Q4_K_M => "Q4_K_M",
            QuantMix::Q5_K_M => "Q5_K_M",
            QuantMix::Q6_K => "Q6_K",
        }
    }

    fn is_quantized(self) -> bool {
        !matches!(self, QuantMix::F32 | QuantMix::F16 | QuantMix::BF16)
    }
}

/// How a tensor's values are drawn. Random weights stay small and norms near 1, so activations keep their
/// scale through the layers and the random model is not chaotic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fill {
    /// Independent uniform values in [lo, hi).
    Uniform { lo: f32, hi: f32 },
    /// `rope_freqs`: 1.0 for the first `rotating` entries, 1e30 (no rotation) after.
    RopeFreqs { rotating: usize },
}

/// Uniform on ±0.02·√3: standard deviation 0.02, the usual init of transformer weights.
const WEIGHT_HALF_RANGE: f32 = 0.034_641;
/// Norm weights near 1 (Gemma 3 files store 1 + w, Gemma 4 raw w: either way the value used is ≈ 1).
const NORM: Fill = Fill::Uniform { lo: 0.9, hi: 1.1 };
/// `layer_output_scale` as in the golden tiny Gemma 4 (golden/README.md).
const LAYER_SCALE: Fill = Fill::Uniform { lo: 0.6, hi: 1.4 };

/// Gemma 4's q/k norm weights. Its attention scale is 1.0, so q·k of two RMS-normed heads scaled by w has a
/// standard deviation of about w²·√head_dim; w = head_dim^(−1/4) keeps it near 1 (0.35 at head dim 64, the value
/// the golden tiny model uses; 0.25 and 0.21 at E2B's 256 and 512).
fn gemma4_qk_norm(head_dim: u32) -> Fill {
    let w = (head_dim as f32).powf(-0.25);
    Fill::Uniform { lo: 0.9 * w, hi: 1.1 * w }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTensor {
    pub name: String,
    /// ggml order: `dims[0]` (ne0) is contiguous; quant blocks run along it.
    pub dims: Vec<u64>,
    pub dtype: QuantType,
    pub fill: Fill,
}

impl PlannedTensor {
    pub fn elems(&self) -> u64 {
        self.dims.iter().product()
    }

    pub fn cols(&self) -> usize {
        self.dims[0] as usize
    }

    pub fn rows(&self) -> usize {
        (self.elems() / self.dims[0]) as usize
    }

    pub fn size_bytes(&self) -> u64 {
        self.dtype.bytes_for(self.elems()).expect("the planner only picks types whose blocks fit a row")
    }
}

/// Tensors in llama.cpp's file order (its loader's `weight_name_comparer`: tensors outside blocks first, then by
/// block number, each group by name), which is also the order `llama-quantize` counts `attn_v`/`ffn_down` in.
pub fn plan(p: &Preset, mix: QuantMix) -> Vec<PlannedTensor> {
    let mut list: Vec<(String, Vec<u64>, Fill)> = Vec::new();
    let (h, v) = (p.hidden as u64, p.vocab as u64);
    let w = Fill::Uniform { lo: -WEIGHT_HALF_RANGE, hi: WEIGHT_HALF_RANGE };
    let mut add = |name: String, dims: &[u64], fill: Fill| list.push((name, dims.to_vec(), fill));
    add("token_embd.weight".into(), &[h, v], w);
    add("output_norm.weight".into(), &[h], NORM);
    let ple = p.ple_dim as u64;
    let lp = p.n_layers() as u64 * ple;
    if p.arch == Arch::Gemma4 {
        add("per_layer_token_embd.weight".into(), &[lp, v], w);
        add("per_layer_model_proj.weight".into(), &[h, lp], w);
        add("per_layer_proj_norm.weight".into(), &[ple], NORM);
        let (pairs, rotating) = p.rope_freqs_len();
        add("rope_freqs.weight".into(), &[pairs as u64], Fill::RopeFreqs { rotating });
    }
    for l in 0..p.n_layers() {
        let name = |t: &str| format!("blk.{l}.{t}.weight");
        let hd = p.head_dim(l) as u64;
        let (q, kv, ffn) = (p.n_head as u64 * hd, p.n_kv_head as u64 * hd, p.ffn[l] as u64);
        let qk_norm = match p.arch {
            Arch::Gemma4 => gemma4_qk_norm(hd as u32),
            Arch::Gemma3 => NORM,
        };
        add(name("attn_norm"), &[h], NORM);
        add(name("attn_q"), &[h, q], w);
        // Converted Gemma 4 files keep K/V (and the K norm) on KV-shared layers too, unused (gemma4.md §2.2).
        add(name("attn_k"), &[h, kv], w);
        add(name("attn_v"), &[h, kv], w);
        add(name("attn_output"), &[q, h], w);
        add(name("attn_q_norm"), &[hd], qk_norm);
        add(name("attn_k_norm"), &[hd], qk_norm);
        add(name("post_attention_norm"), &[h], NORM);
        add(name("ffn_norm"), &[h], NORM);
        add(name("ffn_gate"), &[h, ffn], w);
        add(name("ffn_up"), &[h, ffn], w);
        add(name("ffn_down"), &[ffn, h], w);
        add(name("post_ffw_norm"), &[h], NORM);
        if p.arch == Arch::Gemma4 {
            add(name("layer_output_scale"), &[1], LAYER_SCALE);
            add(name("inp_gate"), &[h, ple], w);
            add(name("proj"), &[ple, h], w);
            add(name("post_norm"), &[h], NORM);
        }
    }
    list.sort_by(|a, b| (block_of(&a.0), &a.0).cmp(&(block_of(&b.0), &b.0)));

    let mut chooser = TypeChooser {
        mix,
        n_layers: p.n_layers(),
        n_attn_v: list.iter().filter(|(n, ..)| n.contains("attn_v.weight")).count(),
        i_attn_v: 0,
        i_ffn_down: 0,
    };
    list.into_iter()
        .map(|(name, dims, fill)| {
            let dtype = chooser.choose(&name, &dims);
            PlannedTensor { name, dims, dtype, fill }
        })
        .collect()
}

/// Ollama's `WriteGGUF` order, approximately: blocks in numeric order, then the tensors outside blocks (its
/// comparator is not a total order, so the exact order within a group depends on its input).
pub fn ollama_order(plan: &mut [PlannedTensor]) {
    plan.sort_by(|a, b| {
        let key = |t: &PlannedTensor| block_of(&t.name).unwrap_or(usize::MAX);
        key(a).cmp(&key(b)).then_with(|| a.name.cmp(&b.name))
    });
}

/// `blk.N.` → Some(N); tensors outside blocks sort first (llama.cpp's comparer gives them layer −1).
fn block_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// llama.cpp's `use_more_bits`: the first and last eighth of the layers and every third one between.
fn use_more_bits(i: usize, n: usize) -> bool {
    let (i, n) = (i as i64, n as i64);
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

struct TypeChooser {
    mix: QuantMix,
    n_layers: usize,
    n_attn_v: usize,
    i_attn_v: usize,
    i_ffn_down: usize,
}

impl TypeChooser {
    fn choose(&mut self, name: &str, dims: &[u64]) -> QuantType {
        use QuantType as T;
        // The converter forces F32 on every 1-D tensor (norms, rope_freqs, layer_output_scale).
        if dims.len() < 2 {
            return T::F32;
        }
        if !self.mix.is_quantized() {
            return self.mix.default_type();
        }
        // `llama-quantize` leaves `per_layer_model_proj` as converted: BF16, as from the bf16 HF checkpoints.
        if name.contains("per_layer_model_proj") {
            return T::BF16;
        }
        let ne0 = dims[0];
        let mut t = self.mix.default_type();
        if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
            // Tied embeddings (no `output.weight`): both tables get the output tensor's type.
            t = if !ne0.is_multiple_of(t.block_elems()) {
                T::Q8_0
            } else if t != T::Q8_0 {
                T::Q6K
            } else {
                t
            };
        } else if name.contains("attn_v.weight") {
            let more = use_more_bits(self.i_attn_v, self.n_attn_v);
            if more && matches!(self.mix, QuantMix::Q4_K_M | QuantMix::Q5_K_M) {
                t = T::Q6K;
            }
            self.i_attn_v += 1;
        } else if name.contains("ffn_down") {
            let more = use_more_bits(self.i_ffn_down, self.n_layers);
            if more && matches!(self.mix, QuantMix::Q4_K_M | QuantMix::Q5_K_M) {
                t = T::Q6K;
            }
            self.i_ffn_down += 1;
        }
        fallback(t, ne0)
    }
}

/// `tensor_type_fallback`: a row that is not a whole number of blocks takes the 32-wide type of similar size, or
/// F16 when not even that fits (the golden tiny files: `proj` rows of 16 are F16 in every quantized mix).
fn fallback(t: QuantType, ne0: u64) -> QuantType {
    use QuantType as T;
    if ne0.is_multiple_of(t.block_elems()) {
        return t;
    }
    let f = match t {
        T::Q4K => T::Q5_0,
        T::Q5K => T::Q5_1,
        T::Q6K => T::Q8_0,
        _ => T::F16,
    };
    if ne0.is_multiple_of(f.block_elems()) { f } else { T::F16 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::presets::{ArchArg, PresetArg};
    use std::collections::BTreeMap;

    fn counts(arch: ArchArg, preset: PresetArg, mix: QuantMix) -> BTreeMap<&'static str, usize> {
        let mut c = BTreeMap::new();
        for t in plan(&Preset::new(arch, preset).unwrap(), mix) {
            *c.entry(t.dtype.name()).or_default() += 1;
        }
        c
    }

    /// The real Gemma 3 270M Q4_K_M (golden/README.md): {F32 109, Q4_K 27, Q5_0 81, Q6_K 9, Q8_0 10}.
    #[test]
    fn gemma3_270m_q4_k_m_matches_the_real_file() {
        let want = BTreeMap::from([("F32", 109), ("Q4_K", 27), ("Q5_0", 81), ("Q6_K", 9), ("Q8_0", 10)]);
        assert_eq!(counts(ArchArg::Gemma3, PresetArg::G270m, QuantMix::Q4_K_M), want);
    }

    /// E2B: 601 tensors, 283 F32 as observed; the 2-D ones follow llama.cpp's standard Q4_K_M recipe.
    #[test]
    fn gemma4_e2b_q4_k_m_counts() {
        let want = BTreeMap::from([("BF16", 1), ("F32", 283), ("Q4_K", 281), ("Q6_K", 36)]);
        assert_eq!(counts(ArchArg::Gemma4, PresetArg::E2b, QuantMix::Q4_K_M), want);
    }

    #[test]
    fn order_is_llama_cpp_and_blocks_sort_numerically() {
        let names: Vec<String> = plan(&Preset::new(ArchArg::Gemma4, PresetArg::E2b).unwrap(), QuantMix::F32)
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names[0], "output_norm.weight");
        assert_eq!(names[5], "token_embd.weight");
        assert_eq!(names[6], "blk.0.attn_k.weight");
        assert_eq!(names[7], "blk.0.attn_k_norm.weight");
        let b10 = names.iter().position(|n| n.starts_with("blk.10.")).unwrap();
        assert!(names[b10 - 1].starts_with("blk.9."));
    }
}
