//! Putting a synthetic GGUF into an Ollama store the way `ollama create` does (gemma4.md §7): the GGUF as a
//! content-addressed blob, a params layer (stop tokens and sampling), for Gemma 3 a template layer, a config
//! blob, and the manifest at `manifests/<host>/<namespace>/<model>/<tag>`.

use super::presets::Preset;
use super::tensors::QuantMix;
use ferrogem::models::Arch;
use ferrogem::ollama::{MEDIA_TYPE_MODEL, MEDIA_TYPE_PARAMS, MEDIA_TYPE_TEMPLATE, ModelName, OllamaStore};
use serde_json::json;
use sha2::Digest;
use std::fs;
use std::path::{Path, PathBuf};

const MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.docker.container.image.v1+json";
/// Ollama's Gemma 3 template (`template/gemma3-instruct.gotmpl`); Gemma 4 is rendered by name instead
/// (config `renderer`), so it has no template layer.
const GEMMA3_TEMPLATE: &str = "{{- range $i, $_ := .Messages }}\n{{- $last := eq (len (slice $.Messages $i)) 1 }}\n\
{{- if or (eq .Role \"user\") (eq .Role \"system\") }}<start_of_turn>user\n{{ .Content }}<end_of_turn>\n\
{{ if $last }}<start_of_turn>model\n{{ end }}\n{{- else if eq .Role \"assistant\" }}<start_of_turn>model\n\
{{ .Content }}{{ if not $last }}<end_of_turn>\n{{ end }}\n{{- end }}\n{{- end }}";

fn io(action: &'static str, path: &Path, e: std::io::Error) -> ferrogem::Error {
    ferrogem::Error::Io { action, path: path.display().to_string(), message: e.to_string() }
}

/// Where the model blob is written before its digest is known: inside `blobs/`, so the final rename stays on
/// one filesystem.
pub fn partial_blob_path(root: &Path) -> ferrogem::Result<PathBuf> {
    let blobs = root.join("blobs");
    fs::create_dir_all(&blobs).map_err(|e| io("create", &blobs, e))?;
    Ok(blobs.join(format!("sha256-partial-synth-{}", std::process::id())))
}

/// Writes a small blob, returning its layer JSON.
fn put_blob(root: &Path, media_type: &str, bytes: &[u8]) -> ferrogem::Result<serde_json::Value> {
    let hex = super::hex(&sha2::Sha256::digest(bytes));
    let path = root.join("blobs").join(format!("sha256-{hex}"));
    fs::write(&path, bytes).map_err(|e| io("write", &path, e))?;
    Ok(json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len()}))
}

pub struct ModelBlob<'a> {
    /// The GGUF, already inside `root/blobs` (renamed here) or elsewhere (hard-linked, else copied).
    pub path: &'a Path,
    pub sha256_hex: &'a str,
    pub size_bytes: u64,
}

/// Files the blob and writes the layers and manifest of `name`; returns the manifest path.
pub fn install(
    root: &Path,
    name: &str,
    blob: ModelBlob,
    preset: &Preset,
    mix: QuantMix,
    params: u64,
) -> ferrogem::Result<PathBuf> {
    let model_name = ModelName::parse(name)?;
    let blob_path = root.join("blobs").join(format!("sha256-{}", blob.sha256_hex));
    if blob.path.parent() == blob_path.parent() {
        fs::rename(blob.path, &blob_path).map_err(|e| io("rename", blob.path, e))?;
    } else if fs::hard_link(blob.path, &blob_path).is_err() {
        fs::copy(blob.path, &blob_path).map_err(|e| io("copy", blob.path, e))?;
    }
    let mut layers = vec![json!({
        "mediaType": MEDIA_TYPE_MODEL,
        "digest": format!("sha256:{}", blob.sha256_hex),
        "size": blob.size_bytes,
    })];
    let family = preset.arch_name();
    // `ollama create` adds the stop token for Gemma; the sampling is generation_config.json's (gemma4.md §2.4).
    let stop = match preset.arch {
        Arch::Gemma4 => "<turn|>",
        Arch::Gemma3 => "<end_of_turn>",
    };
    if preset.arch == Arch::Gemma3 {
        layers.push(put_blob(root, MEDIA_TYPE_TEMPLATE, GEMMA3_TEMPLATE.as_bytes())?);
    }
    let params_json = json!({"stop": [stop], "temperature": 1, "top_k": 64, "top_p": 0.95});
    layers.push(put_blob(root, MEDIA_TYPE_PARAMS, params_json.to_string().as_bytes())?);

    let diff_ids: Vec<&serde_json::Value> = layers.iter().map(|l| &l["digest"]).collect();
    let mut config = json!({
        "model_format": "gguf",
        "model_family": family,
        "model_families": [family],
        "model_type": super::metadata::size_label(params),
        "file_type": mix.name(),
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    if preset.arch == Arch::Gemma4 {
        config["renderer"] = json!("gemma4");
        config["parser"] = json!("gemma4");
    }
    let config_layer = put_blob(root, CONFIG_MEDIA_TYPE, config.to_string().as_bytes())?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config_layer,
        "layers": layers,
    });
    let manifest_path = OllamaStore::at(root).manifest_path(&model_name);
    if let Some(dir) = manifest_path.parent() {
        fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
    }
    fs::write(&manifest_path, manifest.to_string()).map_err(|e| io("write", &manifest_path, e))?;
    Ok(manifest_path)
}
