//! Turning a parsed manifest into the files and settings of one model.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::digest::Digest;
use super::error::{StoreError, quote_untrusted};
use super::manifest::{
    CappedReadError, Layer, MEDIA_TYPE_ADAPTER, MEDIA_TYPE_LICENSE, MEDIA_TYPE_MESSAGES, MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS, MEDIA_TYPE_PROJECTOR, MEDIA_TYPE_PROMPT, MEDIA_TYPE_SYSTEM, MEDIA_TYPE_TEMPLATE,
    MEDIA_TYPE_TENSOR, Manifest, read_capped,
};
use super::name::ModelName;

/// Budget for all text layers of one manifest together. Ollama's are kilobytes (a template, a license or two);
/// the budget is on the sum so that a hostile manifest listing thousands of layers cannot exhaust memory.
pub const MAX_TEXT_LAYER_BYTES: u64 = 16 << 20;
/// The config blob is only read to explain a missing model layer; it is a few hundred bytes.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Everything a runner needs from one Ollama model: the GGUF to load and the settings Ollama would apply.
///
/// Where a manifest repeats a single-valued layer (template, system, params, messages, model), the last one
/// wins, as in Ollama.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    /// The name as stored on disk, which may differ in case from the name asked for.
    pub name: ModelName,
    pub manifest_path: PathBuf,
    /// sha256 of the manifest file; its first 12 hex digits are the ID `ollama list` shows.
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    /// The `application/vnd.ollama.image.model` layer.
    pub model_layer: Layer,
    /// The GGUF file; it exists and has the size the manifest states.
    pub model_blob: PathBuf,
    /// Options from the params layer (`temperature`, `top_k`, `stop`, …).
    pub params: Option<serde_json::Map<String, serde_json::Value>>,
    /// The Go text/template prompt format.
    pub template: Option<String>,
    pub system: Option<String>,
    pub licenses: Vec<String>,
    /// Seed conversation from the messages layer, each a `{role, content}` object.
    pub messages: Vec<serde_json::Value>,
    /// LoRA adapters (GGUF) to apply on top of the model, in manifest order.
    pub adapters: Vec<PathBuf>,
    /// Vision projectors (GGUF) of multimodal models.
    pub projectors: Vec<PathBuf>,
}

impl ResolvedModel {
    /// Recomputes the model blob's sha256 (streaming; blobs run to many gigabytes) and compares it with the
    /// digest the blob is named for.
    pub fn verify_model_sha256(&self) -> Result<(), StoreError> {
        self.model_layer.digest.verify_file(&self.model_blob)
    }

    pub(crate) fn from_manifest(
        root: &Path,
        name: ModelName,
        manifest_path: PathBuf,
        manifest: Manifest,
        manifest_digest: Digest,
    ) -> Result<Self, StoreError> {
        let Some(model_layer) = manifest.layers_of(MEDIA_TYPE_MODEL).last().cloned() else {
            let hint = missing_model_hint(root, &name, &manifest);
            return Err(StoreError::NoModelLayer { path: manifest_path, name: name.to_string(), hint });
        };
        let model_blob = checked_blob(root, &model_layer, &name)?;
        let blobs_of = |media_type| -> Result<Vec<PathBuf>, StoreError> {
            manifest.layers_of(media_type).map(|layer| checked_blob(root, layer, &name)).collect()
        };
        let adapters = blobs_of(MEDIA_TYPE_ADAPTER)?;
        let projectors = blobs_of(MEDIA_TYPE_PROJECTOR)?;

        let mut params = None;
        let mut template = None;
        let mut system = None;
        let mut licenses = Vec::new();
        let mut messages = Vec::new();
        let mut budget = MAX_TEXT_LAYER_BYTES;
        for layer in manifest.layers.iter().filter(|layer| is_text_layer(&layer.media_type)) {
            let (path, text) = read_text_layer(root, layer, &name, &manifest_path, &mut budget)?;
            let malformed = |err: serde_json::Error| StoreError::MalformedLayer {
                path: path.clone(),
                media_type: layer.media_type.clone(),
                message: err.to_string(),
            };
            match layer.media_type.as_str() {
                MEDIA_TYPE_PARAMS => params = Some(serde_json::from_str(&text).map_err(malformed)?),
                MEDIA_TYPE_MESSAGES => messages = serde_json::from_str(&text).map_err(malformed)?,
                MEDIA_TYPE_SYSTEM => system = Some(text),
                MEDIA_TYPE_LICENSE => licenses.push(text),
                _ => template = Some(text),
            }
        }

        Ok(Self {
            name,
            manifest_path,
            manifest_digest,
            manifest,
            model_layer,
            model_blob,
            params,
            template,
            system,
            licenses,
            messages,
            adapters,
            projectors,
        })
    }
}

/// Reads one text layer's blob, charging its size against the manifest's text budget.
fn read_text_layer(
    root: &Path,
    layer: &Layer,
    name: &ModelName,
    manifest_path: &Path,
    budget: &mut u64,
) -> Result<(PathBuf, String), StoreError> {
    *budget = budget.checked_sub(layer.size).ok_or_else(|| StoreError::TextLayersTooLarge {
        path: manifest_path.to_path_buf(),
        limit: MAX_TEXT_LAYER_BYTES,
    })?;
    let path = checked_blob(root, layer, name)?;
    let bytes = read_capped(&path, layer.size).map_err(|err| match err {
        CappedReadError::Io(action, source) => StoreError::io(action, &path, source),
        CappedReadError::TooLarge(actual) => {
            StoreError::BlobSizeMismatch { path: path.clone(), expected: layer.size, actual, name: name.to_string() }
        }
    })?;
    let text = String::from_utf8(bytes).map_err(|err| StoreError::MalformedLayer {
        path: path.clone(),
        media_type: layer.media_type.clone(),
        message: format!("not UTF-8 ({err})"),
    })?;
    Ok((path, text))
}

fn is_text_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        MEDIA_TYPE_PARAMS
            | MEDIA_TYPE_TEMPLATE
            | MEDIA_TYPE_PROMPT
            | MEDIA_TYPE_SYSTEM
            | MEDIA_TYPE_LICENSE
            | MEDIA_TYPE_MESSAGES
    )
}

/// The blob of `layer`, checked to exist with the size the manifest states; a short file is the usual trace of
/// an interrupted pull.
fn checked_blob(root: &Path, layer: &Layer, name: &ModelName) -> Result<PathBuf, StoreError> {
    let path = layer.blob_path(root);
    let missing = |path: PathBuf| StoreError::BlobMissing {
        path,
        digest: layer.digest.to_string(),
        media_type: layer.media_type.clone(),
        name: name.to_string(),
    };
    let metadata = match fs::metadata(&path) {
        Ok(metadata) if metadata.is_file() => metadata,
        Ok(_) => return Err(missing(path)),
        Err(err) if err.kind() == ErrorKind::NotFound => return Err(missing(path)),
        Err(err) => return Err(StoreError::io("stat", &path, err)),
    };
    if metadata.len() != layer.size {
        return Err(StoreError::BlobSizeMismatch {
            path,
            expected: layer.size,
            actual: metadata.len(),
            name: name.to_string(),
        });
    }
    Ok(path)
}

/// Explains why a manifest has no GGUF: the two ordinary causes are safetensors imports and cloud models.
fn missing_model_hint(root: &Path, name: &ModelName, manifest: &Manifest) -> String {
    if manifest.layers_of(MEDIA_TYPE_TENSOR).next().is_some() {
        return "it was imported from safetensors and keeps one blob per tensor; ferrogem loads GGUF only — \
                pull a GGUF tag or `ollama create` from a .gguf file"
            .to_owned();
    }
    let config = manifest
        .config
        .as_ref()
        .and_then(|config| read_capped(&config.blob_path(root), MAX_CONFIG_BYTES).ok())
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    // Ollama counts a model as remote when its config names either a remote host or a remote model.
    let remote_field = |key: &str| {
        let value = config.as_ref()?.get(key)?.as_str()?;
        (!value.is_empty()).then(|| quote_untrusted(value))
    };
    match (remote_field("remote_host"), remote_field("remote_model")) {
        (Some(host), _) => format!("it is a cloud model served from {host}, with no weights on this machine"),
        (None, Some(_)) => "it is a cloud model, with no weights on this machine".to_owned(),
        (None, None) => format!("re-pull it with `ollama pull {name}`"),
    }
}
