//! Hyperparameters of the synthetic models: the real Gemma 4 E2B/E4B (`docs/gemma4.md` §1.1/§2.1, the
//! values `golden/scripts/make_shape_metadata.py` writes) and Gemma 3 270M (`golden/shapes/gemma3-270m.gguf`),
//! plus tiny models small enough for `ferrogem check model` on a software adapter.

use clap::ValueEnum;
use ferrogem::models::Arch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchArg {
    Gemma4,
    Gemma3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PresetArg {
    /// A few hundred kilobytes: vocab 512, hidden 256, 6 layers (Gemma 4: PLE, KV sharing, double-wide MLP).
    Tiny,
    /// Gemma 4 E2B shapes.
    E2b,
    /// Gemma 4 E4B shapes.
    E4b,
    /// Gemma 3 270M shapes.
    #[value(name = "270m")]
    G270m,
}

/// Everything a synthetic model's metadata and tensor shapes follow from.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    pub arch: Arch,
    /// `tiny`, `e2b`, …: the Ollama tag the model gets by default and part of `general.name`.
    pub label: &'static str,
    pub vocab: u32,
    pub hidden: u32,
    pub n_head: u32,
    pub n_kv_head: u32,
    /// Head dim of sliding layers (`key_length_swa`); equals `head_dim_full` for Gemma 3.
    pub head_dim_swa: u32,
    /// Head dim of full layers (`key_length`).
    pub head_dim_full: u32,
    /// FFN width per layer; written as a per-layer INT32 array only when the widths differ (E2B's double-wide MLP).
    pub ffn: Vec<u32>,
    /// true = sliding layer (`sliding_window_pattern`).
    pub sliding: Vec<bool>,
    pub shared_kv_layers: u32,
    /// Per-layer-embedding width P (`embedding_length_per_layer_input`); 0 for Gemma 3.
    pub ple_dim: u32,
    pub window: u32,
    pub context: u32,
    pub rope_base_full: f32,
    pub rope_base_swa: f32,
    /// Fraction of a full layer's head dim that rotates (Gemma 4 proportional RoPE: 0.25, encoded in
    /// `rope_freqs.weight`).
    pub partial_rotary_full: f32,
    pub rms_eps: f32,
    pub final_softcap: Option<f32>,
}

/// Gemma's RMSNorm epsilon and RoPE bases (gemma4.md §1.1, §5).
const RMS_EPS: f32 = 1e-6;
const ROPE_BASE_FULL: f32 = 1e6;
const ROPE_BASE_SWA: f32 = 1e4;
/// Gemma 4's final logit softcap (gemma4.md §1.1).
const GEMMA4_SOFTCAP: f32 = 30.0;
/// Gemma 4 full layers rotate a quarter of their head dim (`partial_rotary_factor`).
const GEMMA4_PARTIAL_ROTARY: f32 = 0.25;
const REAL_VOCAB: u32 = 262_144;
/// The tiny models: as the golden fixtures (vocab 512, window 8 so that short prompts cross it), but hidden 256 so
/// that K-quant blocks fit most rows and `--quant Q4_K_M` really yields Q4_K/Q6_K tensors.
const TINY_VOCAB: u32 = 512;
const TINY_HIDDEN: u32 = 256;
const TINY_WINDOW: u32 = 8;
const TINY_CONTEXT: u32 = 4096;

/// Layer `l` of `n` is full every `period` layers (the last of each group), as in E2B (5), E4B and Gemma 3 (6).
fn pattern(n: usize, period: usize) -> Vec<bool> {
    (0..n).map(|l| l % period != period - 1).collect()
}

impl Preset {
    pub fn new(arch: ArchArg, preset: PresetArg) -> Result<Self, String> {
        let gemma4 = |label, hidden, n_layers: usize, n_kv_head, ffn, sliding, shared_kv_layers| {
            Preset {
                arch: Arch::Gemma4,
                label,
                vocab: REAL_VOCAB,
                hidden,
                n_head: 8,
                n_kv_head,
                head_dim_swa: 256,
                head_dim_full: 512,
                ffn,
                sliding,
                shared_kv_layers,
                ple_dim: 256,
                window: 512,
                context: 131_072,
                rope_base_full: ROPE_BASE_FULL,
                rope_base_swa: ROPE_BASE_SWA,
                partial_rotary_full: GEMMA4_PARTIAL_ROTARY,
                rms_eps: RMS_EPS,
                final_softcap: Some(GEMMA4_SOFTCAP),
            }
            .checked(n_layers)
        };
        let gemma3 = |label, vocab, hidden, n_layers, n_kv_head, head_dim, ffn, window, context| {
            Preset {
                arch: Arch::Gemma3,
                label,
                vocab,
                hidden,
                n_head: 4,
                n_kv_head,
                head_dim_swa: head_dim,
                head_dim_full: head_dim,
                ffn: vec![ffn; n_layers],
                sliding: pattern(n_layers, 6),
                shared_kv_layers: 0,
                ple_dim: 0,
                window,
                context,
                rope_base_full: ROPE_BASE_FULL,
                rope_base_swa: ROPE_BASE_SWA,
                partial_rotary_full: 1.0,
                rms_eps: RMS_EPS,
                final_softcap: None,
            }
            .checked(n_layers)
        };
        match (arch, preset) {
            (ArchArg::Gemma4, PresetArg::E2b) => {
                let ffn = [vec![6144; 15], vec![12288; 20]].concat();
                gemma4("e2b", 1536, 35, 1, ffn, pattern(35, 5), 20)
            }
            (ArchArg::Gemma4, PresetArg::E4b) => gemma4("e4b", 2560, 42, 2, vec![10240; 42], pattern(42, 6), 18),
            (ArchArg::Gemma4, PresetArg::Tiny) => Preset {
                vocab: TINY_VOCAB,
                n_head: 4,
                head_dim_swa: 64,
                head_dim_full: 128,
                // The golden tiny Gemma 4's layout: s,s,s,f,s,f, the last two sharing KV, double-wide MLP on them.
                ffn: vec![512, 512, 512, 512, 1024, 1024],
                sliding: vec![true, true, true, false, true, false],
                ple_dim: 16,
                window: TINY_WINDOW,
                context: TINY_CONTEXT,
                ..gemma4("tiny", TINY_HIDDEN, 6, 2, vec![0; 6], vec![true; 6], 2)?
            }
            .checked(6),
            (ArchArg::Gemma3, PresetArg::G270m) => gemma3("270m", REAL_VOCAB, 640, 18, 1, 256, 2048, 512, 32_768),
            (ArchArg::Gemma3, PresetArg::Tiny) => {
                gemma3("tiny", TINY_VOCAB, TINY_HIDDEN, 6, 2, 64, 512, TINY_WINDOW, TINY_CONTEXT)
            }
            (arch, preset) => Err(format!(
                "no {preset:?} preset for {arch:?}: gemma4 has tiny, e2b and e4b; gemma3 has tiny and 270m"
            )),
        }
    }

    fn checked(self, n_layers: usize) -> Result<Self, String> {
        let ok = self.ffn.len() == n_layers
            && self.sliding.len() == n_layers
            && (self.shared_kv_layers as usize) < n_layers
            && self.n_head.is_multiple_of(self.n_kv_head);
        if ok { Ok(self) } else { Err(format!("inconsistent preset {self:?}")) }
    }

    pub fn n_layers(&self) -> usize {
        self.sliding.len()
    }

    pub fn head_dim(&self, layer: usize) -> u32 {
        if self.sliding[layer] { self.head_dim_swa } else { self.head_dim_full }
    }

    /// The one FFN width when every layer has it (written as a scalar), else `None` (a per-layer array).
    pub fn uniform_ffn(&self) -> Option<u32> {
        self.ffn.iter().all(|&f| f == self.ffn[0]).then_some(self.ffn[0])
    }

    /// Entries of `rope_freqs.weight` (full head dim / 2) and how many of them rotate (factor 1.0); the rest are
    /// 1e30, which makes their angle 0 (gemma4.md §2.2).
    pub fn rope_freqs_len(&self) -> (usize, usize) {
        let pairs = self.head_dim_full as usize / 2;
        let rotating = (self.head_dim_full as f32 * self.partial_rotary_full / 2.0) as usize;
        (pairs, rotating)
    }

    pub fn arch_name(&self) -> &'static str {
        self.arch.gguf_name()
    }
}
