//! The reference's LoRA training step (`train.rs`): its unmerged forward against HF + peft's logits, its autograd
//! gradients against central differences of its own loss, and loss, gradients and three AdamW steps against HF
//! transformers + peft + torch (`golden/training/`). Run with
//! `cargo test -p ferrogem-harness --lib reference::train_tests -- --nocapture` to see the figures.

use super::golden_tests::load;
use super::{AdamW, adamw_steps};
use crate::golden::{MAX_ABS_VS_HF, nmse_and_max_abs, parse_logits, prompt, within};
use ferrogem::lora::{LoraAdapter, Target};
use std::path::PathBuf;

fn golden(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../golden").join(path)
}

fn read(path: &str) -> Vec<u8> {
    let path = golden(path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `golden/lora/<name>`, a PEFT adapter directory.
fn adapter(name: &str) -> LoraAdapter {
    ferrogem::lora::open(&golden(&format!("lora/{name}"))).unwrap()
}

/// `model`'s golden prompt as a batch: row i predicts token i + 1; every fifth row is left out, so ignored rows are
/// exercised too.
fn batch(model: &str) -> (Vec<u32>, Vec<Option<u32>>) {
    let ids = prompt(model).unwrap();
    let targets = (1..ids.len()).map(|i| (i % 5 != 0).then_some(ids[i])).collect();
    (ids[..ids.len() - 1].to_vec(), targets)
}

/// The forward with adapters unmerged, as training runs it, against HF + peft's logits (`golden/lora/`), held to the
/// base model's bound. Measured ≤ 3.9e-6 (NMSE ≤ 1.2e-12) for adapters A and B (PLE targets, rsLoRA, patterns).
#[test]
fn unmerged_forward_matches_hf_peft() {
    let mut worst = 0f32;
    for arch in ["gemma4", "gemma3"] {
        for quant in ["f32", "Q4_K_M"] {
            let model = format!("tiny-{arch}-{quant}");
            let reference = load(&model);
            let ids = prompt(&model).unwrap();
            for which in ["lora-a", "lora-b"] {
                let lora = reference.lora_vars(&adapter(&format!("tiny-{arch}-{which}")), 1.0).unwrap();
                let logits =
                    reference.forward_unmerged(&ids, &mut reference.new_cache(), &lora.updates).unwrap().logits;
                let ours = logits.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let hf = parse_logits(&read(&format!("lora/{model}.{which}.hf_logits.npy"))).unwrap().concat();
                let (nmse, max_abs) = nmse_and_max_abs(&ours, &hf);
                println!("{model} {which}: max |Δ| vs HF+peft {max_abs:.2e}, NMSE {nmse:.2e}");
                assert!(within(max_abs as f64, MAX_ABS_VS_HF as f64), "{model} {which}: max |Δ| {max_abs:e}");
                worst = worst.max(max_abs);
            }
        }
    }
    println!("worst max |Δ| {worst:.2e}");
}

/// Relative error of autograd against central differences at the probed elements (each the largest gradient of its
/// tensor, 2e-3 … 5e-2 here). The forward is f32: the loss (~6) carries rounding noise of ~1e-6, i.e. ~1e-5 in a
/// difference quotient at h = 3e-2·max(1, |x|), where the h² truncation is still smaller (the worst relative error
/// over the 80 probes was 2.0e-2 at h = 3e-3, 1.3e-2 at 1e-2, 4.6e-3 at 3e-2, 1.7e-2 at 1e-1). Measured at 3e-2:
/// 4.6e-3. A real mistake (a wrong scale, a term left out) is off by tens of percent.
const MAX_REL_FINITE_DIFF: f64 = 1e-2;

#[test]
fn lora_gradients_match_finite_differences() {
    let mut worst = 0f64;
    for (model, name, user_scale) in [
        ("tiny-gemma4-f32", "tiny-gemma4-lora-a", 1.0),
        // PLE's inp_gate and proj, rsLoRA and patterns, at a user scale.
        ("tiny-gemma4-f32", "tiny-gemma4-lora-b", 0.5),
        ("tiny-gemma3-f32", "tiny-gemma3-lora-a", 1.0),
    ] {
        let reference = load(model);
        let adapter = adapter(name);
        let (tokens, targets) = batch(model);
        let loss = |adapter: &LoraAdapter| reference.lora_loss_grads(adapter, user_scale, &tokens, &targets).unwrap();
        let analytic = loss(&adapter).grads;
        // Each target at the first and the last layer it is on.
        let mut probed: Vec<usize> = Vec::new();
        for target in adapter.targets() {
            let on: Vec<usize> = (0..adapter.updates.len()).filter(|&i| adapter.updates[i].target == target).collect();
            probed.extend([on[0], on[on.len() - 1]]);
        }
        probed.dedup();
        for i in probed {
            for is_a in [true, false] {
                let grad = if is_a { &analytic[i].a } else { &analytic[i].b };
                let e = (0..grad.len()).max_by(|&x, &y| grad[x].abs().total_cmp(&grad[y].abs())).unwrap();
                let moved = |delta: f32| {
                    let mut moved = adapter.clone();
                    let u = &mut moved.updates[i];
                    let values = if is_a { &mut u.a } else { &mut u.b };
                    values[e] += delta;
                    (values[e], loss(&moved).loss)
                };
                let x = if is_a { adapter.updates[i].a[e] } else { adapter.updates[i].b[e] };
                let h = 3e-2 * x.abs().max(1.0);
                let ((x_plus, plus), (x_minus, minus)) = (moved(h), moved(-h));
                let finite_diff = (plus - minus) / (x_plus - x_minus) as f64;
                let rel = (finite_diff - grad[e] as f64).abs() / (grad[e] as f64).abs();
                let u = &adapter.updates[i];
                let label = format!("{name} {} {} [{e}]", u.describe(), if is_a { "A" } else { "B" });
                println!("{label}: autograd {:.6e}, finite differences {finite_diff:.6e}, rel {rel:.1e}", grad[e]);
                assert!(within(rel, MAX_REL_FINITE_DIFF), "{label}: rel {rel:e}");
                worst = worst.max(rel);
            }
        }
    }
    println!("worst relative error {worst:.2e}");
}

/// k/v updates of a layer that reads a donor's cache change nothing: the loss is the same bit for bit and their
/// gradients are zero. A batch without targets is refused.
#[test]
fn shared_kv_updates_have_zero_gradients() {
    let model = "tiny-gemma4-f32";
    let reference = load(model);
    let shared = reference.layers.iter().find(|l| !l.spec.owns_kv()).unwrap().spec.index as u32;
    let base = adapter("tiny-gemma4-lora-a");
    let mut with_kv = base.clone();
    let k = with_kv.updates.iter().find(|u| u.target == Target::AttnK).unwrap();
    with_kv.updates.push(ferrogem::lora::LowRank { layer: shared, ..k.clone() });
    let (tokens, targets) = batch(model);
    let without = reference.lora_loss_grads(&base, 1.0, &tokens, &targets).unwrap();
    let with = reference.lora_loss_grads(&with_kv, 1.0, &tokens, &targets).unwrap();
    assert_eq!(with.loss, without.loss);
    let last = with.grads.last().unwrap();
    assert_eq!((last.layer, last.target), (shared, Target::AttnK));
    assert!(last.a.iter().chain(&last.b).all(|&g| g == 0.0));
    let none = vec![None; tokens.len()];
    assert!(reference.lora_loss_grads(&base, 1.0, &tokens, &none).is_err());
}

/// A case of `golden/training/` (`<case>.train.json`; `golden/scripts/make_training_goldens.py` made it, in float64).
struct TrainingGolden {
    fixture: String,
    init_adapter: String,
    tokens: Vec<u32>,
    targets: Vec<Option<u32>>,
    adamw: AdamW,
    losses: Vec<f64>,
}

impl TrainingGolden {
    fn read(case: &str) -> TrainingGolden {
        let path = format!("training/{case}.train.json");
        let json: serde_json::Value = serde_json::from_slice(&read(&path)).unwrap();
        let field = |key: &str| &json[key];
        let number = |v: &serde_json::Value| v.as_f64().unwrap_or_else(|| panic!("{path}: {v} is not a number"));
        let path_in_repo = |key: &str| field(key).as_str().unwrap().strip_prefix("golden/").unwrap().to_owned();
        let ids: Vec<u32> = field("ids").as_array().unwrap().iter().map(|v| number(v) as u32).collect();
        let targets: Vec<Option<u32>> =
            field("targets").as_array().unwrap().iter().map(|v| (number(v) >= 0.0).then(|| number(v) as u32)).collect();
        assert_eq!(ids.len(), targets.len() + 1, "{path}: ids and targets");
        let opt = field("optimizer");
        assert_eq!(opt["name"], "torch.optim.AdamW", "{path}");
        TrainingGolden {
            fixture: path_in_repo("fixture"),
            init_adapter: path_in_repo("init_adapter"),
            tokens: ids[..targets.len()].to_vec(),
            targets,
            adamw: AdamW {
                lr: number(&opt["lr"]),
                beta1: number(&opt["betas"][0]),
                beta2: number(&opt["betas"][1]),
                eps: number(&opt["eps"]),
                weight_decay: number(&opt["weight_decay"]),
            },
            losses: field("losses").as_array().unwrap().iter().map(number).collect(),
        }
    }
}

/// `golden/training/<case>.<what>.safetensors` read with the adapter's own key mapping (`from_peft` with the init
/// adapter's config), so each update's `a` / `b` is that tensor of the file by (layer, target).
fn peft_tensors(init_adapter: &str, case: &str, what: &str) -> LoraAdapter {
    let config = String::from_utf8(read(&format!("{init_adapter}/adapter_config.json"))).unwrap();
    ferrogem::lora::from_peft(&config, &read(&format!("training/{case}.{what}.safetensors"))).unwrap()
}

/// Each (A or B) tensor of `ours` against `theirs` (the same updates): the worst NMSE, the worst |Δ| and the largest
/// |value| of `theirs`.
fn compare(ours: &[(u32, Target, &[f32], &[f32])], theirs: &LoraAdapter) -> (f64, f64, f64) {
    assert_eq!(ours.len(), theirs.updates.len());
    let largest = theirs.updates.iter().flat_map(|u| u.a.iter().chain(&u.b)).fold(0f32, |m, v| m.max(v.abs()));
    let (mut worst_nmse, mut worst_abs) = (0f64, 0f32);
    for (&(layer, target, a, b), t) in ours.iter().zip(&theirs.updates) {
        assert_eq!((layer, target), (t.layer, t.target));
        for (o, t) in [(a, &t.a), (b, &t.b)] {
            let (nmse, max_abs) = nmse_and_max_abs(o, t);
            worst_nmse = worst_nmse.max(nmse);
            worst_abs = worst_abs.max(max_abs);
        }
    }
    (worst_nmse, worst_abs as f64, largest as f64)
}

/// Against float64 HF + peft + torch (`golden/training/`). HF's own float32 run of the same training differs from
/// these goldens by ≤ 1.7e-7 in the loss, ≤ 2.5e-6 of the largest gradient and ≤ 7.5e-5 in a parameter after three
/// steps (the json's `plain_float32_hf`): AdamW's first steps are ±lr wherever |g| ≫ eps, so an element whose
/// gradient is below ~1e-6 moves by whatever f32 rounding makes of it. Measured here on the four cases: loss and the
/// three losses ≤ 1.5e-7 relative, gradient NMSE ≤ 8.1e-12 per tensor, worst gradient |Δ| ≤ 2.5e-6 of the largest,
/// parameters after three steps ≤ 3.2e-5; the bounds leave 6–12× headroom.
const MAX_REL_LOSS_VS_HF: f64 = 1e-6;
const MAX_GRAD_NMSE_VS_HF: f64 = 1e-10;
const MAX_REL_GRAD_VS_HF: f64 = 2e-5;
const MAX_ABS_AFTER3_VS_HF: f64 = 2e-4;

#[test]
fn lora_training_matches_hf_peft_torch() {
    let mut failures = Vec::new();
    let mut check = |case: &str, what: &str, value: f64, bound: f64| {
        if !within(value, bound) {
            failures.push(format!("{case}: {what} {value:.3e} > {bound:e}"));
        }
    };
    println!("{:<20} {:>9} {:>9} {:>9} {:>9} {:>9}", "case", "loss rel", "grad NMSE", "grad rel", "losses", "after3 Δ");
    for case in ["tiny-gemma4-f32", "tiny-gemma4-Q4_K_M", "tiny-gemma3-f32", "tiny-gemma3-Q4_K_M"] {
        let golden = TrainingGolden::read(case);
        let model = golden.fixture.strip_prefix("fixtures/").and_then(|f| f.strip_suffix(".gguf")).unwrap();
        let reference = load(model);
        let init = ferrogem::lora::open(&self::golden(&golden.init_adapter)).unwrap();
        let (tokens, targets) = (&golden.tokens, &golden.targets);

        let ours = reference.lora_loss_grads(&init, 1.0, tokens, targets).unwrap();
        let loss_rel = (ours.loss - golden.losses[0]).abs() / golden.losses[0];
        let grads: Vec<_> = ours.grads.iter().map(|g| (g.layer, g.target, &g.a[..], &g.b[..])).collect();
        let (grad_nmse, grad_abs, grad_largest) = compare(&grads, &peft_tensors(&golden.init_adapter, case, "grads"));
        let grad_rel = grad_abs / grad_largest;

        let steps = golden.losses.len() as u32;
        let (losses, after) = adamw_steps(&reference, &init, tokens, targets, golden.adamw, steps).unwrap();
        let losses_rel = losses.iter().zip(&golden.losses).map(|(o, t)| (o - t).abs() / t).fold(0f64, f64::max);
        let params: Vec<_> = after.updates.iter().map(|u| (u.layer, u.target, &u.a[..], &u.b[..])).collect();
        let (_, after_abs, _) = compare(&params, &peft_tensors(&golden.init_adapter, case, "after3"));

        println!("{case:<20} {loss_rel:>9.2e} {grad_nmse:>9.2e} {grad_rel:>9.2e} {losses_rel:>9.2e} {after_abs:>9.2e}");
        check(case, "loss, relative", loss_rel, MAX_REL_LOSS_VS_HF);
        check(case, "worst gradient NMSE", grad_nmse, MAX_GRAD_NMSE_VS_HF);
        check(case, "worst gradient |Δ| / largest", grad_rel, MAX_REL_GRAD_VS_HF);
        check(case, &format!("losses of {steps} AdamW steps, relative"), losses_rel, MAX_REL_LOSS_VS_HF);
        check(case, &format!("max |Δ| after {steps} AdamW steps"), after_abs, MAX_ABS_AFTER3_VS_HF);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
