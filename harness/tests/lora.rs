//! LoRA adapters at inference (issue 12), through the command line as users run them: a random adapter on every
//! projection agrees with the CPU reference (which merges it into the weights) layer by layer, on F32 and quantized
//! bases, Gemma 4 and Gemma 3, full and downlevel; it moves the logits; scales and several adapters compose as sums;
//! and adapters that do not fit are refused with the tensor and both shapes, leaving the model as it was.
//! GPU tests: no adapter fails them (CI has lavapipe).

use ferrogem::gpu::{Context, ContextOptions};
use ferrogem::models::ModelFile;
use ferrogem::models::gemma::{GemmaOptions, LogitRows};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../golden/fixtures").join(name)
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ferrogem-lora-{}-{name}", std::process::id()))
}

fn ferrogem(args: &[&str], downlevel: bool) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrogem"));
    cmd.env_remove("FERROGEM_DOWNLEVEL");
    if downlevel {
        cmd.env("FERROGEM_DOWNLEVEL", "true");
    }
    let out = cmd.args(args).output().expect("run ferrogem");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// A random rank-`rank` adapter for `model` on `targets`, written by `ferrogem synth-lora`.
fn synth_lora(model: &Path, rank: u32, targets: &str, seed: u64, amplitude: f32) -> PathBuf {
    let out = temp(&format!("{}-r{rank}-{targets}-{seed}.gguf", model.file_stem().unwrap().to_string_lossy()));
    let (r, s, a) = (rank.to_string(), seed.to_string(), amplitude.to_string());
    let args = ["synth-lora", "--model", model.to_str().unwrap(), "--rank", &r, "--targets", targets, "--seed", &s];
    let (ok, _, stderr) = ferrogem(&[&args[..], &["--amplitude", &a, "--out", out.to_str().unwrap()]].concat(), false);
    assert!(ok, "synth-lora: {stderr}");
    out
}

#[test]
fn check_model_with_an_adapter_on_every_projection_passes_full_and_downlevel() {
    for (name, downlevel) in [
        ("tiny-gemma4-f32.gguf", false),
        ("tiny-gemma4-Q4_K_M.gguf", true),
        ("tiny-gemma3-Q5_K_M.gguf", false),
        ("tiny-gemma3-f32.gguf", true),
    ] {
        let model = fixture(name);
        let adapter = synth_lora(&model, 8, "all", 1, 0.05);
        let second = synth_lora(&model, 4, "q,o,down", 2, 0.05);
        let adapters = format!("{}:0.7", adapter.display());
        let args = ["check", "model", model.to_str().unwrap(), "--adapter", &adapters, "--adapter"];
        let (ok, stdout, stderr) = ferrogem(&[&args[..], &[second.to_str().unwrap()]].concat(), downlevel);
        let summary = stdout.lines().last().unwrap_or_default().to_owned();
        assert!(ok && summary.ends_with(" 0 failed"), "{name} (downlevel {downlevel}): {summary}\n{stdout}\n{stderr}");
        assert!(stdout.contains("+ adapter"), "{stdout}");
        let passed: usize = summary.split(' ').next().unwrap().parse().unwrap();
        assert!(passed > 40, "{name}: only {passed} checks ran");
    }
}

fn logits(ctx: &Context, model: &ModelFile, tokens: &[u32]) -> Vec<f32> {
    let options = GemmaOptions { max_chunk: 16, n_ctx: 64, ..GemmaOptions::default() };
    let mut gemma = model.load(ctx, options, &mut |_| {}).expect("load");
    gemma.forward_blocking(tokens, 0, LogitRows::All).expect("forward").values
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Logit updates are linear in the adapter's scale only to first order, so the composition checks use a small
/// update: s·ΔW with a second-order error far below the update itself.
#[test]
fn adapters_move_the_logits_and_compose_by_scale_and_sum() {
    let ctx = Context::new_blocking(ContextOptions::from_env()).expect("LoRA tests need a GPU adapter");
    let path = fixture("tiny-gemma4-f32.gguf");
    let adapter = synth_lora(&path, 8, "all", 3, 0.05);
    let tokens: Vec<u32> = (0..20).map(|i| (i * 37 + 2) % 512).collect();
    let base_model = ModelFile::open(path.to_str().unwrap()).unwrap();
    let base = logits(&ctx, &base_model, &tokens);
    let with = |scales: &[f32]| {
        let mut m = ModelFile::open(path.to_str().unwrap()).unwrap();
        for &s in scales {
            m.add_adapter("synthetic", &adapter, s).unwrap();
        }
        logits(&ctx, &m, &tokens)
    };
    let once = with(&[1.0]);
    let moved = max_abs_diff(&once, &base);
    assert!(moved > 0.05, "the adapter moved the logits by only {moved}");
    // The same adapter twice at 0.5 is the adapter once, to rounding; at scale 0 it is the base.
    let halves = with(&[0.5, 0.5]);
    assert!(max_abs_diff(&halves, &once) < 1e-4, "two halves vs once: {}", max_abs_diff(&halves, &once));
    let zero = with(&[0.0]);
    assert!(max_abs_diff(&zero, &base) < 1e-5, "scale 0 vs base: {}", max_abs_diff(&zero, &base));
    let double = with(&[2.0]);
    assert!(max_abs_diff(&double, &once) > moved * 0.5, "scale 2 barely differs from scale 1");
}

#[test]
fn an_adapter_that_does_not_fit_is_refused_and_leaves_the_model_as_it_was() {
    let ctx = Context::new_blocking(ContextOptions::from_env()).expect("LoRA tests need a GPU adapter");
    let path = fixture("tiny-gemma4-f32.gguf");
    let good = synth_lora(&path, 4, "q,v", 4, 0.05);
    let e2b = Path::new(env!("CARGO_MANIFEST_DIR")).join("../golden/shapes/gemma4-e2b.gguf");
    let other_model = synth_lora(&e2b, 1, "q", 0, 0.05);
    let gemma3 = synth_lora(&fixture("tiny-gemma3-f32.gguf"), 4, "q", 0, 0.05);

    let model = ModelFile::open(path.to_str().unwrap()).unwrap();
    let options = GemmaOptions { max_chunk: 8, n_ctx: 16, ..GemmaOptions::default() };
    let mut gemma = model.load(&ctx, options, &mut |_| {}).unwrap();
    let mut applied = ModelFile::open(path.to_str().unwrap()).unwrap();
    applied.add_adapter("good", &good, 1.0).unwrap();
    gemma.set_adapters(&applied.adapters).unwrap();
    let before = gemma.forward_blocking(&[2, 9, 4], 0, LogitRows::All).unwrap().values;
    let lora_bytes = ctx.memory().by_category.iter().find(|c| c.0 == ferrogem::gpu::Category::Lora).unwrap().1;
    assert!(lora_bytes > 0, "adapter buffers are tracked in the lora category");

    for (bad, needle) in [
        (&other_model, "[out 2048, in 1536] (rank 1) in the adapter but the model's projection is [out 128, in 128]"),
        (&gemma3, "made for a gemma3 model"),
    ] {
        let mut both = applied.adapters.clone();
        let mut extra = ModelFile::open(path.to_str().unwrap()).unwrap();
        extra.add_adapter("bad", bad, 1.0).unwrap();
        both.extend(extra.adapters);
        let err = gemma.set_adapters(&both).unwrap_err().to_string();
        assert!(err.contains(needle), "expected `{needle}` in: {err}");
        assert_eq!(gemma.lora.as_ref().map(|l| l.adapters.len()), Some(1), "the good adapter stays applied");
        let after = gemma.forward_blocking(&[2, 9, 4], 0, LogitRows::All).unwrap().values;
        assert_eq!(after, before, "a refused adapter changed the output");
        let now = ctx.memory().by_category.iter().find(|c| c.0 == ferrogem::gpu::Category::Lora).unwrap().1;
        assert_eq!(now, lora_bytes, "a refused adapter left buffers behind");
    }
    gemma.set_adapters(&[]).unwrap();
    let base = gemma.forward_blocking(&[2, 9, 4], 0, LogitRows::All).unwrap().values;
    assert!(max_abs_diff(&base, &before) > 1e-3, "unloading the adapter did not change the output");
    let now = ctx.memory().by_category.iter().find(|c| c.0 == ferrogem::gpu::Category::Lora).unwrap().1;
    assert_eq!(now, 0, "unloading frees every adapter buffer");
}

#[test]
fn bad_adapter_arguments_are_refused_with_what_is_wrong() {
    let model = fixture("tiny-gemma4-f32.gguf");
    let model = model.to_str().unwrap();
    let out = temp("bad.npy");
    let out = out.to_str().unwrap();
    let missing = temp("no-such-adapter");
    let missing_arg = missing.to_str().unwrap();
    for (adapter, needle) in
        [(missing_arg, "could not read the adapter"), (model, "not a LoRA adapter"), (":0.5", "adapter path is empty")]
    {
        let (ok, _, stderr) =
            ferrogem(&["logits", "--model", model, "--tokens", "2,3", "--out", out, "--adapter", adapter], false);
        assert!(!ok && stderr.contains(needle) && !stderr.contains("panicked"), "--adapter {adapter}: {stderr}");
    }
    let scaled_nan = format!("{model}:NaN");
    let (ok, _, stderr) =
        ferrogem(&["logits", "--model", model, "--tokens", "2", "--out", out, "--adapter", &scaled_nan], false);
    assert!(!ok && stderr.contains("not a finite number"), "{stderr}");
}

/// Under a device profile's ceiling, adapters that would pass it are refused before anything is allocated, with
/// what would fit: removing the applied adapters first when that is enough, else smaller adapters.
#[test]
fn adapters_over_the_ceiling_are_refused_with_what_would_fit() {
    let path = fixture("tiny-gemma4-f32.gguf");
    let adapter = synth_lora(&path, 8, "all", 5, 0.05);
    // `ModelFile::load` would apply the adapters itself: load the base, and apply them by hand.
    let model = ModelFile::open(path.to_str().unwrap()).unwrap();
    let mut with_adapter = ModelFile::open(path.to_str().unwrap()).unwrap();
    with_adapter.add_adapter("synthetic", &adapter, 1.0).unwrap();
    let adapters = with_adapter.adapters;
    let options = GemmaOptions { max_chunk: 8, n_ctx: 16, ..GemmaOptions::default() };
    let live = |ctx: &Context| ctx.memory().live_bytes;

    // What the model and the adapter take, measured without a ceiling.
    let free = Context::new_blocking(ContextOptions::from_env()).expect("LoRA tests need a GPU adapter");
    let mut gemma = model.load(&free, options, &mut |_| {}).unwrap();
    let base_bytes = live(&free);
    gemma.set_adapters(&adapters).unwrap();
    let adapter_bytes = live(&free) - base_bytes;
    drop(gemma);

    let with_ceiling = |ceiling_bytes: u64| {
        let mut profile = ferrogem::gpu::DeviceProfile::webgpu_default();
        profile.ceiling_bytes = Some(ceiling_bytes);
        let ctx = Context::new_blocking(ContextOptions { profile: Some(profile), ..ContextOptions::from_env() });
        let ctx = ctx.expect("LoRA tests need a GPU adapter");
        let gemma = model.load(&ctx, options, &mut |_| {}).unwrap();
        (ctx, gemma)
    };
    // Room for half the adapter: refused, nothing allocated, the model runs as before.
    let (ctx, mut gemma) = with_ceiling(base_bytes + adapter_bytes / 2);
    let before = live(&ctx);
    let err = gemma.set_adapters(&adapters).unwrap_err();
    assert!(matches!(err, ferrogem::Error::AdaptersDoNotFit { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("need {adapter_bytes} bytes")) && message.contains("adapters of at most"),
        "{message}"
    );
    assert_eq!(live(&ctx), before, "a refused adapter allocated");
    gemma.forward_blocking(&[2, 9, 4], 0, LogitRows::All).unwrap();

    // Room for one adapter and a half: applying it again fits only once the applied one is removed.
    let (_ctx, mut gemma) = with_ceiling(base_bytes + adapter_bytes * 3 / 2);
    gemma.set_adapters(&adapters).unwrap();
    let message = gemma.set_adapters(&adapters).unwrap_err().to_string();
    assert!(message.contains("remove the applied adapters first"), "{message}");
    gemma.set_adapters(&[]).unwrap();
    gemma.set_adapters(&adapters).unwrap();
}
