//! The metadata of a synthetic model: every key llama.cpp's converter writes for `gemma4` (gemma4.md §2.1) or
//! `gemma3` (§5), in its order, with a synthetic tokenizer of the real vocab size whose special tokens sit at the
//! real ids (§1.1, §6); or, with `--naming ollama`, what Ollama's converter writes instead (§2.3, §2.4, §5).

use super::presets::Preset;
use super::tensors::QuantMix;
use clap::ValueEnum;
use ferrogem::gguf::{Array, Value};
use ferrogem::models::Arch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Naming {
    /// As `convert_hf_to_gguf.py` + `llama-quantize` write it.
    Llamacpp,
    /// As Ollama's converter writes it: tokenizer `llama` + pre `gemma4`, add_bos false, scores = id, keys sorted.
    Ollama,
}

impl Naming {
    pub fn name(self) -> &'static str {
        match self {
            Naming::Llamacpp => "llamacpp",
            Naming::Ollama => "ollama",
        }
    }
}

/// GGUF token types (`llama_token_type`).
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const BYTE: i32 = 6;
/// `<0x00>`…`<0xFF>` occupy ids 238–493 in the Gemma 3/4 vocabularies (gemma4.md §6).
const FIRST_BYTE_TOKEN: u32 = 238;
/// llama.cpp's score for control tokens in Gemma 4 files.
const CONTROL_SCORE: f32 = -1000.0;

/// (id, text, llama.cpp type) of the Gemma 4 special tokens (gemma4.md §1.1). llama.cpp forces the seven
/// channel/tool-call tokens to USER_DEFINED; Ollama keeps them CONTROL (§2.4 item 3).
const GEMMA4_SPECIAL: &[(u32, &str, i32)] = &[
    (0, "<pad>", CONTROL),
    (1, "<eos>", CONTROL),
    (2, "<bos>", CONTROL),
    (3, "<unk>", CONTROL),
    (4, "<mask>", CONTROL),
    (46, "<|tool>", CONTROL),
    (47, "<tool|>", CONTROL),
    (48, "<|tool_call>", USER_DEFINED),
    (49, "<tool_call|>", USER_DEFINED),
    (50, "<|tool_response>", USER_DEFINED),
    (51, "<tool_response|>", USER_DEFINED),
    (52, "<|\"|>", USER_DEFINED),
    (98, "<|think|>", CONTROL),
    (100, "<|channel>", USER_DEFINED),
    (101, "<channel|>", USER_DEFINED),
    (105, "<|turn>", CONTROL),
    (106, "<turn|>", CONTROL),
    (107, "\n", NORMAL),
    (108, "\n\n", NORMAL),
    (236743, "\u{2581}", NORMAL),
    (255999, "<|image>", CONTROL),
    (256000, "<|audio>", CONTROL),
    (258880, "<|image|>", CONTROL),
    (258881, "<|audio|>", CONTROL),
    (258882, "<image|>", CONTROL),
    (258883, "<audio|>", CONTROL),
    (258884, "<|video|>", CONTROL),
];

/// Gemma 3's (gemma4.md §5; `<unk>` is UNKNOWN in its SPM vocab).
const GEMMA3_SPECIAL: &[(u32, &str, i32)] = &[
    (0, "<pad>", CONTROL),
    (1, "<eos>", CONTROL),
    (2, "<bos>", CONTROL),
    (3, "<unk>", UNKNOWN),
    (4, "<mask>", USER_DEFINED),
    (105, "<start_of_turn>", CONTROL),
    (106, "<end_of_turn>", CONTROL),
    (107, "\n", NORMAL),
    (108, "\n\n", NORMAL),
    (236743, "\u{2581}", NORMAL),
    (255999, "<start_of_image>", USER_DEFINED),
    (256000, "<end_of_image>", USER_DEFINED),
];

/// The chat formats (gemma4.md §5, §6) as short Jinja templates, for runners that format prompts from the file.
const GEMMA4_TEMPLATE: &str = "{{ bos_token }}{% for m in messages %}<|turn>{{ 'model' if m['role'] == 'assistant' \
     else m['role'] }}\n{{ m['content'] | trim }}<turn|>\n{% endfor %}{% if add_generation_prompt %}<|turn>model\n{% endif %}";
const GEMMA3_TEMPLATE: &str = "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == \
     'assistant' else 'user' }}\n{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}\
     <start_of_turn>model\n{% endif %}";

pub fn special_tokens(arch: Arch) -> &'static [(u32, &'static str, i32)] {
    match arch {
        Arch::Gemma4 => GEMMA4_SPECIAL,
        Arch::Gemma3 => GEMMA3_SPECIAL,
    }
}

struct Vocab {
    tokens: Vec<String>,
    scores: Vec<f32>,
    types: Vec<i32>,
}

/// `<tok_N>` for every id without a real text, the real special tokens and byte tokens at their ids.
fn vocab(p: &Preset, naming: Naming) -> Vocab {
    let n = p.vocab as usize;
    let mut tokens: Vec<String> = (0..n).map(|i| format!("<tok_{i}>")).collect();
    let mut types = vec![NORMAL; n];
    for b in 0..=255u32 {
        let id = (FIRST_BYTE_TOKEN + b) as usize;
        if id < n {
            tokens[id] = format!("<0x{b:02X}>");
            types[id] = BYTE;
        }
    }
    for &(id, text, ty) in special_tokens(p.arch) {
        if (id as usize) < n {
            tokens[id as usize] = text.to_owned();
            // Ollama types every special added token of Gemma 4 CONTROL (§2.4 item 3).
            let ollama_gemma4 = naming == Naming::Ollama && p.arch == Arch::Gemma4;
            types[id as usize] = if ollama_gemma4 && ty == USER_DEFINED { CONTROL } else { ty };
        }
    }
    let scores = (0..n)
        .map(|i| match (p.arch, naming) {
            // Ollama builds Gemma 4's vocab from tokenizer.json: score = id.
            (Arch::Gemma4, Naming::Ollama) => i as f32,
            (Arch::Gemma4, Naming::Llamacpp) if types[i] == CONTROL => CONTROL_SCORE,
            (Arch::Gemma4, Naming::Llamacpp) => 0.0,
            // SPM: scores drive merges; a descending ramp like a real unigram vocabulary's log-probabilities.
            (Arch::Gemma3, _) if types[i] == NORMAL => -(i as f32),
            (Arch::Gemma3, _) => 0.0,
        })
        .collect();
    Vocab { tokens, scores, types }
}

/// `general.size_label` as gguf-py spells parameter counts: `5.1B`, `268M`, `1.3M`.
pub fn size_label(params: u64) -> String {
    let (scale, suffix) = match params {
        p if p >= 1_000_000_000 => (1e9, "B"),
        p if p >= 1_000_000 => (1e6, "M"),
        _ => (1e3, "K"),
    };
    let x = params as f64 / scale;
    if x >= 100.0 { format!("{x:.0}{suffix}") } else { format!("{x:.1}{suffix}") }
}

fn s(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

pub fn metadata(p: &Preset, mix: QuantMix, naming: Naming, seed: u64, params: u64) -> Vec<(String, Value)> {
    let arch = p.arch_name();
    let mut kv: Vec<(String, Value)> = Vec::new();
    let mut put = |key: &str, value: Value| kv.push((key.replace("{arch}", arch), value));
    let u32v = Value::U32;
    let n = p.n_layers();

    put("general.architecture", s(arch));
    put("general.type", s("model"));
    if naming == Naming::Llamacpp {
        let family = if p.arch == Arch::Gemma4 { "Gemma 4" } else { "Gemma 3" };
        put("general.name", s(format!("{family} {} synthetic (seed {seed})", p.label.to_uppercase())));
        put("general.size_label", s(size_label(params)));
        // generation_config.json's sampling (gemma4.md §2.1); Ollama keeps it in the params layer instead.
        put("general.sampling.top_k", Value::I32(64));
        put("general.sampling.top_p", Value::F32(0.95));
        put("general.sampling.temp", Value::F32(1.0));
    }
    put("{arch}.block_count", u32v(n as u32));
    put("{arch}.context_length", u32v(p.context));
    put("{arch}.embedding_length", u32v(p.hidden));
    put(
        "{arch}.feed_forward_length",
        match p.uniform_ffn() {
            Some(f) => u32v(f),
            // gguf-py stores a Python int list as INT32 (gemma4.md §2.1).
            None => Value::Array(Array::I32(p.ffn.iter().map(|&f| f as i32).collect())),
        },
    );
    put("{arch}.attention.head_count", u32v(p.n_head));
    put("{arch}.attention.head_count_kv", u32v(p.n_kv_head));
    put("{arch}.rope.freq_base", Value::F32(p.rope_base_full));
    match (p.arch, naming) {
        // Ollama's Gemma 3 converter names the local base `rope.local.freq_base` (gemma4.md §5).
        (Arch::Gemma3, Naming::Ollama) => put("{arch}.rope.local.freq_base", Value::F32(p.rope_base_swa)),
        _ => put("{arch}.rope.freq_base_swa", Value::F32(p.rope_base_swa)),
    }
    // Ollama Gemma 3 files often lack the epsilon (gemma4.md §5); readers default it to the same 1e-6.
    if !(p.arch == Arch::Gemma3 && naming == Naming::Ollama) {
        put("{arch}.attention.layer_norm_rms_epsilon", Value::F32(p.rms_eps));
    }
    put("{arch}.attention.key_length", u32v(p.head_dim_full));
    put("{arch}.attention.value_length", u32v(p.head_dim_full));
    put("general.file_type", u32v(mix.file_type()));
    if let Some(cap) = p.final_softcap {
        put("{arch}.final_logit_softcapping", Value::F32(cap));
    }
    put("{arch}.attention.sliding_window", u32v(p.window));
    if p.arch == Arch::Gemma4 {
        put("{arch}.attention.shared_kv_layers", u32v(p.shared_kv_layers));
        put("{arch}.embedding_length_per_layer_input", u32v(p.ple_dim));
        put("{arch}.attention.sliding_window_pattern", Value::Array(Array::Bool(p.sliding.clone())));
        put("{arch}.attention.key_length_swa", u32v(p.head_dim_swa));
        put("{arch}.attention.value_length_swa", u32v(p.head_dim_swa));
        // The full head dim: the partial rotation is in rope_freqs.weight (gemma4.md §2.1).
        put("{arch}.rope.dimension_count", u32v(p.head_dim_full));
        put("{arch}.rope.dimension_count_swa", u32v(p.head_dim_swa));
    }
    put("{arch}.vocab_size", u32v(p.vocab));
    put("general.quantization_version", u32v(2));

    let v = vocab(p, naming);
    let tokenizer_model = match (p.arch, naming) {
        (Arch::Gemma4, Naming::Llamacpp) => "gemma4",
        // Ollama writes `llama` for Gemma 4 too, with pre = gemma4 (gemma4.md §2.4 item 1); Gemma 3 is SPM.
        _ => "llama",
    };
    put("tokenizer.ggml.model", s(tokenizer_model));
    match (p.arch, naming) {
        (Arch::Gemma4, Naming::Ollama) => put("tokenizer.ggml.pre", s("gemma4")),
        (Arch::Gemma3, _) => put("tokenizer.ggml.pre", s("default")),
        // llama.cpp writes no `pre` for gemma4: it forces it from the model string.
        (Arch::Gemma4, Naming::Llamacpp) => {}
    }
    put("tokenizer.ggml.tokens", Value::Array(Array::String(v.tokens)));
    put("tokenizer.ggml.scores", Value::Array(Array::F32(v.scores)));
    put("tokenizer.ggml.token_type", Value::Array(Array::I32(v.types)));
    if p.arch == Arch::Gemma4 {
        // BPE loaders require the key; the synthetic vocabulary has nothing to merge.
        put("tokenizer.ggml.merges", Value::Array(Array::String(Vec::new())));
    }
    put("tokenizer.ggml.bos_token_id", u32v(2));
    put("tokenizer.ggml.eos_token_id", u32v(1));
    put("tokenizer.ggml.unknown_token_id", u32v(3));
    put("tokenizer.ggml.padding_token_id", u32v(0));
    put("tokenizer.ggml.mask_token_id", u32v(4));
    put("tokenizer.ggml.add_space_prefix", Value::Bool(false));
    // Ollama copies tokenizer_config.json's add_bos_token, false for Gemma 4 (gemma4.md §2.4 item 2).
    put("tokenizer.ggml.add_bos_token", Value::Bool(!(p.arch == Arch::Gemma4 && naming == Naming::Ollama)));
    if naming == Naming::Ollama {
        put("tokenizer.ggml.add_eos_token", Value::Bool(false));
        if p.arch == Arch::Gemma4 {
            // generation_config.json's eos_token_id list: <eos> and <turn|>.
            put("tokenizer.ggml.eos_token_ids", Value::Array(Array::I32(vec![1, 106])));
        }
    }
    let template = if p.arch == Arch::Gemma4 { GEMMA4_TEMPLATE } else { GEMMA3_TEMPLATE };
    put("tokenizer.chat_template", s(template));
    if naming == Naming::Ollama {
        // Ollama's WriteGGUF writes keys sorted.
        kv.sort_by(|a, b| a.0.cmp(&b.0));
    }
    kv
}
