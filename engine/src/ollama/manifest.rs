//! Ollama manifests: the JSON file at `manifests/<host>/<namespace>/<model>/<tag>` that lists a model's blobs.
//!
//! The format is the OCI/Docker image manifest Ollama writes: `schemaVersion` 2, a `config` layer (a small JSON
//! blob describing format and family), and `layers`, each `{mediaType, digest, size}` pointing at
//! `blobs/sha256-<hex>`.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::digest::Digest;
use super::error::StoreError;

/// The GGUF weights.
pub const MEDIA_TYPE_MODEL: &str = "application/vnd.ollama.image.model";
/// Sampling and runner options as a JSON object.
pub const MEDIA_TYPE_PARAMS: &str = "application/vnd.ollama.image.params";
/// The Go text/template prompt format.
pub const MEDIA_TYPE_TEMPLATE: &str = "application/vnd.ollama.image.template";
/// Older name of the template layer; Ollama still reads it as one.
pub const MEDIA_TYPE_PROMPT: &str = "application/vnd.ollama.image.prompt";
pub const MEDIA_TYPE_SYSTEM: &str = "application/vnd.ollama.image.system";
/// A LoRA adapter in GGUF.
pub const MEDIA_TYPE_ADAPTER: &str = "application/vnd.ollama.image.adapter";
pub const MEDIA_TYPE_LICENSE: &str = "application/vnd.ollama.image.license";
/// The vision tower (multimodal projector) in GGUF.
pub const MEDIA_TYPE_PROJECTOR: &str = "application/vnd.ollama.image.projector";
/// Seed conversation as a JSON array of `{role, content}`.
pub const MEDIA_TYPE_MESSAGES: &str = "application/vnd.ollama.image.messages";
/// One tensor of a model imported from safetensors; such models have no GGUF `model` layer.
pub const MEDIA_TYPE_TENSOR: &str = "application/vnd.ollama.image.tensor";

/// Real manifests are a few kilobytes; anything past this is not one, and is not worth parsing.
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub schema_version: u32,
    pub media_type: String,
    pub config: Option<Layer>,
    pub layers: Vec<Layer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// The model this layer was inherited from (`FROM` in a Modelfile), when Ollama recorded it.
    pub from: Option<String>,
}

/// The JSON as written. Digests stay strings here so that a bad one is reported as an invalid digest, not as a
/// JSON syntax error. Fields Ollama may omit default the way Go's decoder would.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestJson {
    #[serde(default)]
    schema_version: u32,
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    config: Option<LayerJson>,
    #[serde(default)]
    layers: Vec<LayerJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayerJson {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    from: Option<String>,
}

impl Manifest {
    /// Parses a manifest from its bytes; `path` only labels errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, StoreError> {
        let json: ManifestJson = serde_json::from_slice(bytes)
            .map_err(|err| StoreError::MalformedManifest { path: path.to_path_buf(), message: err.to_string() })?;
        let layer = |raw: LayerJson| -> Result<Layer, StoreError> {
            let digest = Digest::parse(&raw.digest).map_err(|_| StoreError::invalid_digest(&raw.digest, Some(path)))?;
            Ok(Layer { media_type: raw.media_type, digest, size: raw.size, from: raw.from })
        };
        Ok(Self {
            schema_version: json.schema_version,
            media_type: json.media_type,
            config: json.config.map(layer).transpose()?,
            layers: json.layers.into_iter().map(layer).collect::<Result<_, _>>()?,
        })
    }

    /// Reads and parses the manifest at `path`, refusing files over [`MAX_MANIFEST_BYTES`]. Returns the manifest
    /// with the sha256 of its bytes, which is the model's ID in `ollama list`.
    pub fn read(path: &Path) -> Result<(Self, Digest), StoreError> {
        let bytes = read_capped(path, MAX_MANIFEST_BYTES).map_err(|err| match err {
            CappedReadError::Io(action, source) => StoreError::io(action, path, source),
            CappedReadError::TooLarge(size) => {
                StoreError::ManifestTooLarge { path: path.to_path_buf(), size, limit: MAX_MANIFEST_BYTES }
            }
        })?;
        Ok((Self::parse(&bytes, path)?, Digest::of_bytes(&bytes)))
    }

    /// The layers of one media type, in manifest order.
    pub fn layers_of<'a>(&'a self, media_type: &'a str) -> impl Iterator<Item = &'a Layer> + 'a {
        self.layers.iter().filter(move |layer| layer.media_type == media_type)
    }
}

impl Layer {
    /// Where the blob of this layer lives in the store rooted at `root`.
    pub fn blob_path(&self, root: &Path) -> PathBuf {
        root.join("blobs").join(self.digest.blob_file_name())
    }
}

pub(crate) enum CappedReadError {
    Io(&'static str, std::io::Error),
    /// The size seen, which is at least one byte past the cap.
    TooLarge(u64),
}

/// Reads a whole file of at most `cap` bytes. The cap is enforced on the bytes actually read, not only on the
/// size reported up front, so a file that grows while being read cannot exceed it either.
pub(crate) fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, CappedReadError> {
    let file = File::open(path).map_err(|err| CappedReadError::Io("open", err))?;
    let reported = file.metadata().map_err(|err| CappedReadError::Io("stat", err))?.len();
    if reported > cap {
        return Err(CappedReadError::TooLarge(reported));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(reported).unwrap_or(0));
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes).map_err(|err| CappedReadError::Io("read", err))?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > cap {
        return Err(CappedReadError::TooLarge(read));
    }
    Ok(bytes)
}
