//! `ferrogem synth`: tiny synthetic models parse into the preset's config, are byte-for-byte deterministic, pass
//! `check model` (GPU against the CPU reference), and install into an Ollama store that `inspect` resolves.

use ferrogem::gguf::GgufFile;
use ferrogem::models::{Arch, TextConfig};
use ferrogem::source::MmapSource;
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn ferrogem(args: &[&str], ollama_models: Option<&Path>) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrogem"));
    cmd.args(args);
    if let Some(dir) = ollama_models {
        cmd.env("OLLAMA_MODELS", dir);
    }
    let out = cmd.output().expect("run ferrogem");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrogem-synth-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn synth(dir: &Path, arch: &str, quant: &str, seed: u64) -> PathBuf {
    let out = dir.join(format!("{arch}-tiny-{quant}-{seed}.gguf"));
    let seed = seed.to_string();
    let args = ["synth", "--arch", arch, "--preset", "tiny", "--quant", quant, "--seed", &seed, "--out"];
    let (ok, stdout, stderr) = ferrogem(&[&args[..], &[out.to_str().unwrap()]].concat(), None);
    assert!(ok, "{stdout}{stderr}");
    out
}

fn sha256_hex(path: &Path) -> String {
    sha2::Sha256::digest(std::fs::read(path).unwrap()).iter().map(|b| format!("{b:02x}")).collect()
}

fn read(path: &Path) -> GgufFile {
    GgufFile::read(&MmapSource::open(path).unwrap()).unwrap()
}

fn type_counts(g: &GgufFile) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for t in g.tensors() {
        *counts.entry(t.dtype().name().to_owned()).or_default() += 1;
    }
    counts
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|&(t, n)| (t.to_owned(), n)).collect()
}

/// The tiny presets as `TextConfig` reads them back.
fn assert_tiny_config(cfg: &TextConfig, arch: Arch) {
    assert_eq!((cfg.arch, cfg.hidden, cfg.n_head, cfg.vocab, cfg.n_layers()), (arch, 256, 4, 512, 6));
    let sliding: Vec<bool> = cfg.layers.iter().map(|l| l.sliding).collect();
    let ffn: Vec<u32> = cfg.layers.iter().map(|l| l.ffn_dim).collect();
    let kv_source: Vec<usize> = cfg.layers.iter().map(|l| l.kv_source).collect();
    let head_dims: Vec<u32> = cfg.layers.iter().map(|l| l.head_dim).collect();
    assert!(cfg.layers.iter().all(|l| l.n_kv_head == 2 && l.window == l.sliding.then_some(8)));
    match arch {
        Arch::Gemma4 => {
            assert_eq!(sliding, [true, true, true, false, true, false]);
            assert_eq!(ffn, [512, 512, 512, 512, 1024, 1024]);
            assert_eq!(kv_source, [0, 1, 2, 3, 2, 3]);
            assert_eq!(head_dims, [64, 64, 64, 128, 64, 128]);
            assert_eq!((cfg.ple_dim, cfg.final_softcap, cfg.attention_scale), (16, Some(30.0), 1.0));
            assert!(cfg.donors_agree_with_llama_cpp());
        }
        Arch::Gemma3 => {
            assert_eq!(sliding, [true, true, true, true, true, false]);
            assert_eq!(ffn, [512; 6]);
            assert_eq!(kv_source, [0, 1, 2, 3, 4, 5]);
            assert_eq!(head_dims, [64; 6]);
            assert_eq!((cfg.ple_dim, cfg.final_softcap, cfg.attention_scale), (0, None, 0.125));
        }
    }
    let bases: Vec<f32> = cfg.layers.iter().map(|l| l.rope_base).collect();
    assert_eq!(bases, sliding.iter().map(|&s| if s { 1e4 } else { 1e6 }).collect::<Vec<_>>());
}

#[test]
fn tiny_models_match_their_presets_and_pass_check_model() {
    let dir = temp_dir("check");
    let cases = [
        ("gemma4", "F32", Arch::Gemma4, counts(&[("F32", 108)])),
        // Q4_K where rows hold 256-blocks; Q6_K on token_embd and attn_v/ffn_down of layers 2 and 5; the PLE
        // table (rows of 96) falls back to Q8_0, `proj` (rows of 16) to F16; per_layer_model_proj stays BF16.
        (
            "gemma4",
            "Q4_K_M",
            Arch::Gemma4,
            counts(&[("BF16", 1), ("F16", 6), ("F32", 51), ("Q4_K", 44), ("Q6_K", 5), ("Q8_0", 1)]),
        ),
        ("gemma3", "F32", Arch::Gemma3, counts(&[("F32", 80)])),
        ("gemma3", "Q4_K_M", Arch::Gemma3, counts(&[("F32", 37), ("Q4_K", 38), ("Q6_K", 5)])),
    ];
    for (arch_name, quant, arch, want_types) in cases {
        let path = synth(&dir, arch_name, quant, 0);
        let g = read(&path);
        assert_tiny_config(&TextConfig::from_gguf(&g).unwrap(), arch);
        assert_eq!(type_counts(&g), want_types, "{arch_name} {quant}");
        assert_eq!(g.get_array("tokenizer.ggml.tokens").unwrap().len(), 512);
        let (ok, stdout, stderr) = ferrogem(&["check", "model", path.to_str().unwrap(), "--tokens", "4"], None);
        assert!(ok && stdout.contains(" 0 failed"), "{arch_name} {quant}:\n{stdout}{stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let dir = temp_dir("seed");
    let a = synth(&dir, "gemma4", "Q4_K_M", 7);
    let renamed = dir.join("first.gguf");
    std::fs::rename(&a, &renamed).unwrap();
    let b = synth(&dir, "gemma4", "Q4_K_M", 7);
    let c = synth(&dir, "gemma4", "Q4_K_M", 8);
    assert_eq!(sha256_hex(&renamed), sha256_hex(&b));
    assert_ne!(sha256_hex(&b), sha256_hex(&c));
    // Same layout, other weights: only the data (and the seed in general.name) differ.
    assert_eq!(read(&b).tensors().len(), read(&c).tensors().len());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_ollama_store_variant_resolves_by_name() {
    let root = temp_dir("store");
    let args = ["synth", "--arch", "gemma4", "--preset", "tiny", "--quant", "Q4_K_M", "--name", "gemma4:tiny"];
    let (ok, stdout, stderr) = ferrogem(&[&args[..], &["--ollama-store", root.to_str().unwrap()]].concat(), None);
    assert!(ok, "{stdout}{stderr}");

    let (ok, stdout, stderr) = ferrogem(&["inspect", "gemma4:tiny", "--json"], Some(&root));
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["architecture"], "gemma4");
    assert_eq!(report["tokenizer_model"], "llama");
    let blob = PathBuf::from(report["path"].as_str().unwrap());
    assert_eq!(report["ollama_blob_digest"], format!("sha256:{}", sha256_hex(&blob)));

    // Ollama's naming (gemma4.md §2.4): `llama` + pre `gemma4`, no BOS flag, scores = ids.
    let g = read(&blob);
    assert_eq!(g.get_str("tokenizer.ggml.pre").unwrap(), "gemma4");
    assert!(!g.get_bool("tokenizer.ggml.add_bos_token").unwrap());
    assert!(g.get("general.sampling.top_k").is_none());
    let manifest = root.join("manifests/registry.ollama.ai/library/gemma4/tiny");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    let params = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["mediaType"] == "application/vnd.ollama.image.params")
        .expect("a params layer");
    let digest = params["digest"].as_str().unwrap().replace(':', "-");
    let params: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("blobs").join(digest)).unwrap()).unwrap();
    assert_eq!(params["stop"], serde_json::json!(["<turn|>"]));

    let (ok, stdout, stderr) = ferrogem(&["check", "model", "gemma4:tiny", "--tokens", "4"], Some(&root));
    assert!(ok && stdout.contains(" 0 failed"), "{stdout}{stderr}");
    std::fs::remove_dir_all(&root).unwrap();
}
