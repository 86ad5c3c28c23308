//! Hyperparameters of a Gemma text decoder, read from GGUF metadata alone, with every per-layer fact (sliding or
//! full, head dim, KV heads, FFN width, whose KV cache it reads, RoPE) settled here so the forward pass never works
//! them out again. Sources: `docs/gemma4.md` §1–§5.

use crate::gguf::{GgufError, GgufFile};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Gemma4,
    Gemma3,
}

impl Arch {
    /// `general.architecture`, and the prefix of the architecture's metadata keys.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Arch::Gemma4 => "gemma4",
            Arch::Gemma3 => "gemma3",
        }
    }
}

/// What one layer is, decided at load time.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LayerSpec {
    pub index: usize,
    pub sliding: bool,
    pub head_dim: u32,
    pub n_kv_head: u32,
    pub ffn_dim: u32,
    /// The layer whose KV cache this layer attends to: its own index, or its donor's when KV is shared.
    pub kv_source: usize,
    pub rope_base: f32,
    /// Positions are divided by this before RoPE (Gemma 3 4B+ global layers: linear scaling ×8).
    pub rope_scale: f32,
    /// Attention sees positions p' with p − p' < window; `None` on full layers.
    pub window: Option<u32>,
}

impl LayerSpec {
    pub fn owns_kv(&self) -> bool {
        self.kv_source == self.index
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TextConfig {
    pub arch: Arch,
    pub hidden: u32,
    pub n_head: u32,
    pub vocab: u32,
    pub context_length: u32,
    pub rms_eps: f32,
    /// Multiplies q·k: 1.0 for Gemma 4, 1/√query_pre_attn_scalar for Gemma 3.
    pub attention_scale: f32,
    /// `cap · tanh(logits / cap)` after the LM head; `None` when absent or 0.
    pub final_softcap: Option<f32>,
    /// Per-layer-embedding width P (Gemma 4 E-models); 0 when the model has none.
    pub ple_dim: u32,
    pub layers: Vec<LayerSpec>,
}

/// Gemma 3 local layers: llama.cpp hard-codes this base when the file carries no `rope.freq_base_swa`.
pub const GEMMA3_DEFAULT_ROPE_BASE_SWA: f32 = 10_000.0;
/// Gemma 3: layer l is full iff l % 6 == 5 when the file has no sliding-window pattern (llama.cpp `set_swa_pattern(6)`).
pub const GEMMA3_SWA_PERIOD: usize = 6;
/// Gemma 3 4B/12B/27B (context 131072) divide global-layer positions by 8 (gemma4.md §5).
pub const GEMMA3_LONG_CONTEXT: u32 = 131_072;
pub const GEMMA3_LONG_CONTEXT_ROPE_SCALE: f32 = 8.0;
/// Gemma 3 files often omit the RMSNorm epsilon (Ollama conversions).
pub const DEFAULT_RMS_EPS: f32 = 1e-6;
/// The most layers a file may declare: the deepest Gemma (3 27B) has 62, so this only bounds what a hostile
/// `block_count` can make the loader allocate.
pub const MAX_LAYERS: usize = 1024;
/// The per-layer embedding table of Gemma 4 E-models; its presence turns PLE on.
pub const PLE_TABLE: &str = "per_layer_token_embd.weight";
/// The widest hidden, FFN, head or PLE width taken (Gemma's widest is 21504), and the most heads (Gemma: 32). Two
/// such widths, or a width and a head or layer count, multiply without overflowing u32.
pub const MAX_WIDTH: u32 = 1 << 20;
pub const MAX_HEADS: u32 = 1 << 10;

fn bad(key: &str, why: String) -> GgufError {
    GgufError::WrongType { key: key.to_owned(), expected: "a consistent Gemma configuration", found: why }
}

impl TextConfig {
    pub fn from_gguf(g: &GgufFile) -> Result<TextConfig, GgufError> {
        let arch = match g.architecture()? {
            "gemma4" => Arch::Gemma4,
            "gemma3" => Arch::Gemma3,
            other => {
                return Err(GgufError::WrongType {
                    key: "general.architecture".into(),
                    expected: "gemma4 or gemma3",
                    found: format!("`{other}`"),
                });
            }
        };
        let p = arch.gguf_name();
        let key = |k: &str| format!("{p}.{k}");
        let n_layers = g.get_u32(&key("block_count"))? as usize;
        // Per-layer facts are vectors of n_layers: bound it before anything is sized by it.
        if n_layers == 0 || n_layers > MAX_LAYERS {
            return Err(bad(&key("block_count"), format!("{n_layers} layers; a Gemma has 1 to {MAX_LAYERS}")));
        }
        check_layer_tensors(g, n_layers, &key("block_count"))?;
        let hidden = g.get_u32(&key("embedding_length"))?;
        let n_head = g.get_u32(&key("attention.head_count"))?;
        let n_kv_heads = g.get_u32_per_layer(&key("attention.head_count_kv"), n_layers)?;
        let ffn_dims = g.get_u32_per_layer(&key("feed_forward_length"), n_layers)?;
        let head_dim_full = g.get_u32(&key("attention.key_length"))?;
        let window = g.get_u32(&key("attention.sliding_window"))?;
        let rms_eps = g.get_f32(&key("attention.layer_norm_rms_epsilon")).unwrap_or(DEFAULT_RMS_EPS);
        let rope_base_full = g.get_f32(&key("rope.freq_base"))?;
        let final_softcap = g.get_f32(&key("final_logit_softcapping")).ok().filter(|c| *c > 0.0);
        let context_length = g.get_u32(&key("context_length"))?;
        let vocab = vocab_size(g, p)?;

        let sliding: Vec<bool> = match g.get_bool_array(&key("attention.sliding_window_pattern")) {
            Ok(pattern) if pattern.len() == n_layers => pattern.to_vec(),
            Ok(pattern) => {
                return Err(bad(
                    &key("attention.sliding_window_pattern"),
                    format!("{} entries for {n_layers} layers", pattern.len()),
                ));
            }
            Err(GgufError::MissingKey { .. }) if arch == Arch::Gemma3 => {
                (0..n_layers).map(|l| l % GEMMA3_SWA_PERIOD != GEMMA3_SWA_PERIOD - 1).collect()
            }
            Err(e) => return Err(e),
        };

        let (head_dim_swa, rope_base_swa, shared_kv_layers, ple_dim, attention_scale) = match arch {
            Arch::Gemma4 => (
                g.get_u32(&key("attention.key_length_swa"))?,
                g.get_f32(&key("rope.freq_base_swa"))?,
                g.get_u32(&key("attention.shared_kv_layers")).unwrap_or(0) as usize,
                g.get_u32(&key("embedding_length_per_layer_input")).unwrap_or(0),
                1.0,
            ),
            Arch::Gemma3 => {
                // llama.cpp: 1/√head_dim, except the 27B (62 layers), which uses 1/√(hidden / heads).
                let scalar = if n_layers == 62 { (hidden / n_head) as f32 } else { head_dim_full as f32 };
                let base_swa = g
                    .get_f32(&key("rope.freq_base_swa"))
                    .or_else(|_| g.get_f32(&key("rope.local.freq_base")))
                    .unwrap_or(GEMMA3_DEFAULT_ROPE_BASE_SWA);
                (head_dim_full, base_swa, 0, 0, 1.0 / scalar.sqrt())
            }
        };
        let rope_scale_full = match g.get_str(&key("rope.scaling.type")) {
            Ok("linear") => g.get_f32(&key("rope.scaling.factor")).unwrap_or(GEMMA3_LONG_CONTEXT_ROPE_SCALE),
            Ok(_) => 1.0,
            // Ollama's Gemma 3 4B+ conversions can lack the scaling keys: those models are the long-context ones.
            Err(_) if arch == Arch::Gemma3 && context_length >= GEMMA3_LONG_CONTEXT => GEMMA3_LONG_CONTEXT_ROPE_SCALE,
            Err(_) => 1.0,
        };
        // Widths multiply into buffer sizes and kernel indices: bound each so no product of two overflows.
        let widths = [
            ("embedding_length", hidden, MAX_WIDTH),
            ("attention.key_length", head_dim_full, MAX_WIDTH),
            ("attention.key_length_swa", head_dim_swa, MAX_WIDTH),
            ("embedding_length_per_layer_input", ple_dim, MAX_WIDTH),
            ("attention.head_count", n_head, MAX_HEADS),
        ];
        let per_layer = ffn_dims.iter().map(|&f| ("feed_forward_length", f, MAX_WIDTH));
        let per_layer_kv = n_kv_heads.iter().map(|&h| ("attention.head_count_kv", h, MAX_HEADS));
        for (name, value, max) in widths.into_iter().chain(per_layer).chain(per_layer_kv) {
            if value > max {
                return Err(bad(&key(name), format!("{value}; this engine takes at most {max}")));
            }
        }
        // V is as wide as K in every Gemma, and the kernels read it so: a file that says otherwise is not one.
        for (name, k_width) in [("attention.value_length", head_dim_full), ("attention.value_length_swa", head_dim_swa)]
        {
            match g.get_u32(&key(name)) {
                Ok(v_width) if v_width != k_width => {
                    return Err(bad(&key(name), format!("{v_width}, but the key length is {k_width}")));
                }
                _ => {}
            }
        }
        if window == 0 && sliding.iter().any(|&s| s) {
            return Err(bad(&key("attention.sliding_window"), "0, but some layers use a sliding window".into()));
        }
        // Per-layer embeddings are on when the file has their table, and then need their width (files of
        // metadata alone, the shape files, have no tensors to check against).
        let has_ple_table = g.tensor(PLE_TABLE).is_some();
        if arch == Arch::Gemma4 && !g.tensors().is_empty() && has_ple_table != (ple_dim > 0) {
            let what = if has_ple_table {
                "0, but the file has per_layer_token_embd"
            } else {
                "set, but the file has no per_layer_token_embd"
            };
            return Err(bad(&key("embedding_length_per_layer_input"), format!("{ple_dim}: {what}")));
        }
        if shared_kv_layers >= n_layers && shared_kv_layers > 0 {
            return Err(bad(&key("attention.shared_kv_layers"), format!("{shared_kv_layers} of {n_layers} layers")));
        }
        let first_shared = n_layers - shared_kv_layers;
        let mut layers = Vec::with_capacity(n_layers);
        for l in 0..n_layers {
            let sw = sliding[l];
            // HF's rule: a shared layer reads the last owner layer of the same type.
            let kv_source = if l < first_shared {
                l
            } else {
                (0..first_shared).rev().find(|&d| sliding[d] == sw).ok_or_else(|| {
                    bad(
                        &key("attention.shared_kv_layers"),
                        format!("layer {l} shares KV but no earlier layer of its type owns any"),
                    )
                })?
            };
            layers.push(LayerSpec {
                index: l,
                sliding: sw,
                head_dim: if sw { head_dim_swa } else { head_dim_full },
                n_kv_head: n_kv_heads[l],
                ffn_dim: ffn_dims[l],
                kv_source,
                rope_base: if sw { rope_base_swa } else { rope_base_full },
                rope_scale: if sw { 1.0 } else { rope_scale_full },
                window: sw.then_some(window),
            });
        }
        for l in &layers {
            if l.n_kv_head == 0 || n_head % l.n_kv_head != 0 {
                return Err(bad(
                    &key("attention.head_count_kv"),
                    format!("layer {}: {} KV heads for {n_head} heads", l.index, l.n_kv_head),
                ));
            }
        }
        Ok(TextConfig {
            arch,
            hidden,
            n_head,
            vocab,
            context_length,
            rms_eps,
            attention_scale,
            final_softcap,
            ple_dim,
            layers,
        })
    }

    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// Whether llama.cpp's (and Google's JAX) donor formula, `n_kv_from_start − (sliding ? 2 : 1)`, picks the same
    /// donors as the rule used here (HF's: the last owner layer of the same type). They agree for the released
    /// E2B/E4B; a file where they do not is one where peers will disagree with each other.
    pub fn donors_agree_with_llama_cpp(&self) -> bool {
        let owners = self.layers.iter().filter(|l| l.owns_kv()).count();
        self.layers.iter().filter(|l| !l.owns_kv()).all(|l| {
            let offset = if l.sliding { 2 } else { 1 };
            owners.checked_sub(offset) == Some(l.kv_source)
        })
    }
}

/// Rows of the embedding table: the tensor's own shape when present, else `<arch>.vocab_size`, else the tokenizer's
/// token count (which can be longer than the table in Ollama files, so it comes last).
/// Layer tensors (`blk.N.…`) must match the declared layer count exactly: a file whose `block_count` is smaller than
/// its layers would run a truncated model. (Missing tensors of a declared layer are the loader's error; a file of
/// metadata alone, as in `golden/shapes/`, has no layer tensors to compare.)
fn check_layer_tensors(g: &GgufFile, n_layers: usize, key: &str) -> Result<(), GgufError> {
    let layer_of = |name: &str| name.strip_prefix("blk.")?.split('.').next()?.parse::<usize>().ok();
    match g.tensors().iter().find(|t| layer_of(t.name()).is_some_and(|l| l >= n_layers)) {
        Some(t) => Err(bad(key, format!("{n_layers} layers, but the file has tensor `{}`", t.name()))),
        None => Ok(()),
    }
}

fn vocab_size(g: &GgufFile, prefix: &str) -> Result<u32, GgufError> {
    if let Some(t) = g.tensor("token_embd.weight")
        && let Some(&rows) = t.dims().get(1)
    {
        return u32::try_from(rows).map_err(|_| bad("token_embd.weight", format!("{rows} rows")));
    }
    if let Ok(v) = g.get_u32(&format!("{prefix}.vocab_size")) {
        return Ok(v);
    }
    Ok(g.get_array("tokenizer.ggml.tokens")?.len() as u32)
}
