//! The GPU training step (`LoraTrainer`) against HF transformers + peft + torch.optim.AdamW (`golden/training/`):
//! on the tiny Gemma 4 and Gemma 3 fixtures, F32 and Q4_K_M bases, with PEFT adapter A as the initial adapter,
//! the loss of the golden batch, every LoRA gradient, the losses before each of 3 AdamW steps and the adapter after
//! them; full and downlevel. The goldens are float64; the bounds are a few times what float32 HF itself reaches
//! against them (golden/training/README.md, "Agreement to expect"). Also: a fresh adapter overfits one sequence,
//! gradients accumulate over the sequences of a step, and clipping scales what AdamW reads. The full runs keep every
//! layer's activations, the downlevel ones recompute each layer (gradient checkpointing), and the two give the
//! same step exactly.
//!
//! `cargo test -p ferrogem-harness --test train_step -- --nocapture` prints the figures. A GPU test never skips.

use ferrogem::gpu::{Context, ContextOptions};
use ferrogem::lora::Target;
use ferrogem::lora::{LoraAdapter, from_peft};
use ferrogem::models::ModelFile;
use ferrogem::models::gemma::{Checkpointing, FreshLora, Gemma, GemmaOptions, LoraTrainer, fresh_adapter};
use ferrogem::ops::adamw::AdamwConfig;
use ferrogem_harness::golden::fixture;
use std::path::PathBuf;

/// Loss: relative to the golden's (float32 HF: ≤ 3e-8).
const MAX_LOSS_REL: f64 = 1e-6;
/// Gradients: the worst |Δ| over the largest |gradient| of the case (float32 HF: ≤ 2.5e-6).
const MAX_GRAD_REL: f64 = 2e-5;
/// The adapter after 3 steps, absolute, on elements whose first gradient is ≥ 1e-7 (float32 HF: ≤ 3.3e-6); Adam
/// normalizes each element's gradient, so one that is ~eps sized moves by an amount float32 cannot pin down.
const MAX_AFTER3_ABS: f64 = 2e-5;
const TINY_GRAD: f32 = 1e-7;

fn golden(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../golden").join(path)
}

fn read(path: &PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("golden {} is missing: {e}", path.display()))
}

/// A PEFT-keyed safetensors file read as an adapter through the init adapter's config (the gradient and the
/// trained adapter have the adapter's keys and shapes).
fn peft_tensors(config: &str, path: &PathBuf) -> LoraAdapter {
    from_peft(config, &read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

struct Golden {
    tokens: Vec<u32>,
    targets: Vec<Option<u32>>,
    losses: Vec<f64>,
    init: LoraAdapter,
    grads: LoraAdapter,
    after3: LoraAdapter,
    adamw: AdamwConfig,
}

fn load_golden(case: &str) -> Golden {
    let json: serde_json::Value =
        serde_json::from_slice(&read(&golden(&format!("training/{case}.train.json")))).unwrap();
    let ids: Vec<u32> = serde_json::from_value(json["ids"].clone()).unwrap();
    let targets: Vec<i64> = serde_json::from_value(json["targets"].clone()).unwrap();
    let init_dir = golden("..").join(json["init_adapter"].as_str().unwrap());
    let config = String::from_utf8(read(&init_dir.join("adapter_config.json"))).unwrap();
    let opt = &json["optimizer"];
    let f = |v: &serde_json::Value| v.as_f64().unwrap() as f32;
    Golden {
        tokens: ids[..targets.len()].to_vec(),
        targets: targets.iter().map(|&t| u32::try_from(t).ok()).collect(),
        losses: serde_json::from_value(json["losses"].clone()).unwrap(),
        init: from_peft(&config, &read(&init_dir.join("adapter_model.safetensors"))).unwrap(),
        grads: peft_tensors(&config, &golden(&format!("training/{case}.grads.safetensors"))),
        after3: peft_tensors(&config, &golden(&format!("training/{case}.after3.safetensors"))),
        adamw: AdamwConfig {
            lr: f(&opt["lr"]),
            beta1: f(&opt["betas"][0]),
            beta2: f(&opt["betas"][1]),
            eps: f(&opt["eps"]),
            weight_decay: f(&opt["weight_decay"]),
        },
    }
}

/// Every A and B of two adapters of the same shape, side by side, with the golden gradient element of each.
fn pairs<'a>(got: &'a LoraAdapter, want: &'a LoraAdapter, grads: &'a LoraAdapter) -> Vec<(f32, f32, f32)> {
    let mut out = Vec::new();
    for ((g, w), d) in got.updates.iter().zip(&want.updates).zip(&grads.updates) {
        assert_eq!((g.layer, g.target), (w.layer, w.target));
        out.extend(g.a.iter().zip(&w.a).zip(&d.a).map(|((&x, &y), &z)| (x, y, z)));
        out.extend(g.b.iter().zip(&w.b).zip(&d.b).map(|((&x, &y), &z)| (x, y, z)));
    }
    out
}

fn gpu(downlevel: bool) -> Context {
    Context::new_blocking(ContextOptions { downlevel, ..ContextOptions::from_env() })
        .unwrap_or_else(|e| panic!("GPU test needs an adapter and found none: {e}"))
}

/// Loaded as `finetune` loads it: the inference scratch for one token, which training never uses.
fn load(ctx: &Context, base: &str) -> Result<Gemma, String> {
    let model = ModelFile::open(fixture(&format!("{base}.gguf")).to_str().unwrap()).map_err(|e| e.to_string())?;
    model.load(ctx, GemmaOptions::for_training(), &mut |_| {}).map_err(|e| e.to_string())
}

fn check(case: &str, downlevel: bool) -> Result<String, String> {
    let ctx = gpu(downlevel);
    let g = load_golden(case);
    let n = g.tokens.len() as u32;
    let mut model = load(&ctx, case)?;
    let checkpointing = if downlevel { Checkpointing::PerLayer } else { Checkpointing::Off };
    let mut trainer = LoraTrainer::new(&model, &g.init, 1.0, n, checkpointing).map_err(|e| e.to_string())?;
    let mut losses = Vec::new();
    let mut grads = None;
    for _ in 0..g.losses.len() {
        losses.push(trainer.loss_and_grads_blocking(&mut model, &g.tokens, &g.targets).map_err(|e| e.to_string())?);
        if grads.is_none() {
            grads = Some(trainer.read_grads_blocking(&model).map_err(|e| e.to_string())?);
        }
        trainer.adamw_step(&model, &g.adamw, None).map_err(|e| e.to_string())?;
    }
    let after3 = trainer.read_adapter_blocking(&model).map_err(|e| e.to_string())?;

    let loss_rel = losses.iter().zip(&g.losses).map(|(a, b)| (a - b).abs() / b.abs()).fold(0.0, f64::max);
    let grad_pairs = pairs(grads.as_ref().unwrap(), &g.grads, &g.grads);
    let grad_max = grad_pairs.iter().map(|p| p.1.abs() as f64).fold(0.0, f64::max);
    let grad_rel = grad_pairs.iter().map(|p| (p.0 - p.1).abs() as f64).fold(0.0, f64::max) / grad_max;
    let after = pairs(&after3, &g.after3, &g.grads);
    let after_abs =
        after.iter().filter(|p| p.2.abs() >= TINY_GRAD).map(|p| (p.0 - p.1).abs() as f64).fold(0.0, f64::max);
    let moved = after.iter().filter(|p| p.2.abs() >= TINY_GRAD).count();
    let line = format!(
        "losses {losses:.6?}: worst rel {loss_rel:.1e}; grads worst |Δ|/max {grad_rel:.1e}; after 3 steps max |Δ| \
         {after_abs:.1e} over {moved}/{} elements",
        after.len()
    );
    let ok = loss_rel <= MAX_LOSS_REL && grad_rel <= MAX_GRAD_REL && after_abs <= MAX_AFTER3_ABS;
    if ok { Ok(line) } else { Err(line) }
}

fn check_all(downlevel: bool) {
    let mut failures = Vec::new();
    for case in ["tiny-gemma4-f32", "tiny-gemma4-Q4_K_M", "tiny-gemma3-f32", "tiny-gemma3-Q4_K_M"] {
        match check(case, downlevel) {
            Ok(line) => println!("{case} (downlevel {downlevel}): {line}"),
            Err(line) => {
                println!("{case} (downlevel {downlevel}): FAILED {line}");
                failures.push(case);
            }
        }
    }
    assert!(failures.is_empty(), "training goldens failed: {failures:?}");
}

#[test]
fn training_goldens_full() {
    check_all(false);
}

#[test]
fn training_goldens_downlevel() {
    check_all(true);
}

/// Rank 8 on the seven projections, PEFT's initialization (B = 0).
fn fresh(model: &Gemma) -> LoraAdapter {
    let targets = vec![
        Target::AttnQ,
        Target::AttnK,
        Target::AttnV,
        Target::AttnOutput,
        Target::FfnGate,
        Target::FfnUp,
        Target::FfnDown,
    ];
    let spec = FreshLora { rank: 8, alpha: 16.0, use_rslora: false, targets, seed: 7 };
    let has_attn_v = |l: usize| model.weights.layers[l].attn_v.is_some();
    fresh_adapter(&model.config, &has_attn_v, &spec).unwrap()
}

/// The first 16 tokens of the golden prompt, every next token trained.
fn sequence(base: &str) -> (Vec<u32>, Vec<Option<u32>>) {
    let ids = ferrogem_harness::golden::prompt(base).unwrap();
    (ids[..16].to_vec(), ids[1..17].iter().map(|&t| Some(t)).collect())
}

/// The bar: a fresh adapter memorizes one sequence, the loss falling by ≥ 90% within 200 steps.
#[test]
fn fresh_adapter_overfits_one_sequence() {
    let ctx = gpu(false);
    let base = "tiny-gemma4-Q4_K_M";
    let (tokens, targets) = sequence(base);
    let mut model = load(&ctx, base).unwrap();
    let adapter = fresh(&model);
    let mut trainer = LoraTrainer::new(&model, &adapter, 1.0, tokens.len() as u32, Checkpointing::PerLayer).unwrap();
    let config = AdamwConfig { lr: 1e-2, weight_decay: 0.0, ..AdamwConfig::default() };
    let first = trainer.loss_and_grads_blocking(&mut model, &tokens, &targets).unwrap();
    let mut losses = vec![first];
    while *losses.last().unwrap() > 0.1 * first && losses.len() <= 200 {
        trainer.adamw_step(&model, &config, Some(1.0)).unwrap();
        losses.push(trainer.loss_and_grads_blocking(&mut model, &tokens, &targets).unwrap());
    }
    let last = *losses.last().unwrap();
    println!("{base}: loss {first:.4} → {last:.4} after {} steps", losses.len() - 1);
    assert!(last <= 0.1 * first, "loss {first} → {last} after 200 steps: {losses:?}");
}

/// A step over two sequences, each row weighted by 1/(the step's trained rows), gives the token mean's gradient:
/// the same sequence twice at half weight equals it once.
#[test]
fn gradients_accumulate_over_a_step() {
    let ctx = gpu(false);
    let base = "tiny-gemma3-f32";
    let (tokens, targets) = sequence(base);
    let mut model = load(&ctx, base).unwrap();
    let trainer =
        LoraTrainer::new(&model, &adapter_a("gemma3"), 1.0, tokens.len() as u32, Checkpointing::PerLayer).unwrap();
    let once = trainer.loss_and_grads_blocking(&mut model, &tokens, &targets).unwrap();
    let want = trainer.read_grads_blocking(&model).unwrap();
    let weight = 1.0 / (2 * tokens.len()) as f32;
    let mut twice = 0.0;
    for first in [true, false] {
        twice += pollster::block_on(trainer.accumulate(&mut model, &tokens, &targets, weight, first)).unwrap();
    }
    let got = trainer.read_grads_blocking(&model).unwrap();
    let all = pairs(&got, &want, &want);
    let max = all.iter().map(|p| p.1.abs()).fold(0.0, f32::max);
    let worst = all.iter().map(|p| (p.0 - p.1).abs()).fold(0.0, f32::max) / max;
    println!("loss {once} once, {twice} as two halves; gradients worst |Δ|/max {worst:.1e}");
    assert!((once - twice).abs() < 1e-6 * once && worst < 1e-6, "accumulated {twice} vs {once}, grads {worst}");
}

/// With clipping at a quarter of the gradient's norm and an eps large enough that Adam's first step depends on the
/// gradient's size, the step equals the host's AdamW on the clipped gradient.
#[test]
fn clipping_scales_what_adamw_reads() {
    let ctx = gpu(false);
    let base = "tiny-gemma4-f32";
    let (tokens, targets) = sequence(base);
    let mut model = load(&ctx, base).unwrap();
    let init = adapter_a("gemma4");
    let mut trainer = LoraTrainer::new(&model, &init, 1.0, tokens.len() as u32, Checkpointing::PerLayer).unwrap();
    trainer.loss_and_grads_blocking(&mut model, &tokens, &targets).unwrap();
    let grads = trainer.read_grads_blocking(&model).unwrap();
    let norm = pairs(&grads, &grads, &grads).iter().map(|p| (p.0 as f64).powi(2)).sum::<f64>().sqrt();
    let clip = (norm / 4.0) as f32;
    let config = AdamwConfig { lr: 1e-3, eps: 1e-3, weight_decay: 0.0, ..AdamwConfig::default() };
    trainer.adamw_step(&model, &config, Some(clip)).unwrap();
    let got = trainer.read_adapter_blocking(&model).unwrap();
    let factor = clip as f64 / (norm + 1e-6);
    let mut worst: f64 = 0.0;
    for (p1, (p0, g)) in
        pairs(&got, &init, &grads).iter().map(|p| p.0).zip(pairs(&init, &init, &grads).iter().map(|p| (p.0, p.2)))
    {
        // Step 1: m̂ = g, v̂ = g², so p ← p − lr·g/(|g| + eps).
        let g = g as f64 * factor;
        let want = p0 as f64 - config.lr as f64 * g / (g.abs() + config.eps as f64);
        worst = worst.max((p1 as f64 - want).abs());
    }
    println!("norm {norm:.4}, clip {clip:.4}: worst |Δ| against the host's step {worst:.1e}");
    assert!(worst < 1e-7, "clipped step off by {worst}");
}

/// Keeping every layer's activations runs the same kernels on the same values as recomputing them: the loss and
/// every gradient are bitwise equal, on both tiny fixtures.
#[test]
fn checkpointing_off_gives_the_same_step() {
    let ctx = gpu(false);
    for (base, arch) in [("tiny-gemma4-Q4_K_M", "gemma4"), ("tiny-gemma3-f32", "gemma3")] {
        let (tokens, targets) = sequence(base);
        let mut model = load(&ctx, base).unwrap();
        let init = adapter_a(arch);
        let mut step = |checkpointing| {
            let trainer = LoraTrainer::new(&model, &init, 1.0, tokens.len() as u32, checkpointing).unwrap();
            let loss = trainer.loss_and_grads_blocking(&mut model, &tokens, &targets).unwrap();
            (loss, trainer.read_grads_blocking(&model).unwrap())
        };
        let (loss_on, grads_on) = step(Checkpointing::PerLayer);
        let (loss_off, grads_off) = step(Checkpointing::Off);
        let all = pairs(&grads_off, &grads_on, &grads_on);
        let differ = all.iter().filter(|p| p.0.to_bits() != p.1.to_bits()).count();
        let nonzero = all.iter().filter(|p| p.1 != 0.0).count();
        println!("{base}: loss {loss_on} (on) {loss_off} (off); {differ} of {} gradients differ", all.len());
        assert!(loss_on == loss_off && differ == 0, "{base}: loss {loss_on} vs {loss_off}, {differ} gradients differ");
        assert!(nonzero > all.len() / 2, "{base}: only {nonzero} of {} gradients are nonzero", all.len());
    }
}

fn adapter_a(arch: &str) -> LoraAdapter {
    let dir = golden(&format!("lora/tiny-{arch}-lora-a"));
    let config = String::from_utf8(read(&dir.join("adapter_config.json"))).unwrap();
    from_peft(&config, &read(&dir.join("adapter_model.safetensors"))).unwrap()
}

/// Adapters `ferrogem finetune` wrote (golden/training/finetuned/, made by the command in its README) mean the same
/// in HF peft: peft's logits on the fixture's prompt (`check_peft_load.py --save`) against the GPU's with the
/// adapter applied, within the base model's tolerances and every top-1 the same.
#[test]
fn finetuned_adapters_match_hf_peft() {
    use ferrogem::models::gemma::LogitRows;
    use ferrogem_harness::golden::{MAX_ABS_VS_HF, MAX_NMSE_VS_HF, argmax, nmse_and_max_abs, within};
    let ctx = gpu(false);
    for base in ["tiny-gemma4-f32", "tiny-gemma3-f32"] {
        let dir = golden(&format!("training/finetuned/{base}"));
        let mut model = ModelFile::open(fixture(&format!("{base}.gguf")).to_str().unwrap()).unwrap();
        model.add_adapter(base, &dir, 1.0).unwrap();
        let ids = ferrogem_harness::golden::prompt(base).unwrap();
        let options = GemmaOptions { max_chunk: ids.len() as u32, n_ctx: ids.len() as u32, ..GemmaOptions::default() };
        let mut gemma = model.load(&ctx, options, &mut |_| {}).unwrap();
        let got = gemma.forward_blocking(&ids, 0, LogitRows::All).unwrap();
        let want =
            ferrogem_harness::npy::read_f32(&golden(&format!("training/finetuned/{base}.hf_peft_logits.npy"))).unwrap();
        let (nmse, max_abs) = nmse_and_max_abs(&got.values, &want.data);
        let vocab = got.vocab as usize;
        let agree =
            (0..ids.len()).filter(|&r| argmax(got.row(r)) == argmax(&want.data[r * vocab..(r + 1) * vocab])).count();
        println!(
            "{base} + its finetuned adapter vs HF peft: max|Δ| {max_abs:.2e}, NMSE {nmse:.2e}, top-1 {agree}/{}",
            ids.len()
        );
        assert!(within(max_abs as f64, MAX_ABS_VS_HF as f64) && within(nmse, MAX_NMSE_VS_HF) && agree == ids.len());
    }
}
