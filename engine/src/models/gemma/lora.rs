//! LoRA adapters applied on the GPU: `y = W·x + Σ_adapters s·B·(A·x)` for every projection an adapter targets,
//! the base weights read once as without adapters (`docs/lora.md`).
//!
//! Per layer, the targets that read the same activation form a group (q/k/v read the attention pre-norm, gate/up
//! the FFN pre-norm, …): their A's, of every adapter, are stacked into one `[rank_total][in]` F32 matrix so one
//! `lora_down` makes all their down-projections `u = A·x`, and each target's B's are placed side by side, each
//! scaled by its adapter's scale, so one term adds that target's whole update (two adapters on one projection add,
//! as in PEFT): in the mat-vec's epilogue when decoding, by `lora_add` after a prompt's product
//! ([`GroupUpdates`]). When decoding, the groups that read a pre-norm (q/k/v, gate/up) get `u` from the
//! `rms_norm_add` that writes the pre-norm ([`LoraSet::norm_down`]), and o's group from the attention merge that
//! writes the heads, one part per head ([`LoraSet::heads_down`]), into a few rows kept after the group's A.
//! Adapters are checked against the model and uploaded before anything is replaced: a bad one leaves the model as
//! it was.

use super::Weights;
use crate::error::Result;
use crate::gguf::GgufFile;
use crate::gpu::{Batch, Category, Context, GpuBuffer};
use crate::lora::{LoraAdapter, LoraError, LowRank, Target};
use crate::models::TextConfig;
use crate::ops::attention::HeadsLoraDown;
use crate::ops::lora_add::{RowsView, lora_add};
use crate::ops::lora_down::{LoraDown, lora_down, row_parts};
use crate::ops::mul_mat::VEC_MAX_TOKENS;
use crate::ops::rms_norm_add::NormLoraDown;
use crate::ops::weights::{LoraEpilogue, LoraTerm};
use std::collections::BTreeMap;
use std::sync::Arc;

/// An adapter and the scale the user gives it (`--adapter PATH:SCALE`; 1 applies it as trained).
#[derive(Debug, Clone)]
pub struct AppliedAdapter {
    pub label: String,
    pub adapter: Arc<LoraAdapter>,
    pub scale: f32,
}

/// The activation a projection reads; targets reading the same one share a down-projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LoraInput {
    /// q, k, v: the attention pre-norm.
    AttnNorm,
    /// attn_output: the heads.
    Heads,
    /// ffn_gate, ffn_up: the FFN pre-norm.
    FfnNorm,
    /// ffn_down: the GeGLU output.
    Act,
    /// inp_gate: the residual after the MLP.
    Residual,
    /// proj: the gated PLE vector.
    PleGated,
}

impl LoraInput {
    pub fn of(target: Target) -> LoraInput {
        match target {
            Target::AttnQ | Target::AttnK | Target::AttnV => LoraInput::AttnNorm,
            Target::AttnOutput => LoraInput::Heads,
            Target::FfnGate | Target::FfnUp => LoraInput::FfnNorm,
            Target::FfnDown => LoraInput::Act,
            Target::InpGate => LoraInput::Residual,
            Target::Proj => LoraInput::PleGated,
        }
    }
}

/// One target's up-projections: `[out][rank]` at `b_offset` of the group's B buffer, the adapters' B's side by
/// side, each times its scale.
#[derive(Debug)]
struct LoraOutput {
    target: Target,
    b_offset: u32,
    out_dim: u32,
    rank: u32,
    /// Where this target's down-projection starts in the group's `u` row.
    first_rank: u32,
}

#[derive(Debug)]
struct LoraGroup {
    input: LoraInput,
    /// Every target's A, stacked: `[rank_total][in_dim]`, then `[VEC_MAX_TOKENS][u_parts][rank_total]` for the
    /// `u` that `rms_norm_add` or the attention merge makes when decoding (one buffer, so that `rms_norm_add`
    /// stays within 8 storage buffers).
    a: GpuBuffer,
    /// Parts of that `u`, summed by the reader: one per head for o's group, else 1.
    u_parts: u32,
    /// Every target's B, one after another.
    b: GpuBuffer,
    in_dim: u32,
    rank_total: u32,
    outputs: Vec<LoraOutput>,
}

/// The `u` rows kept after a group's A: a decode step's tokens.
const NORM_U_ROWS: u32 = VEC_MAX_TOKENS;

impl LoraGroup {
    /// Where `rms_norm_add`'s `u` starts in `a`.
    fn norm_u_offset_elems(&self) -> u32 {
        self.rank_total * self.in_dim
    }

    fn down<'a>(&'a self, x: &'a GpuBuffer, n: u32, k_parts: u32) -> LoraDown<'a> {
        LoraDown { a: &self.a, rank_total: self.rank_total, in_dim: self.in_dim, x, n_tokens: n, k_parts }
    }
}

/// Elements of the down-projection scratch `LoraSet::u` for groups of `(rank_total, in_dim)`: a prompt chunk's
/// whole-row `u` (`[max_chunk][rank_total]`) or a decode step's sliced one (`[VEC_MAX_TOKENS][row_parts][rank_total]`).
fn u_scratch_elems(max_chunk: u32, groups: impl Iterator<Item = (u64, u32)>) -> u64 {
    let per_group = |(rank_total, in_dim): (u64, u32)| {
        let decode = VEC_MAX_TOKENS as u64 * row_parts(in_dim) as u64 * rank_total;
        (max_chunk.max(1) as u64 * rank_total).max(decode)
    };
    groups.map(per_group).max().unwrap_or(0)
}

/// A group's targets, each with its updates (of every adapter) and their scales.
type TargetParts<'a> = BTreeMap<Target, Vec<(&'a LowRank, f32)>>;

/// The adapters of a model, on the GPU.
#[derive(Debug)]
pub struct LoraSet {
    pub adapters: Vec<AppliedAdapter>,
    groups: Vec<Vec<LoraGroup>>,
    /// `u = A·x` of one group for one chunk: `[max_chunk][widest rank_total]`.
    u: GpuBuffer,
    /// Updates that change nothing here (k/v of layers that read a donor's cache, as in HF), for `describe`.
    pub unused_updates: usize,
}

/// `(out, in)` of `target` in layer `l`, or why the model has no such projection. `Ok(None)`: the model has the
/// weight but never uses its output (k/v on KV-shared layers). `has_attn_v(l)`: whether owner layer `l` has a V
/// projection (K = V layers do not).
pub fn target_shape(
    cfg: &TextConfig,
    has_attn_v: &dyn Fn(usize) -> bool,
    l: usize,
    target: Target,
) -> Result<Option<(u32, u32)>, String> {
    let spec = cfg.layers.get(l).ok_or_else(|| format!("the model has {} layers", cfg.n_layers()))?;
    let (h, q_width, kv_width) = (cfg.hidden, cfg.n_head * spec.head_dim, spec.n_kv_head * spec.head_dim);
    let ple = cfg.ple_dim;
    Ok(Some(match target {
        Target::AttnQ => (q_width, h),
        Target::AttnK | Target::AttnV if !spec.owns_kv() => return Ok(None),
        Target::AttnK => (kv_width, h),
        Target::AttnV if !has_attn_v(l) => {
            return Err("its K = V layers have no V projection; V is the raw K projection".into());
        }
        Target::AttnV => (kv_width, h),
        Target::AttnOutput => (h, q_width),
        Target::FfnGate | Target::FfnUp => (spec.ffn_dim, h),
        Target::FfnDown => (h, spec.ffn_dim),
        Target::InpGate | Target::Proj if ple == 0 => return Err("it has no per-layer embeddings".into()),
        Target::InpGate => (ple, h),
        Target::Proj => (h, ple),
    }))
}

/// Checks that every update of `adapter` fits the model: its architecture, each projection's existence and shape.
/// Returns how many updates change nothing (k/v of KV-shared layers). Needs no GPU (`inspect --base` uses it).
pub fn check_fit(
    cfg: &TextConfig,
    has_attn_v: &dyn Fn(usize) -> bool,
    adapter: &LoraAdapter,
) -> Result<usize, LoraError> {
    if let Some(arch) = &adapter.architecture
        && arch != cfg.arch.gguf_name()
    {
        return Err(LoraError::WrongArchitecture { adapter: arch.clone(), model: cfg.arch.gguf_name().into() });
    }
    let mut unused = 0;
    for u in &adapter.updates {
        let no_target = |reason: String| LoraError::NoSuchTarget { tensor: u.describe(), reason };
        let Some((out_dim, in_dim)) = target_shape(cfg, has_attn_v, u.layer as usize, u.target).map_err(no_target)?
        else {
            unused += 1;
            continue;
        };
        if (u.out_dim, u.in_dim) != (out_dim, in_dim) {
            return Err(LoraError::ShapeMismatch {
                tensor: u.describe(),
                adapter_shape: format!("[out {}, in {}] (rank {})", u.out_dim, u.in_dim, u.rank),
                model_shape: format!("[out {out_dim}, in {in_dim}]"),
            });
        }
    }
    Ok(unused)
}

/// Whether owner layer `l` of the model in `gguf` has a V projection (K = V layers do not), for the checks above.
pub fn gguf_has_attn_v(gguf: &GgufFile) -> impl Fn(usize) -> bool + '_ {
    move |l| gguf.tensor(&format!("blk.{l}.attn_v.weight")).is_some()
}

/// Parts of the decode-time `u` that a group reading `input` keeps after its A: the attention merge makes o's
/// one part per head.
fn u_parts(cfg: &TextConfig, input: LoraInput) -> u32 {
    if input == LoraInput::Heads { cfg.n_head } else { 1 }
}

/// GPU bytes [`LoraSet::build`] allocates for `adapters` (every used A and B, and the down-projection scratch for
/// `max_chunk` tokens), for the memory plan.
pub fn planned_bytes(
    cfg: &TextConfig,
    has_attn_v: &dyn Fn(usize) -> bool,
    adapters: &[AppliedAdapter],
    max_chunk: u32,
) -> u64 {
    let mut groups: BTreeMap<(u32, LoraInput), (u64, u32)> = BTreeMap::new();
    let mut bytes = 0;
    for u in adapters.iter().flat_map(|a| &a.adapter.updates) {
        if let Ok(Some(_)) = target_shape(cfg, has_attn_v, u.layer as usize, u.target) {
            let u_rows = NORM_U_ROWS as u64 * u_parts(cfg, LoraInput::of(u.target)) as u64;
            bytes += 4 * (u.a.len() + u.b.len()) as u64 + 4 * u_rows * u.rank as u64;
            let group = groups.entry((u.layer, LoraInput::of(u.target))).or_insert((0, u.in_dim));
            group.0 += u.rank as u64;
        }
    }
    match u_scratch_elems(max_chunk, groups.into_values()) {
        0 => 0,
        u_elems => bytes + 4 * u_elems,
    }
}

impl LoraSet {
    /// Checks every update of `adapters` against the model and uploads them in `Category::Lora`; `None` when
    /// there are no adapters.
    pub fn build(
        ctx: &Context,
        cfg: &TextConfig,
        weights: &Weights,
        adapters: &[AppliedAdapter],
        max_chunk: u32,
    ) -> Result<Option<LoraSet>> {
        if adapters.is_empty() {
            return Ok(None);
        }
        let has_attn_v = |l: usize| weights.layers[l].attn_v.is_some();
        let mut by_group: BTreeMap<(usize, LoraInput), TargetParts> = BTreeMap::new();
        let mut unused_updates = 0;
        for applied in adapters {
            if !applied.scale.is_finite() {
                return Err(LoraError::BadScale { scale: applied.scale }.into());
            }
            unused_updates += check_fit(cfg, &has_attn_v, &applied.adapter)?;
            for u in &applied.adapter.updates {
                let l = u.layer as usize;
                if let Ok(Some(_)) = target_shape(cfg, &has_attn_v, l, u.target) {
                    let group = by_group.entry((l, LoraInput::of(u.target))).or_default();
                    group.entry(u.target).or_default().push((u, u.scale * applied.scale));
                }
            }
        }
        let mut groups: Vec<Vec<LoraGroup>> = (0..cfg.n_layers()).map(|_| Vec::new()).collect();
        for ((l, input), targets) in by_group {
            let group = Self::upload_group(ctx, l, input, u_parts(cfg, input), &targets)?;
            groups[l].push(group);
        }
        let shapes = groups.iter().flatten().map(|g| (g.rank_total as u64, g.in_dim));
        let u_bytes = u_scratch_elems(max_chunk, shapes).max(1) * 4;
        let u = ctx.alloc("lora.u", Category::Lora, u_bytes, None)?;
        Ok(Some(LoraSet { adapters: adapters.to_vec(), groups, u, unused_updates }))
    }

    fn upload_group(
        ctx: &Context,
        l: usize,
        input: LoraInput,
        u_parts: u32,
        targets: &TargetParts,
    ) -> Result<LoraGroup> {
        let in_dim = targets.values().next().and_then(|v| v.first()).map_or(0, |(u, _)| u.in_dim);
        let mut a_rows: Vec<f32> = Vec::new();
        let mut b_all: Vec<f32> = Vec::new();
        let mut outputs = Vec::new();
        let mut rank_total = 0;
        for (&target, parts) in targets {
            let out_dim = parts[0].0.out_dim;
            let rank: u32 = parts.iter().map(|(u, _)| u.rank).sum();
            let mut b = vec![0f32; out_dim as usize * rank as usize];
            let mut col = 0;
            for (u, scale) in parts {
                a_rows.extend_from_slice(&u.a);
                for o in 0..out_dim as usize {
                    let src = &u.b[o * u.rank as usize..(o + 1) * u.rank as usize];
                    let dst = &mut b[o * rank as usize + col..o * rank as usize + col + u.rank as usize];
                    dst.iter_mut().zip(src).for_each(|(d, s)| *d = s * scale);
                }
                col += u.rank as usize;
            }
            let b_offset = u32::try_from(b_all.len()).map_err(|_| LoraError::Tensor {
                tensor: format!("blk.{l}.{}", target.gguf_stem()),
                problem: "makes the layer's B matrices longer than 2^32 elements".into(),
            })?;
            b_all.extend_from_slice(&b);
            outputs.push(LoraOutput { target, b_offset, out_dim, rank, first_rank: rank_total });
            rank_total += rank;
        }
        a_rows.resize(a_rows.len() + (NORM_U_ROWS * u_parts * rank_total) as usize, 0.0);
        let a = ctx.upload(&format!("lora.blk.{l}.{input:?}.a"), Category::Lora, bytemuck::cast_slice(&a_rows))?;
        let b = ctx.upload(&format!("lora.blk.{l}.{input:?}.b"), Category::Lora, bytemuck::cast_slice(&b_all))?;
        Ok(LoraGroup { input, a, u_parts, b, in_dim, rank_total, outputs })
    }

    fn group(&self, l: usize, input: LoraInput) -> Option<&LoraGroup> {
        self.groups.get(l)?.iter().find(|g| g.input == input)
    }

    /// When layer `l`'s group reading `input` (a pre-norm that `rms_norm_add` writes) has updates and they ride in
    /// mat-vec epilogues (`mat_vec`, and `n` tokens few enough), what that `rms_norm_add` needs to make its `u`;
    /// [`GroupUpdates::begin`] is then told `u_made`.
    pub fn norm_down(&self, l: usize, input: LoraInput, n: u32, mat_vec: bool) -> Option<NormLoraDown<'_>> {
        let g = self.group(l, input)?;
        (mat_vec && n <= NORM_U_ROWS).then_some(NormLoraDown {
            a_and_u: &g.a,
            rank_total: g.rank_total,
            u_offset_elems: g.norm_u_offset_elems(),
        })
    }

    /// When layer `l` has updates on o and `n` tokens are a decode step's, what the attention merge needs to make
    /// each head's part of o's `u` ([`GroupUpdates::begin`] is then told `u_made`).
    pub fn heads_down(&self, l: usize, n: u32) -> Option<HeadsLoraDown<'_>> {
        let g = self.group(l, LoraInput::Heads)?;
        (n <= NORM_U_ROWS).then_some(HeadsLoraDown {
            a_and_u: &g.a,
            rank_total: g.rank_total,
            u_offset_elems: g.norm_u_offset_elems(),
        })
    }

    /// Adds `group`'s updates to their products, each where `dst(target)` says it lives: `u = A·x` (`lora_down`,
    /// or `mul_mat` past its rank limit), then one `lora_add` per target.
    fn add_after<'a>(
        &'a self,
        batch: &mut Batch,
        group: &'a LoraGroup,
        x: &'a GpuBuffer,
        n: u32,
        dst: impl Fn(Target) -> Option<RowsView<'a>>,
    ) -> Result<()> {
        let outputs: Vec<(&LoraOutput, RowsView)> =
            group.outputs.iter().filter_map(|o| Some((o, dst(o.target)?))).collect();
        if outputs.is_empty() {
            return Ok(());
        }
        lora_down(batch, &group.down(x, n, 1), &self.u)?;
        for (o, y) in outputs {
            let u = RowsView { buffer: &self.u, offset_elems: o.first_rank, row_stride_elems: group.rank_total };
            lora_add(batch, &group.b, o.b_offset, o.out_dim, o.rank, u, y, n)?;
        }
        Ok(())
    }

    /// GPU bytes of every A, B and the down-projection scratch.
    pub fn size_bytes(&self) -> u64 {
        let groups: u64 = self.groups.iter().flatten().map(|g| g.a.size_bytes() + g.b.size_bytes()).sum();
        groups + self.u.size_bytes()
    }
}

/// One group's updates for one chunk ([`GroupUpdates::begin`]); nothing to add without adapters.
pub struct GroupUpdates<'a> {
    set: Option<&'a LoraSet>,
    group: Option<&'a LoraGroup>,
    x: &'a GpuBuffer,
    n: u32,
    /// Where the products' epilogues read `u` (buffer, first element, parts); `None`: updates come after the
    /// products.
    epilogue_u: Option<(&'a GpuBuffer, u32, u32)>,
}

impl<'a> GroupUpdates<'a> {
    /// Starts the updates of layer `l`'s targets that read `input` (x, `[n][in]`) for a chunk of `n` tokens. When
    /// the products are mat-vecs (`mat_vec`: a few tokens, and products that take an epilogue), this records
    /// `u = A·x` and each product adds its own update ([`GroupUpdates::epilogue`]): one dispatch per group, and the
    /// base weights read once; `u_made`: the kernel that wrote x already made `u` ([`LoraSet::norm_down`],
    /// [`LoraSet::heads_down`]). Otherwise [`GroupUpdates::finish`] adds them after the products.
    #[allow(clippy::too_many_arguments)]
    pub fn begin(
        set: Option<&'a LoraSet>,
        batch: &mut Batch,
        l: usize,
        input: LoraInput,
        x: &'a GpuBuffer,
        n: u32,
        mat_vec: bool,
        u_made: bool,
    ) -> Result<Self> {
        let group = set.and_then(|s| s.group(l, input));
        let epilogue_u = match (set, group) {
            (Some(_), Some(g)) if u_made => Some((&g.a, g.norm_u_offset_elems(), g.u_parts)),
            (Some(set), Some(g)) if mat_vec && n <= VEC_MAX_TOKENS => {
                let k_parts = row_parts(g.in_dim);
                lora_down(batch, &g.down(x, n, k_parts), &set.u)?;
                Some((&set.u, 0, k_parts))
            }
            _ => None,
        };
        Ok(GroupUpdates { set, group, x, n, epilogue_u })
    }

    fn term(&self, target: Target) -> LoraTerm {
        let output = self.group.and_then(|g| g.outputs.iter().find(|o| o.target == target));
        output.map_or(LoraTerm::default(), |o| LoraTerm {
            rank: o.rank,
            b_offset_elems: o.b_offset,
            first_rank: o.first_rank,
        })
    }

    fn epilogue_of(&self, term: LoraTerm, up: LoraTerm) -> Option<LoraEpilogue<'a>> {
        let ((u, u_offset_elems, u_parts), group) = (self.epilogue_u?, self.group?);
        let any = term.rank > 0 || up.rank > 0;
        any.then_some(LoraEpilogue {
            b: &group.b,
            u,
            u_offset_elems,
            u_stride: u_parts * group.rank_total,
            u_parts,
            part_stride: group.rank_total,
            term,
            up,
        })
    }

    /// `target`'s update for its mat-vec's epilogue; `None` if it has none here or they come after the products.
    pub fn epilogue(&self, target: Target) -> Option<LoraEpilogue<'a>> {
        self.epilogue_of(self.term(target), LoraTerm::default())
    }

    /// The gate and up updates of a GeGLU's products, as [`GroupUpdates::epilogue`].
    pub fn geglu_epilogue(&self) -> Option<LoraEpilogue<'a>> {
        self.epilogue_of(self.term(Target::FfnGate), self.term(Target::FfnUp))
    }

    /// Whether `target` is updated and its update is added after the products (by `finish`).
    pub fn after(&self, target: Target) -> bool {
        self.epilogue_u.is_none() && self.term(target).rank > 0
    }

    /// Adds the updates that did not ride in an epilogue, each where `dst(target)` says its product lives.
    pub fn finish(self, batch: &mut Batch, dst: impl Fn(Target) -> Option<RowsView<'a>>) -> Result<()> {
        match (self.set, self.group) {
            (Some(set), Some(group)) if self.epilogue_u.is_none() => set.add_after(batch, group, self.x, self.n, dst),
            _ => Ok(()),
        }
    }
}
