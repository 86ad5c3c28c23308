//! Adapters written as HF PEFT directories and llama.cpp LoRA GGUFs: laid out as PEFT and llama.cpp's converter
//! lay out the golden adapters (golden/lora/), read back by the crate's own readers as the same updates, and a
//! failed write is a typed error that leaves nothing behind.
//!
//! With `FERROGEM_PEFT_OUT=DIR` the golden adapters' PEFT directories are also written to `DIR/<name>`, for
//! golden/scripts/check_peft_load.py (which loads them with HF peft).

use ferrogem::gguf::GgufFile;
use ferrogem::lora::{self, LoraAdapter, LoraError, LowRank, Target};
use ferrogem::source::MemSource;
use safetensors::SafeTensors;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

const GOLDEN: [&str; 3] = ["tiny-gemma4-lora-a", "tiny-gemma3-lora-a", "tiny-gemma4-lora-b"];

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../golden/lora").join(name)
}

fn golden(name: &str) -> LoraAdapter {
    lora::open(&golden_path(name)).unwrap()
}

fn read_gguf(bytes: Vec<u8>) -> (GgufFile, LoraAdapter) {
    let file = GgufFile::read(&bytes[..]).unwrap();
    let adapter = lora::from_gguf(&file, &MemSource::new(bytes)).unwrap();
    (file, adapter)
}

/// Same updates: shapes, A and B exactly, the scale to float rounding (α·r then α/r).
fn assert_same(written: &LoraAdapter, read: &LoraAdapter) {
    assert_eq!(written.updates.len(), read.updates.len());
    for (w, r) in written.updates.iter().zip(&read.updates) {
        let what = w.describe();
        assert_eq!((w.layer, w.target, w.rank, w.in_dim, w.out_dim), (r.layer, r.target, r.rank, r.in_dim, r.out_dim));
        assert!(w.a == r.a && w.b == r.b, "{what}: A or B changed");
        assert!(((w.scale - r.scale) / w.scale).abs() <= 1e-6, "{what}: scale {} read as {}", w.scale, r.scale);
    }
}

/// scale·B·A, `[out][in]`, in f64.
fn delta(u: &LowRank) -> Vec<f64> {
    let (rank, in_dim) = (u.rank as usize, u.in_dim as usize);
    let mut d = vec![0.0; u.out_dim as usize * in_dim];
    for (o, row) in d.chunks_mut(in_dim).enumerate() {
        for k in 0..rank {
            let b = f64::from(u.b[o * rank + k]) * f64::from(u.scale);
            for (x, a) in row.iter_mut().zip(&u.a[k * in_dim..(k + 1) * in_dim]) {
                *x += b * f64::from(*a);
            }
        }
    }
    d
}

/// (name, shape) of every tensor of a safetensors file, sorted.
fn layout(bytes: &[u8]) -> Vec<(String, Vec<usize>)> {
    let file = SafeTensors::deserialize(bytes).unwrap();
    let mut names: Vec<_> = file.tensors().into_iter().map(|(name, view)| (name, view.shape().to_vec())).collect();
    names.sort();
    names
}

/// A directory of the test's own under the system's temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("ferrogem-lora-write-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Scratch(path)
    }

    /// The names in the directory, sorted.
    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(&self.0).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
        names.sort();
        names
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn peft_round_trip_gives_the_same_updates_in_the_layout_peft_writes() {
    let scratch = Scratch::new("peft-round-trip");
    for name in GOLDEN {
        let adapter = golden(name);
        let (config, tensors) = lora::peft_bytes(&adapter, Some("google/gemma-tiny")).unwrap();
        let read = lora::from_peft(&config, &tensors).unwrap();
        assert_same(&adapter, &read);
        assert_eq!(read.base_model.as_deref(), Some("google/gemma-tiny"));
        let golden_tensors = std::fs::read(golden_path(name).join("adapter_model.safetensors")).unwrap();
        assert_eq!(layout(&tensors), layout(&golden_tensors), "{name}: keys or shapes differ from what peft writes");

        let dir = scratch.0.join(name);
        std::fs::create_dir(&dir).unwrap();
        lora::write_peft_dir(&adapter, &dir, None).unwrap();
        assert_same(&adapter, &lora::open(&dir).unwrap());
        if let Some(out) = std::env::var_os("FERROGEM_PEFT_OUT") {
            let dir = Path::new(&out).join(name);
            std::fs::create_dir_all(&dir).unwrap();
            lora::write_peft_dir(&adapter, &dir, None).unwrap();
        }
    }
}

#[test]
fn peft_config_puts_the_updates_that_differ_in_rank_or_scale_in_the_patterns() {
    // Adapter B: rsLoRA r 4 α 8 (scale 4), o_proj rank 2 (scale 8/√2), down_proj α 4 (scale 2).
    let (config, _) = lora::peft_bytes(&golden("tiny-gemma4-lora-b"), None).unwrap();
    let mut config: Value = serde_json::from_str(&config).unwrap();
    // serde_json's parser may land one f64 ulp off what it printed; the f32 the reader takes is exact.
    let o_alpha = (8.0 / 2f32.sqrt()) * 2.0;
    assert_eq!(config["alpha_pattern"]["o_proj"].as_f64().map(|a| a as f32), Some(o_alpha));
    config["alpha_pattern"]["o_proj"] = json!(o_alpha);
    let expected = json!({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": null,
        "r": 4, "lora_alpha": 16.0, "use_rslora": false,
        "rank_pattern": {"o_proj": 2}, "alpha_pattern": {"o_proj": o_alpha, "down_proj": 8.0},
        "target_modules": ["down_proj", "o_proj", "per_layer_input_gate", "per_layer_projection", "q_proj", "up_proj"],
        "layers_to_transform": null, "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": false,
        "inference_mode": true,
    });
    assert_eq!(config, expected);

    // A projection whose scale differs between layers gets a key per layer.
    let mut adapter = golden("tiny-gemma4-lora-b");
    let q3 = adapter.updates.iter_mut().find(|u| (u.layer, u.target) == (3, Target::AttnQ)).unwrap();
    q3.scale = 1.5;
    let (config, tensors) = lora::peft_bytes(&adapter, None).unwrap();
    assert_same(&adapter, &lora::from_peft(&config, &tensors).unwrap());
    let config: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["alpha_pattern"]["layers.3.self_attn.q_proj"], json!(6.0));
    assert!(config["alpha_pattern"].get("q_proj").is_none());
}

#[test]
fn gguf_of_a_one_scale_adapter_is_the_converters_file() {
    for (name, arch) in [("tiny-gemma4-lora-a", "gemma4"), ("tiny-gemma3-lora-a", "gemma3")] {
        let adapter = golden(name);
        let (file, read) = read_gguf(lora::lora_gguf_bytes(&adapter, arch).unwrap());
        assert_same(&adapter, &read);
        assert_eq!(file.get_str("general.type").unwrap(), "adapter");
        assert_eq!(file.architecture().unwrap(), arch);
        assert_eq!(file.get_f32("adapter.lora.alpha").unwrap(), 16.0);
        let tensors = |f: &GgufFile| {
            let mut t: Vec<_> =
                f.tensors().iter().map(|t| (t.name().to_owned(), t.dims().to_vec(), t.dtype())).collect();
            t.sort_by(|x, y| x.0.cmp(&y.0));
            t
        };
        let converted = std::fs::read(golden_path(&format!("{name}.gguf"))).unwrap();
        assert_eq!(tensors(&file), tensors(&GgufFile::read(&converted[..]).unwrap()), "{name}");
    }
}

#[test]
fn gguf_of_a_mixed_scale_adapter_folds_the_scales_into_b() {
    // Adapter B's α·r: 16 for q, up and the PLE pair (12 updates), 8/√2·2 for o_proj, 8 for down_proj.
    let adapter = golden("tiny-gemma4-lora-b");
    let (file, read) = read_gguf(lora::lora_gguf_bytes(&adapter, "gemma4").unwrap());
    assert_eq!(file.get_f32("adapter.lora.alpha").unwrap(), 16.0);
    assert_eq!(adapter.updates.len(), read.updates.len());
    for (w, r) in adapter.updates.iter().zip(&read.updates) {
        let what = w.describe();
        assert_eq!((w.layer, w.target, w.rank, w.in_dim, w.out_dim), (r.layer, r.target, r.rank, r.in_dim, r.out_dim));
        assert_eq!(w.a, r.a, "{what}");
        let folded = matches!(w.target, Target::AttnOutput | Target::FfnDown);
        assert_eq!(w.b != r.b, folded, "{what}: B is folded exactly when α/r is not its scale");
        let (dw, dr) = (delta(w), delta(r));
        let max = dw.iter().fold(0f64, |m, v| m.max(v.abs()));
        let err = dw.iter().zip(&dr).fold(0f64, |m, (x, y)| m.max((x - y).abs()));
        assert!(err <= 1e-6 * max, "{what}: scale·B·A off by {err} (max {max})");
    }
}

#[test]
fn an_inconsistent_adapter_is_refused_and_nothing_is_written() {
    let scratch = Scratch::new("inconsistent");
    let mut adapter = golden("tiny-gemma3-lora-a");
    adapter.updates[3].a.pop();
    let err = lora::write_peft_dir(&adapter, &scratch.0, None).unwrap_err();
    assert!(matches!(err, ferrogem::Error::Lora(LoraError::Tensor { .. })), "{err}");
    adapter.updates.clear();
    let err = lora::lora_gguf_bytes(&adapter, "gemma3").unwrap_err();
    assert!(matches!(err, ferrogem::Error::Lora(LoraError::Empty)), "{err}");
    assert!(scratch.entries().is_empty());
}

#[test]
fn a_failed_write_is_an_io_error_and_leaves_nothing_behind() {
    let adapter = golden("tiny-gemma4-lora-b");
    let is_io = |r: ferrogem::Result<()>| matches!(r, Err(ferrogem::Error::Io { .. }));

    let scratch = Scratch::new("missing-dir");
    let missing = scratch.0.join("missing");
    assert!(is_io(lora::write_peft_dir(&adapter, &missing, None)));
    assert!(is_io(lora::write_lora_gguf(&adapter, &missing.join("b.gguf"), "gemma4")));
    assert!(scratch.entries().is_empty());

    // A failure after the temporary file is complete: the destination is a directory, so the rename fails.
    let scratch = Scratch::new("blocked-rename");
    std::fs::create_dir_all(scratch.0.join("adapter_model.safetensors/x")).unwrap();
    std::fs::create_dir_all(scratch.0.join("b.gguf/x")).unwrap();
    assert!(is_io(lora::write_peft_dir(&adapter, &scratch.0, None)));
    assert!(is_io(lora::write_lora_gguf(&adapter, &scratch.0.join("b.gguf"), "gemma4")));
    assert_eq!(scratch.entries(), ["adapter_model.safetensors", "b.gguf"]);

    let scratch = Scratch::new("read-only");
    let writable = std::fs::metadata(&scratch.0).unwrap().permissions();
    let mut read_only = writable.clone();
    read_only.set_readonly(true);
    std::fs::set_permissions(&scratch.0, read_only).unwrap();
    // Root (or a system where the flag does not guard a directory) may write anyway, and then the write succeeds.
    let enforced = std::fs::File::create(scratch.0.join("probe")).is_err();
    let peft = lora::write_peft_dir(&adapter, &scratch.0, None);
    let gguf = lora::write_lora_gguf(&adapter, &scratch.0.join("b.gguf"), "gemma4");
    let entries = scratch.entries();
    std::fs::set_permissions(&scratch.0, writable).unwrap();
    if enforced {
        assert!(is_io(peft) && is_io(gguf));
        assert!(entries.is_empty(), "{entries:?}");
    } else {
        eprintln!("the read-only directory is writable here (root?); checked that the write succeeds instead");
        peft.unwrap();
        gguf.unwrap();
        assert_eq!(entries, ["adapter_config.json", "adapter_model.safetensors", "b.gguf", "probe"]);
    }
}
