//! What a training step keeps on the GPU: the trained updates (parameters in `Category::Lora`, gradients and
//! AdamW moments in `Category::Optimizer`) and the activations of one sequence (`Category::Scratch`), allocated
//! once for `seq_len` tokens so every step binds the same buffers (the bind-group cache hits from step 2 on).

use crate::error::Result;
use crate::gpu::{Category, Context, GpuBuffer, upload_size_bytes};
use crate::lora::{LowRank, Target};
use crate::models::gemma::ple::{PleChunk, PleLayout};
use crate::models::{LayerSpec, TextConfig};
use crate::ops::attention_back::AttentionBackShape;
use crate::ops::mul_mat_grad::{GradXPath, MulMatShape, grad_x_partials_bytes};
use std::cell::RefCell;

/// Where a trainer's buffers come from: the device, or a [`Tally`] of the bytes the device would allocate (the
/// memory plan), from the same code.
pub trait TrainAlloc {
    type Buffer;
    fn zeroed(&self, label: &str, category: Category, bytes: u64, mappable: bool) -> Result<Self::Buffer>;
    fn upload(&self, label: &str, category: Category, data: &[u8]) -> Result<Self::Buffer>;
}

impl TrainAlloc for Context {
    type Buffer = GpuBuffer;

    fn zeroed(&self, label: &str, category: Category, bytes: u64, mappable: bool) -> Result<GpuBuffer> {
        let usage = mappable.then_some(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
        Ok(self.alloc(label, category, bytes, usage)?)
    }

    fn upload(&self, label: &str, category: Category, data: &[u8]) -> Result<GpuBuffer> {
        Ok(Context::upload(self, label, category, data)?)
    }
}

/// Bytes by category (`Category::ALL` order) of everything "allocated" through it.
#[derive(Debug, Default)]
pub struct Tally(RefCell<[u64; Category::ALL.len()]>);

impl Tally {
    pub fn by_category(&self) -> Vec<(Category, u64)> {
        Category::ALL.into_iter().zip(*self.0.borrow()).filter(|(_, bytes)| *bytes > 0).collect()
    }

    fn add(&self, category: Category, bytes: u64) {
        let slot = Category::ALL.iter().position(|&c| c == category).unwrap_or(Category::ALL.len() - 1);
        self.0.borrow_mut()[slot] += bytes;
    }
}

impl TrainAlloc for Tally {
    type Buffer = ();

    fn zeroed(&self, _: &str, category: Category, bytes: u64, _: bool) -> Result<()> {
        self.add(category, bytes);
        Ok(())
    }

    fn upload(&self, _: &str, category: Category, data: &[u8]) -> Result<()> {
        self.add(category, upload_size_bytes(data.len() as u64));
        Ok(())
    }
}

/// One trained projection: `y = W·x + scale·B·(A·x)`.
#[derive(Debug)]
pub struct TrainUpdate<B = GpuBuffer> {
    pub layer: u32,
    pub target: Target,
    pub rank: u32,
    pub in_dim: u32,
    pub out_dim: u32,
    /// The update's own scale times the user's.
    pub scale: f32,
    /// False for k/v of layers that read a donor's cache: the model never uses them, so they get no gradient and
    /// the optimizer leaves them alone (torch skips parameters whose gradient is None).
    pub trains: bool,
    /// `[rank][in_dim]`, `[out_dim][rank]`, their gradients and moments.
    pub a: B,
    pub b: B,
    pub da: B,
    pub db: B,
    pub moments: [B; 4],
    /// `[n][rank]`: `scale·A·x` of the forward (what dB needs), and `scale·dy·B` of the backward.
    pub u: B,
    pub g: B,
}

impl<B> TrainUpdate<B> {
    pub fn new<A: TrainAlloc<Buffer = B>>(
        alloc: &A,
        u: &LowRank,
        user_scale: f32,
        trains: bool,
        seq_len: u32,
    ) -> Result<TrainUpdate<B>> {
        let name = |what: &str| format!("{} {what}", u.describe());
        let params =
            |what: &str, values: &[f32]| alloc.upload(&name(what), Category::Lora, bytemuck::cast_slice(values));
        let optimizer =
            |what: &str, elems: usize| alloc.zeroed(&name(what), Category::Optimizer, f32_bytes(elems), false);
        let scratch_elems = seq_len as usize * u.rank as usize;
        let scratch = |what: &str| alloc.zeroed(&name(what), Category::Scratch, f32_bytes(scratch_elems), false);
        let (a_elems, b_elems) = (u.a.len(), u.b.len());
        Ok(TrainUpdate {
            layer: u.layer,
            target: u.target,
            rank: u.rank,
            in_dim: u.in_dim,
            out_dim: u.out_dim,
            scale: u.scale * user_scale,
            trains,
            a: params("lora_a", &u.a)?,
            b: params("lora_b", &u.b)?,
            da: optimizer("grad a", a_elems)?,
            db: optimizer("grad b", b_elems)?,
            moments: [
                optimizer("adam m a", a_elems)?,
                optimizer("adam v a", a_elems)?,
                optimizer("adam m b", b_elems)?,
                optimizer("adam v b", b_elems)?,
            ],
            u: scratch("u")?,
            g: scratch("g")?,
        })
    }
}

/// A training sequence's attention backward in layer `spec` (the chunk attends to its own `n_tokens` keys).
pub fn attention_back_shape(cfg: &TextConfig, spec: &LayerSpec, n_tokens: u32) -> AttentionBackShape {
    AttentionBackShape {
        n_tokens,
        n_head: cfg.n_head,
        n_kv_head: spec.n_kv_head,
        head_dim: spec.head_dim,
        window: spec.window.unwrap_or(0),
        scale: cfg.attention_scale,
        softcap: 0.0,
    }
}

/// Room for the splits of the input gradient and of attention's dK and dV, which never run at once: what the
/// widest product of the model would use ([`grad_x_partials_bytes`], at most [`MAX_GRAD_PARTIALS_BYTES`]: fewer
/// splits past it), or the largest layer's attention chunks ([`AttentionBackShape::part_elems`]).
fn grad_partials_elems(cfg: &TextConfig, seq_len: u32, head_rows: u32) -> usize {
    let (h, p) = (cfg.hidden, cfg.ple_dim);
    let mut shapes = vec![MulMatShape { m: cfg.vocab, k: h, n: head_rows }];
    for l in &cfg.layers {
        let (q, kv, ffn) = (cfg.n_head * l.head_dim, l.n_kv_head * l.head_dim, l.ffn_dim);
        for (m, k) in [(q, h), (kv, h), (h, q), (2 * ffn, h), (h, ffn), (p, h), (h, p)] {
            shapes.push(MulMatShape { m, k, n: seq_len });
        }
    }
    let most = shapes
        .into_iter()
        .filter(|s| s.m > 0 && s.k > 0)
        .map(|s| grad_x_partials_bytes(s, GradXPath::Auto))
        .max()
        .unwrap_or(0);
    let attention = cfg.layers.iter().map(|l| attention_back_shape(cfg, l, seq_len).part_elems()).max().unwrap_or(0);
    (most.min(MAX_GRAD_PARTIALS_BYTES) / 4).max(attention) as usize
}

/// The input gradient's partial sums take at most this: 32 MiB give an LM head of Gemma's 262144 rows on 16 head
/// rows all the splits it asks for.
const MAX_GRAD_PARTIALS_BYTES: u64 = 32 << 20;

/// f32 bytes, rounded up to 16 (some kernels view buffers as vec4 arrays).
pub fn f32_bytes(elems: usize) -> u64 {
    (elems as u64 * 4).next_multiple_of(16).max(16)
}

/// Per owner layer: its keys and values after norm and RoPE, and their gradients summed over every layer that
/// reads them (the owner and the KV-shared layers after it).
#[derive(Debug)]
pub struct LayerKv<B = GpuBuffer> {
    pub k: B,
    pub v: B,
    pub dk: B,
    pub dv: B,
}

/// What the backward recomputes: each layer from its saved input, just before its backward (gradient
/// checkpointing per layer: one layer's intermediates in memory at a time), or nothing, the forward keeping every
/// layer's (faster by a layer's forward per layer, at a set of intermediates per layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpointing {
    PerLayer,
    Off,
}

/// A layer's forward intermediates that its backward reads (layer_forward's names), `[n][width]` each.
#[derive(Debug)]
pub struct LayerActs<B = GpuBuffer> {
    pub a: B,
    pub q_raw: B,
    pub q: B,
    pub k_raw: B,
    pub v_raw: B,
    pub heads: B,
    pub o: B,
    pub h1: B,
    pub g: B,
    pub gate: B,
    pub up: B,
    /// Also `d_gate` ([`LayerActs::d_gate`]).
    pub act: B,
    pub f: B,
    pub h2: B,
    pub pg: B,
    pub ple_l: B,
    pub z: B,
    pub pj: B,
}

/// The widths of a [`LayerActs`]: one layer's, or the largest of every layer's.
#[derive(Debug, Clone, Copy, Default)]
struct LayerWidths {
    q: usize,
    kv: usize,
    ffn: usize,
}

impl LayerWidths {
    fn of(cfg: &TextConfig, l: usize) -> LayerWidths {
        let spec = &cfg.layers[l];
        LayerWidths {
            q: (cfg.n_head * spec.head_dim) as usize,
            kv: (spec.n_kv_head * spec.head_dim) as usize,
            ffn: spec.ffn_dim as usize,
        }
    }

    fn max(self, o: LayerWidths) -> LayerWidths {
        LayerWidths { q: self.q.max(o.q), kv: self.kv.max(o.kv), ffn: self.ffn.max(o.ffn) }
    }
}

impl<B> LayerActs<B> {
    /// `gate_width`: gate and up also hold the PLE inputs' temporaries in the first set.
    fn new(
        alloc: &impl Fn(&str, usize) -> Result<B>,
        label: &str,
        n: usize,
        h: usize,
        p: usize,
        w: LayerWidths,
        gate_width: usize,
    ) -> Result<LayerActs<B>> {
        let a = |what: &str, width: usize| alloc(&format!("train {label}{what}"), n * width);
        Ok(LayerActs {
            a: a("a", h)?,
            q_raw: a("q raw", w.q)?,
            q: a("q", w.q)?,
            k_raw: a("k raw", w.kv)?,
            v_raw: a("v raw", w.kv)?,
            heads: a("heads", w.q)?,
            o: a("o", h)?,
            h1: a("h1", h)?,
            g: a("g", h)?,
            gate: a("gate", gate_width)?,
            up: a("up", gate_width)?,
            act: a("act", w.ffn)?,
            f: a("f", h)?,
            h2: a("h2", h)?,
            pg: a("ple gate", p)?,
            ple_l: a("ple inputs of the layer", p)?,
            z: a("ple z", p)?,
            pj: a("ple proj", h)?,
        })
    }

    /// By GeGLU's backward, after the down projection's backward (the last reader of `act`).
    pub fn d_gate(&self) -> &B {
        &self.act
    }
}

/// Activations and their gradients for one sequence of up to `seq_len` tokens: each layer's input (`inputs`), and
/// the layers' intermediates as [`Checkpointing`] says.
#[derive(Debug)]
pub struct Acts<B = GpuBuffer> {
    /// u32 `[n]`: the sequence's token ids, and the ids 0..seq_len (RoPE's positions, the PLE rows' gather).
    pub tokens: B,
    pub iota: B,
    /// The sequence's PLE inputs (models with PLE).
    pub ple: Option<PleChunk<B>>,
    /// `inputs[l]` is layer l's input `[n][H]`; `inputs[L]` the last layer's output.
    pub inputs: Vec<B>,
    pub kv: Vec<Option<LayerKv<B>>>,
    /// One set for all layers (checkpointing) or one per layer ([`Acts::layer`]).
    layers: Vec<LayerActs<B>>,
    // A layer's forward temporaries, read by nothing after it (widths as the largest layer needs).
    /// Also `d_q2` ([`Acts::d_q2`]).
    pub q_normed: B,
    /// Also `d_k2` ([`Acts::d_k2`]).
    pub k_normed: B,
    /// `[n][2·ffn]`, also `d_gate_up` and `d_ffn` ([`Acts::d_gate_up`], [`Acts::d_ffn`]).
    pub gate_up: B,
    pub h3: B,
    /// `[n][H]` a post-norm's output before its residual add.
    pub normed: B,
    // Gradients.
    /// The gradient of the loss with respect to the residual stream at the point the backward has reached.
    pub d_res: B,
    pub d_hidden: B,
    pub d_q: B,
    pub d_k: B,
    pub d_v: B,
    pub d_up: B,
    pub d_ple: B,
    pub d_ple2: B,
    /// Attention backward's two `[n·n_head][n]` tables.
    pub probs: B,
    pub dscores: B,
    /// `[n][widest addend]` (hidden, a layer's K/V, PLE): a product that adds to a gradient goes here first, and
    /// `sum` holds the addition.
    pub tmp: B,
    /// The quantized input gradient's partial sums over splits of W's rows (`mul_mat_grad_x`).
    pub grad_partials: B,
    pub sum: B,
    // The head, which runs on `head_rows` rows at a time (a vocabulary row of logits is 1 MiB for Gemma).
    pub head_rows: u32,
    pub final_normed: B,
    /// `[head_rows][H]`: a group's rows of `final_normed` and their gradient.
    pub head_x: B,
    pub d_head_x: B,
    /// `[head_rows][vocab]`: logits before and after the softcap, and their gradients (`logits` is also
    /// `d_logits_raw`, [`Acts::d_logits_raw`]).
    pub logits_raw: B,
    pub logits: B,
    pub d_logits: B,
    /// u32 `[n]` targets (`IGNORED_TARGET` for rows not trained on), f32 `[n]` per-row losses and their weights
    /// (1/trained rows, 0 elsewhere); and a group's `[head_rows]` of each.
    pub targets: B,
    pub row_loss: B,
    pub row_weight: B,
    pub head_targets: B,
    pub head_loss: B,
    pub head_weight: B,
    /// u32 ids: even and odd rows (the stacked gate/up product's halves viewed as `[2n][ffn]`), and per layer the
    /// rows `t·L + l` of the PLE inputs viewed as `[n·L][P]`.
    pub even_rows: B,
    pub odd_rows: B,
    pub ple_rows: Vec<B>,
}

impl<B> Acts<B> {
    pub fn new<A: TrainAlloc<Buffer = B>>(
        alloc: &A,
        cfg: &TextConfig,
        seq_len: u32,
        head_rows: u32,
        owners: &[bool],
        ple: Option<PleLayout>,
        checkpointing: Checkpointing,
    ) -> Result<Acts<B>> {
        let n = seq_len as usize;
        let rows = head_rows as usize;
        let h = cfg.hidden as usize;
        let widest =
            (0..cfg.n_layers()).map(|l| LayerWidths::of(cfg, l)).fold(LayerWidths::default(), LayerWidths::max);
        let (q_width, kv_width, ffn) = (widest.q, widest.kv, widest.ffn);
        let p = (cfg.ple_dim as usize).max(1);
        let vocab = cfg.vocab as usize;
        let widest_addend = [h, kv_width, p].into_iter().max().unwrap_or(1);
        let ids = |label: &str, values: Vec<u32>| alloc.upload(label, Category::Scratch, bytemuck::cast_slice(&values));
        // The first set's gate and up are also the PLE inputs' temporaries, which take `L·P` per row.
        let ple_width = ple.map_or(0, |layout| layout.row_elems as usize);
        let ple = match ple {
            Some(layout) => Some(PleChunk::new(seq_len, layout, |label, bytes| {
                alloc.zeroed(&format!("train {label}"), Category::Scratch, bytes, false)
            })?),
            None => None,
        };
        let alloc = |label: &str, elems: usize| alloc.zeroed(label, Category::Scratch, f32_bytes(elems), false);
        let layers = match checkpointing {
            Checkpointing::PerLayer => {
                vec![LayerActs::new(&alloc, "", n, h, p, widest, widest.ffn.max(ple_width))?]
            }
            Checkpointing::Off => (0..cfg.n_layers())
                .map(|l| {
                    let w = LayerWidths::of(cfg, l);
                    let gate_width = if l == 0 { w.ffn.max(ple_width) } else { w.ffn };
                    LayerActs::new(&alloc, &format!("layer {l} "), n, h, p, w, gate_width)
                })
                .collect::<Result<_>>()?,
        };
        let mut inputs = Vec::with_capacity(cfg.n_layers() + 1);
        for l in 0..=cfg.n_layers() {
            inputs.push(alloc(&format!("train layer {l} input"), n * h)?);
        }
        let mut kv = Vec::with_capacity(owners.len());
        for (l, &owner) in owners.iter().enumerate() {
            let width = (cfg.layers[l].n_kv_head * cfg.layers[l].head_dim) as usize;
            let buffer = |what: &str| alloc(&format!("train layer {l} {what}"), n * width);
            kv.push(match owner {
                true => Some(LayerKv { k: buffer("k")?, v: buffer("v")?, dk: buffer("dk")?, dv: buffer("dv")? }),
                false => None,
            });
        }
        let table = n * cfg.n_head as usize * n;
        let n_layers = cfg.n_layers() as u32;
        let ple_rows = match cfg.ple_dim {
            0 => Vec::new(),
            _ => (0..n_layers)
                .map(|l| ids(&format!("ple rows of layer {l}"), (0..seq_len).map(|t| t * n_layers + l).collect()))
                .collect::<Result<_>>()?,
        };
        Ok(Acts {
            tokens: alloc("train tokens", n)?,
            iota: ids("train positions", (0..seq_len).collect())?,
            ple,
            inputs,
            kv,
            layers,
            q_normed: alloc("train q normed", n * q_width)?,
            k_normed: alloc("train k normed", n * kv_width)?,
            gate_up: alloc("train gate up", 2 * n * ffn)?,
            h3: alloc("train h3", n * h)?,
            normed: alloc("train post-normed", n * h)?,
            d_res: alloc("train d residual", n * h)?,
            d_hidden: alloc("train d hidden", n * h)?,
            d_q: alloc("train dq", n * q_width)?,
            d_k: alloc("train dk", n * kv_width)?,
            d_v: alloc("train dv", n * kv_width)?,
            d_up: alloc("train d up", n * ffn)?,
            d_ple: alloc("train d ple", n * p)?,
            d_ple2: alloc("train d ple 2", n * p)?,
            probs: alloc("train attention probs", table)?,
            dscores: alloc("train attention dscores", table)?,
            tmp: alloc("train tmp", n * widest_addend)?,
            grad_partials: alloc("train input-gradient partials", grad_partials_elems(cfg, seq_len, head_rows))?,
            sum: alloc("train sum", n * widest_addend)?,
            head_rows,
            final_normed: alloc("train final norm", n * h)?,
            head_x: alloc("train head rows", rows * h)?,
            d_head_x: alloc("train d head rows", rows * h)?,
            logits_raw: alloc("train logits raw", rows * vocab)?,
            logits: alloc("train logits", rows * vocab)?,
            d_logits: alloc("train d logits", rows * vocab)?,
            targets: alloc("train targets", n)?,
            row_loss: alloc("train row loss", n)?,
            row_weight: alloc("train row weight", n)?,
            head_targets: alloc("train head targets", rows)?,
            head_loss: alloc("train head loss", rows)?,
            head_weight: alloc("train head weights", rows)?,
            even_rows: ids("even rows", (0..seq_len).map(|t| 2 * t).collect())?,
            odd_rows: ids("odd rows", (0..seq_len).map(|t| 2 * t + 1).collect())?,
            ple_rows,
        })
    }
}

/// Gradients that share a forward temporary's buffer: the layer's backward writes each after the last read of the
/// temporary in the same layer's forward.
impl<B> Acts<B> {
    /// Layer `l`'s intermediates: its own, or with checkpointing the one set every layer shares.
    pub fn layer(&self, l: usize) -> &LayerActs<B> {
        match self.layers.as_slice() {
            [shared] => shared,
            per_layer => &per_layer[l],
        }
    }

    /// After the attention backward, which comes after RoPE (the only reader of `q_normed`).
    pub fn d_q2(&self) -> &B {
        &self.q_normed
    }

    /// After the attention backward, which comes after RoPE (the only reader of `k_normed`).
    pub fn d_k2(&self) -> &B {
        &self.k_normed
    }

    /// After `gate_up` is split into `gate` and `up` (its only reader).
    pub fn d_gate_up(&self) -> &B {
        &self.gate_up
    }

    /// Also after `gate_up` is split, and dead (read by GeGLU's backward) before `d_gate_up` is written.
    pub fn d_ffn(&self) -> &B {
        &self.gate_up
    }

    /// By the softcap's backward, after the cross-entropy's backward (the last reader of the capped logits).
    pub fn d_logits_raw(&self) -> &B {
        &self.logits
    }
}
