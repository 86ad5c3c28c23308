//! The Ollama store against real-format stores built in temporary directories around a real GGUF fixture.
#![cfg(not(target_arch = "wasm32"))]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use ferrogem::ollama::{Digest, MAX_MANIFEST_BYTES, MAX_TEXT_LAYER_BYTES, ModelName, OllamaStore, StoreError};
use sha2::Digest as _;

const MODEL_TYPE: &str = "application/vnd.ollama.image.model";
const PARAMS_JSON: &str = r#"{"stop":["<turn|>"],"temperature":1,"top_k":64,"top_p":0.95}"#;
const TEMPLATE_TEXT: &str = "{{ if .System }}<|turn>system\n{{ .System }}<turn|>\n{{ end }}<|turn>user\n{{ .Prompt }}";
const SYSTEM_TEXT: &str = "You are a helpful assistant.";
const LICENSE_TEXT: &str = "Gemma Terms of Use";
const GGUF_CONFIG_JSON: &str = r#"{"model_format":"gguf","model_family":"gemma4","model_families":["gemma4"],"model_type":"5.1B","file_type":"Q8_0","architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;

/// A store directory under the system temp dir, removed on drop. Unique per test so tests run in parallel.
struct TempStore {
    root: PathBuf,
}

impl TempStore {
    fn empty(label: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let unique = format!("ferrogem-ollama-{label}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let root = std::env::temp_dir().join(unique);
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("create temp store");
        Self { root }
    }

    /// A store holding `gemma4:e2b` the way `ollama pull` leaves it: the GGUF, params, template, system and
    /// license blobs, a config blob, and the manifest.
    fn with_gemma(label: &str) -> Self {
        let store = Self::empty(label);
        let layers = store.gemma_layers();
        store.write_manifest("registry.ollama.ai/library/gemma4/e2b", &layers);
        store
    }

    fn store(&self) -> OllamaStore {
        OllamaStore::at(&self.root)
    }

    /// Writes `bytes` as a blob under its real sha256 and returns its manifest layer.
    fn blob(&self, media_type: &str, bytes: &[u8]) -> String {
        let hex = sha256_hex(bytes);
        let blobs = self.root.join("blobs");
        fs::create_dir_all(&blobs).expect("create blobs dir");
        fs::write(blobs.join(format!("sha256-{hex}")), bytes).expect("write blob");
        layer_json(media_type, &format!("sha256:{hex}"), bytes.len() as u64)
    }

    fn gemma_layers(&self) -> Vec<String> {
        vec![
            self.blob(MODEL_TYPE, &fixture_gguf()),
            self.blob("application/vnd.ollama.image.license", LICENSE_TEXT.as_bytes()),
            self.blob("application/vnd.ollama.image.template", TEMPLATE_TEXT.as_bytes()),
            self.blob("application/vnd.ollama.image.system", SYSTEM_TEXT.as_bytes()),
            self.blob("application/vnd.ollama.image.params", PARAMS_JSON.as_bytes()),
        ]
    }

    /// Writes a manifest exactly as Ollama's encoder does: compact JSON with a trailing newline.
    fn write_manifest(&self, relative: &str, layers: &[String]) -> PathBuf {
        self.write_manifest_with_config(relative, GGUF_CONFIG_JSON, layers)
    }

    fn write_manifest_with_config(&self, relative: &str, config_json: &str, layers: &[String]) -> PathBuf {
        let config = self.blob("application/vnd.docker.container.image.v1+json", config_json.as_bytes());
        let json = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\
             \"config\":{config},\"layers\":[{}]}}\n",
            layers.join(",")
        );
        self.write_raw_manifest(relative, json.as_bytes())
    }

    fn write_raw_manifest(&self, relative: &str, bytes: &[u8]) -> PathBuf {
        let path = self.root.join("manifests").join(relative);
        fs::create_dir_all(path.parent().expect("manifest has a parent")).expect("create manifest dir");
        fs::write(&path, bytes).expect("write manifest");
        path
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn fixture_gguf() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../golden/fixtures/tiny-gemma4-Q8_0.gguf");
    fs::read(&path).unwrap_or_else(|err| panic!("read fixture {}: {err}", path.display()))
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn layer_json(media_type: &str, digest: &str, size: u64) -> String {
    format!("{{\"mediaType\":\"{media_type}\",\"digest\":\"{digest}\",\"size\":{size}}}")
}

fn resolve_err(store: &OllamaStore, name: &str) -> StoreError {
    match store.resolve(name) {
        Ok(resolved) => panic!("`{name}` resolved to {}", resolved.model_blob.display()),
        Err(err) => err,
    }
}

#[test]
fn short_library_and_full_names_resolve_to_the_same_blob() {
    let temp = TempStore::with_gemma("names");
    let expected_blob = temp.root.join("blobs").join(format!("sha256-{}", sha256_hex(&fixture_gguf())));
    for name in ["gemma4:e2b", "library/gemma4:e2b", "registry.ollama.ai/library/gemma4:e2b"] {
        let resolved = temp.store().resolve(name).unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(resolved.model_blob, expected_blob, "{name}");
        assert_eq!(resolved.name.to_string(), "gemma4:e2b");
        assert_eq!(resolved.manifest_path, temp.root.join("manifests/registry.ollama.ai/library/gemma4/e2b"));
    }
}

#[test]
fn small_layers_are_read() {
    let temp = TempStore::with_gemma("layers");
    let resolved = temp.store().resolve("gemma4:e2b").unwrap_or_else(|err| panic!("{err}"));
    let params = resolved.params.as_ref().expect("params layer");
    assert_eq!(params["temperature"], 1);
    assert_eq!(params["top_k"], 64);
    assert_eq!(params["top_p"], 0.95);
    assert_eq!(params["stop"], serde_json::json!(["<turn|>"]));
    assert_eq!(resolved.template.as_deref(), Some(TEMPLATE_TEXT));
    assert_eq!(resolved.system.as_deref(), Some(SYSTEM_TEXT));
    assert_eq!(resolved.licenses, [LICENSE_TEXT]);
    assert!(resolved.adapters.is_empty() && resolved.projectors.is_empty() && resolved.messages.is_empty());
    assert_eq!(resolved.model_layer.size, fixture_gguf().len() as u64);
    let manifest_bytes = fs::read(&resolved.manifest_path).expect("read manifest");
    assert_eq!(resolved.manifest_digest.hex(), sha256_hex(&manifest_bytes));
    assert_eq!(resolved.manifest.schema_version, 2);
    assert_eq!(resolved.manifest.layers.len(), 5);
    assert!(resolved.manifest.config.is_some());
}

#[test]
fn bare_model_defaults_to_latest() {
    let temp = TempStore::empty("latest");
    let layers = temp.gemma_layers();
    temp.write_manifest("registry.ollama.ai/library/gemma4/latest", &layers);
    let resolved = temp.store().resolve("gemma4").unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(resolved.name.tag(), "latest");
    assert!(matches!(temp.store().resolve("gemma4:e2b"), Err(StoreError::ModelNotFound { .. })));
}

#[test]
fn custom_host_and_namespace_with_adapter_and_projector() {
    let temp = TempStore::empty("custom");
    let mut layers = temp.gemma_layers();
    layers.push(temp.blob("application/vnd.ollama.image.projector", b"projector gguf"));
    layers.push(temp.blob("application/vnd.ollama.image.adapter", b"adapter gguf"));
    temp.write_manifest("example.com:5000/me/tiny/q8", &layers);
    let resolved = temp.store().resolve("example.com:5000/me/tiny:q8").unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(resolved.name.to_string(), "example.com:5000/me/tiny:q8");
    assert_eq!(resolved.projectors, [temp.root.join(format!("blobs/sha256-{}", sha256_hex(b"projector gguf")))]);
    assert_eq!(resolved.adapters, [temp.root.join(format!("blobs/sha256-{}", sha256_hex(b"adapter gguf")))]);
    assert!(matches!(resolve_err(&temp.store(), "me/tiny:q8"), StoreError::ModelNotFound { .. }));
}

#[test]
fn lookup_ignores_case_like_ollama() {
    let temp = TempStore::with_gemma("case");
    let resolved = temp.store().resolve("Gemma4:E2B").unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(resolved.name.to_string(), "gemma4:e2b");
}

#[test]
fn list_walks_manifests_and_skips_strays() {
    let temp = TempStore::with_gemma("list");
    let layers = temp.gemma_layers();
    temp.write_manifest("registry.ollama.ai/library/gemma3/270m", &layers);
    temp.write_manifest("example.com/me/tiny/q8", &layers);
    temp.write_raw_manifest("registry.ollama.ai/library/gemma4/.e2b.swp", b"");
    temp.write_raw_manifest("registry.ollama.ai/library/stray", b"");
    let names: Vec<String> = temp.store().list().expect("list").iter().map(ModelName::to_string).collect();
    assert_eq!(names, ["example.com/me/tiny:q8", "gemma3:270m", "gemma4:e2b"]);
}

#[test]
fn missing_model_names_the_present_ones() {
    let temp = TempStore::with_gemma("missing");
    let layers = temp.gemma_layers();
    temp.write_manifest("registry.ollama.ai/library/gemma3/270m", &layers);
    let err = resolve_err(&temp.store(), "gemma4:e4b");
    let message = err.to_string();
    assert!(matches!(err, StoreError::ModelNotFound { .. }), "{message}");
    assert!(message.contains("`gemma4:e4b` not found"), "{message}");
    assert!(message.contains("present: gemma3:270m, gemma4:e2b"), "{message}");
}

#[test]
fn empty_store_suggests_a_pull() {
    let temp = TempStore::empty("empty");
    let message = resolve_err(&temp.store(), "gemma4:e2b").to_string();
    assert!(message.contains("the store is empty; run `ollama pull gemma4:e2b`"), "{message}");
    assert!(temp.store().list().expect("list").is_empty());
}

#[test]
fn missing_root_points_at_ollama_models() {
    let root = std::env::temp_dir().join(format!("ferrogem-ollama-absent-{}", std::process::id()));
    let err = resolve_err(&OllamaStore::at(&root), "gemma4:e2b");
    assert!(matches!(err, StoreError::RootMissing { .. }));
    assert!(err.to_string().contains("set OLLAMA_MODELS"), "{err}");
    assert!(matches!(OllamaStore::at(&root).list(), Err(StoreError::RootMissing { .. })));
}

#[test]
fn malformed_manifest_names_the_file() {
    let temp = TempStore::empty("malformed");
    let path = temp.write_raw_manifest("registry.ollama.ai/library/gemma4/e2b", b"{\"schemaVersion\":2,\"layers\":[");
    let err = resolve_err(&temp.store(), "gemma4:e2b");
    assert!(matches!(&err, StoreError::MalformedManifest { path: p, .. } if *p == path), "{err}");
}

#[test]
fn oversized_manifest_is_refused_unread() {
    let temp = TempStore::empty("huge");
    let path = temp.write_raw_manifest("registry.ollama.ai/library/gemma4/e2b", b"");
    fs::File::options().write(true).open(&path).and_then(|f| f.set_len(MAX_MANIFEST_BYTES + 1)).expect("grow");
    assert!(matches!(resolve_err(&temp.store(), "gemma4:e2b"), StoreError::ManifestTooLarge { .. }));
}

#[test]
fn manifest_without_model_layer_says_why() {
    let temp = TempStore::empty("nomodel");
    let params = temp.blob("application/vnd.ollama.image.params", PARAMS_JSON.as_bytes());
    temp.write_manifest("registry.ollama.ai/library/gemma4/e2b", std::slice::from_ref(&params));
    let err = resolve_err(&temp.store(), "gemma4:e2b");
    assert!(matches!(err, StoreError::NoModelLayer { .. }), "{err}");

    let tensor = temp.blob("application/vnd.ollama.image.tensor", b"tensor bytes");
    temp.write_manifest("registry.ollama.ai/library/gemma4/st", &[params.clone(), tensor]);
    let message = resolve_err(&temp.store(), "gemma4:st").to_string();
    assert!(message.contains("safetensors"), "{message}");

    let cloud_config = r#"{"remote_host":"https://ollama.com:443","remote_model":"gemma4","model_format":"","os":"","architecture":""}"#;
    temp.write_manifest_with_config("registry.ollama.ai/library/gemma4/cloud", cloud_config, &[params]);
    let message = resolve_err(&temp.store(), "gemma4:cloud").to_string();
    assert!(message.contains("cloud model served from https://ollama.com:443"), "{message}");
}

#[test]
fn missing_blob_names_path_and_digest() {
    let temp = TempStore::with_gemma("noblob");
    let hex = sha256_hex(SYSTEM_TEXT.as_bytes());
    fs::remove_file(temp.root.join(format!("blobs/sha256-{hex}"))).expect("remove blob");
    let message = resolve_err(&temp.store(), "gemma4:e2b").to_string();
    assert!(message.contains(&format!("sha256:{hex}")) && message.contains(&format!("sha256-{hex}")), "{message}");
}

#[test]
fn blob_size_mismatch_is_reported() {
    let temp = TempStore::empty("size");
    let gguf = fixture_gguf();
    let model = temp.blob(MODEL_TYPE, &gguf);
    let wrong = model.replace(&format!("\"size\":{}", gguf.len()), &format!("\"size\":{}", gguf.len() + 1));
    temp.write_manifest("registry.ollama.ai/library/gemma4/e2b", &[wrong]);
    let err = resolve_err(&temp.store(), "gemma4:e2b");
    let expected = gguf.len() as u64;
    assert!(
        matches!(err, StoreError::BlobSizeMismatch { expected: e, actual, .. } if e == expected + 1 && actual == expected),
        "{err}"
    );
}

#[test]
fn sha256_verification_passes_then_catches_a_flipped_byte() {
    let temp = TempStore::with_gemma("sha");
    let resolved = temp.store().resolve("gemma4:e2b").unwrap_or_else(|err| panic!("{err}"));
    resolved.verify_model_sha256().unwrap_or_else(|err| panic!("{err}"));

    let mut corrupt = fixture_gguf();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0x40;
    fs::write(&resolved.model_blob, &corrupt).expect("corrupt blob");
    match resolved.verify_model_sha256() {
        Err(StoreError::Sha256Mismatch { expected, actual, .. }) => {
            assert_eq!(expected, resolved.model_layer.digest.hex());
            assert_eq!(actual, sha256_hex(&corrupt));
        }
        other => panic!("expected a sha256 mismatch, got {other:?}"),
    }
}

#[test]
fn traversal_digests_are_rejected_before_any_path_is_built() {
    let temp = TempStore::empty("digest");
    let evil = layer_json(MODEL_TYPE, "sha256:../../../../etc/passwd", 10);
    let path = temp.write_manifest("registry.ollama.ai/library/gemma4/e2b", &[evil]);
    let err = resolve_err(&temp.store(), "gemma4:e2b");
    assert!(matches!(&err, StoreError::InvalidDigest { manifest: Some(p), .. } if *p == path), "{err}");
    assert!(matches!(Digest::parse("sha256-../../etc"), Err(StoreError::InvalidDigest { .. })));
}

#[test]
fn traversal_names_are_rejected() {
    let temp = TempStore::with_gemma("badname");
    for name in ["../../etc/passwd", "a/../b:c", "../m", "h/ns/..:t", "m:../../x", "/etc/passwd", "model@sha256-00"] {
        assert!(matches!(resolve_err(&temp.store(), name), StoreError::InvalidName { .. }), "{name}");
    }
}

#[test]
fn text_layers_are_capped_and_parsed() {
    let temp = TempStore::empty("text");
    let mut layers = temp.gemma_layers();
    layers.push(layer_json(
        "application/vnd.ollama.image.license",
        &format!("sha256:{}", "0".repeat(64)),
        MAX_TEXT_LAYER_BYTES,
    ));
    temp.write_manifest("registry.ollama.ai/library/gemma4/e2b", &layers);
    assert!(matches!(resolve_err(&temp.store(), "gemma4:e2b"), StoreError::TextLayersTooLarge { .. }));

    let mut layers = temp.gemma_layers();
    layers.push(temp.blob("application/vnd.ollama.image.params", b"[1, 2"));
    temp.write_manifest("registry.ollama.ai/library/gemma4/e2b", &layers);
    assert!(matches!(resolve_err(&temp.store(), "gemma4:e2b"), StoreError::MalformedLayer { .. }));
}

#[test]
fn ollama_models_env_value_wins_over_home() {
    let at = |models, home| OllamaStore::from_env_vars(models, home).map(|store| store.root().to_path_buf());
    assert_eq!(at(Some("/srv/models"), Some("/home/u")).ok(), Some(PathBuf::from("/srv/models")));
    assert_eq!(at(Some(" \"/srv/models\" "), None).ok(), Some(PathBuf::from("/srv/models")));
    assert_eq!(at(None, Some("/home/u")).ok(), Some(PathBuf::from("/home/u/.ollama/models")));
    assert_eq!(at(Some(""), Some("/home/u")).ok(), Some(PathBuf::from("/home/u/.ollama/models")));
    assert!(matches!(at(None, None), Err(StoreError::NoStoreLocation { .. })));
}

#[test]
fn store_errors_convert_into_the_engine_error() {
    let err: ferrogem::Error = StoreError::RootMissing { root: PathBuf::from("/nowhere") }.into();
    assert!(err.to_string().starts_with("no Ollama store at /nowhere"), "{err}");
}

/// A llama.cpp LoRA GGUF updating blk.1.attn_q of the tiny Gemma 4 (hidden 128, 4 heads × 32).
fn lora_gguf() -> Vec<u8> {
    use ferrogem::gguf::{GgufWriter, Value};
    let mut w = GgufWriter::new(3);
    w.add_metadata("general.architecture", Value::String("gemma4".into()));
    w.add_metadata("general.type", Value::String("adapter".into()));
    w.add_metadata("adapter.type", Value::String("lora".into()));
    w.add_metadata("adapter.lora.alpha", Value::F32(8.0));
    let a: Vec<f32> = (0..4 * 128).map(|i| (i % 7) as f32 * 0.01).collect();
    let b: Vec<f32> = (0..128 * 4).map(|i| (i % 5) as f32 * -0.01).collect();
    w.add_tensor(
        "blk.1.attn_q.weight.lora_a",
        &[128, 4],
        ferrogem::quant::QuantType::F32,
        bytemuck::cast_slice(&a).to_vec(),
    );
    w.add_tensor(
        "blk.1.attn_q.weight.lora_b",
        &[4, 128],
        ferrogem::quant::QuantType::F32,
        bytemuck::cast_slice(&b).to_vec(),
    );
    w.to_bytes().unwrap()
}

#[test]
fn a_model_opened_by_name_carries_its_store_entry_and_its_adapter_layers() {
    use ferrogem::lora::Target;
    use ferrogem::models::ModelFile;
    let temp = TempStore::with_gemma("open");
    let model = ModelFile::from_store(&temp.store(), "gemma4:e2b").unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(model.display, "gemma4:e2b");
    assert_eq!(model.ollama.as_ref().and_then(|o| o.system.as_deref()), Some(SYSTEM_TEXT));
    assert!(model.gguf.tensors().len() > 10, "the GGUF blob was parsed");
    assert!(model.adapters.is_empty());

    let mut layers = temp.gemma_layers();
    layers.push(temp.blob("application/vnd.ollama.image.adapter", &lora_gguf()));
    temp.write_manifest("registry.ollama.ai/library/gemma4/tuned", &layers);
    let tuned = ModelFile::from_store(&temp.store(), "gemma4:tuned").unwrap_or_else(|err| panic!("{err}"));
    let [applied] = &tuned.adapters[..] else { panic!("one adapter layer, one adapter: {:?}", tuned.adapters.len()) };
    assert_eq!((applied.label.as_str(), applied.scale), ("gemma4:tuned ADAPTER 1", 1.0));
    let u = &applied.adapter.updates[0];
    assert_eq!((u.layer, u.target, u.rank, u.scale), (1, Target::AttnQ, 4, 2.0));

    // An adapter layer that is not a LoRA GGUF is an error, never the base model run without it.
    let mut layers = temp.gemma_layers();
    layers.push(temp.blob("application/vnd.ollama.image.adapter", b"adapter gguf"));
    temp.write_manifest("registry.ollama.ai/library/gemma4/broken", &layers);
    let Err(err) = ModelFile::from_store(&temp.store(), "gemma4:broken") else {
        panic!("a manifest with a bad adapter layer must not run as the base model");
    };
    assert!(err.to_string().contains("not a GGUF file"), "{err}");
}
