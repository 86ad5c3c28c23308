//! Errors of the Ollama store. Each message names the file involved and the fix.

use std::path::{Path, PathBuf};

/// Longest piece of untrusted input (a digest or name from a hostile manifest) quoted in a message.
const QUOTE_LIMIT: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot locate the Ollama store: {reason}; set OLLAMA_MODELS to Ollama's models directory \
         (by default ~/.ollama/models)"
    )]
    NoStoreLocation { reason: String },

    #[error(
        "no Ollama store at {}; set OLLAMA_MODELS to the directory that holds Ollama's `manifests` and `blobs` \
         (by default ~/.ollama/models)",
        .root.display()
    )]
    RootMissing { root: PathBuf },

    #[error(
        "invalid model name `{name}`: {reason}; names look like `gemma4:e2b`, `namespace/model:tag` \
         or `host/namespace/model:tag`"
    )]
    InvalidName { name: String, reason: String },

    #[error(
        "invalid digest `{digest}`{}: expected `sha256:` followed by 64 lowercase hex digits",
        in_manifest(.manifest.as_deref())
    )]
    InvalidDigest { digest: String, manifest: Option<PathBuf> },

    #[error("model `{name}` not found in {}; {}", .root.display(), present_summary(.name, .present))]
    ModelNotFound { name: String, root: PathBuf, present: Vec<String> },

    #[error(
        "manifest {} is {size} bytes, over the {limit}-byte cap for manifests; it is not an Ollama manifest",
        .path.display()
    )]
    ManifestTooLarge { path: PathBuf, size: u64, limit: u64 },

    #[error(
        "malformed manifest {}: {message}; re-pull the model (`ollama pull <name>`) or remove the file",
        .path.display()
    )]
    MalformedManifest { path: PathBuf, message: String },

    #[error("manifest {} of `{name}` has no `application/vnd.ollama.image.model` layer; {hint}", .path.display())]
    NoModelLayer { path: PathBuf, name: String, hint: String },

    #[error(
        "blob {digest} ({media_type}) is missing at {}; the store is incomplete — run `ollama pull {name}` again",
        .path.display()
    )]
    BlobMissing { path: PathBuf, digest: String, media_type: String, name: String },

    #[error(
        "blob {} is {actual} bytes but the manifest says {expected}; the download is truncated or the file \
         was replaced — run `ollama pull {name}` again",
        .path.display()
    )]
    BlobSizeMismatch { path: PathBuf, expected: u64, actual: u64, name: String },

    #[error(
        "blob {} hashes to sha256:{actual} but is named for sha256:{expected}; the file is corrupt — delete it \
         and run `ollama pull` again",
        .path.display()
    )]
    Sha256Mismatch { path: PathBuf, expected: String, actual: String },

    #[error(
        "the text layers (params, template, system, license, messages) of manifest {} total more than \
         {limit} bytes; Ollama writes far smaller ones, so the manifest is not trustworthy",
        .path.display()
    )]
    TextLayersTooLarge { path: PathBuf, limit: u64 },

    #[error("malformed {media_type} layer {}: {message}; re-pull the model", .path.display())]
    MalformedLayer { path: PathBuf, media_type: String, message: String },

    #[error("could not {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io { action, path: path.to_path_buf(), source }
    }

    pub(crate) fn invalid_digest(digest: &str, manifest: Option<&Path>) -> Self {
        Self::InvalidDigest { digest: quote_untrusted(digest), manifest: manifest.map(Path::to_path_buf) }
    }
}

/// Shortens untrusted text so that a hostile manifest cannot blow up an error message.
pub(crate) fn quote_untrusted(text: &str) -> String {
    match text.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn in_manifest(manifest: Option<&Path>) -> String {
    manifest.map(|path| format!(" in manifest {}", path.display())).unwrap_or_default()
}

fn present_summary(name: &str, present: &[String]) -> String {
    if present.is_empty() {
        format!("the store is empty; run `ollama pull {name}`")
    } else {
        format!("present: {}; run `ollama pull {name}` to fetch it", present.join(", "))
    }
}
