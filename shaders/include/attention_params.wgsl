// The uniform of attention.wgsl and attention_tiled.wgsl (`AttentionParams` in ops/attention/mod.rs), and the score
// that stands for "no position yet".

struct Params {
    n_tokens: u32,
    n_head: u32,
    n_kv_head: u32,
    head_dim: u32,
    kv_capacity: u32,
    q_pos0: u32,
    // 0 = no sliding window.
    window: u32,
    scale: f32,
    // 0 = no logit softcap.
    softcap: f32,
    // Workgroups per row; each scores up to split_keys consecutive visible positions (without SPLIT: 1, all).
    n_splits: u32,
    split_keys: u32,
    _pad0: u32,
    // COMBINE with LORA_DOWN: the rows of A (rank_total) and where the heads' parts of u start (elements).
    lora_rank_total: u32,
    lora_u_offset: u32,
    _pad1: u32,
    _pad2: u32,
}

// Below any real score, yet far enough from −f32::MAX that subtracting a score cannot overflow to −inf.
const NEG_BIG: f32 = -1.0e30;
