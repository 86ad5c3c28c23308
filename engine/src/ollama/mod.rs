//! Reading models from Ollama's on-disk store, so that `ollama pull` downloads can be run without copying them.
//!
//! The store (`$OLLAMA_MODELS`, by default `~/.ollama/models`) holds `manifests/<host>/<namespace>/<model>/<tag>`
//! JSON files and content-addressed `blobs/sha256-<hex>`. A manifest lists the blobs of one model by media
//! type; the one typed `application/vnd.ollama.image.model` is the GGUF.
//!
//! Everything read from the store is treated as untrusted: names and digests are validated before they become
//! paths, and every file read into memory is capped.

mod digest;
mod error;
mod manifest;
mod name;
mod resolve;

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

pub use digest::Digest;
pub use error::StoreError;
pub use manifest::{
    Layer, MAX_MANIFEST_BYTES, MEDIA_TYPE_ADAPTER, MEDIA_TYPE_LICENSE, MEDIA_TYPE_MESSAGES, MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS, MEDIA_TYPE_PROJECTOR, MEDIA_TYPE_PROMPT, MEDIA_TYPE_SYSTEM, MEDIA_TYPE_TEMPLATE,
    MEDIA_TYPE_TENSOR, Manifest,
};
pub use name::{DEFAULT_HOST, DEFAULT_NAMESPACE, DEFAULT_TAG, ModelName};
pub use resolve::{MAX_TEXT_LAYER_BYTES, ResolvedModel};

/// The environment variable that relocates the store, as in Ollama.
pub const MODELS_ENV_VAR: &str = "OLLAMA_MODELS";

#[cfg(windows)]
const HOME_ENV_VAR: &str = "USERPROFILE";
#[cfg(not(windows))]
const HOME_ENV_VAR: &str = "HOME";

/// An Ollama models directory. Nothing is read until a model is resolved or listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OllamaStore {
    root: PathBuf,
}

impl OllamaStore {
    /// The store at `root`, the directory that holds `manifests/` and `blobs/`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The store Ollama itself uses: `$OLLAMA_MODELS`, else `$HOME/.ollama/models`.
    pub fn from_env() -> Result<Self, StoreError> {
        let models = env_var(MODELS_ENV_VAR)?;
        let home = env_var(HOME_ENV_VAR)?;
        Self::from_env_vars(models.as_deref(), home.as_deref())
    }

    /// [`OllamaStore::from_env`] on given values, so that callers and tests need not touch the process
    /// environment. Like Ollama, `OLLAMA_MODELS` is trimmed of whitespace and quotes, and an empty value counts
    /// as unset.
    pub fn from_env_vars(ollama_models: Option<&str>, home: Option<&str>) -> Result<Self, StoreError> {
        let models = ollama_models.map(|value| value.trim().trim_matches(['"', '\''])).filter(|v| !v.is_empty());
        if let Some(models) = models {
            return Ok(Self::at(models));
        }
        match home.filter(|home| !home.is_empty()) {
            Some(home) => Ok(Self::at(Path::new(home).join(".ollama").join("models"))),
            None => Err(StoreError::NoStoreLocation {
                reason: format!("neither {MODELS_ENV_VAR} nor {HOME_ENV_VAR} is set"),
            }),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the manifest of `name` lives (whether or not it exists).
    pub fn manifest_path(&self, name: &ModelName) -> PathBuf {
        self.manifests_dir().join(name.manifest_relative_path())
    }

    /// Parses `name` (`gemma4:e2b`, `library/gemma4:e2b`, `host/namespace/model:tag`) and resolves it.
    pub fn resolve(&self, name: &str) -> Result<ResolvedModel, StoreError> {
        self.resolve_name(&ModelName::parse(name)?)
    }

    /// Finds the manifest of `name`, checks the blobs it lists, and reads its small layers.
    ///
    /// Lookup is case-insensitive, as in Ollama: an exact match wins, else the first stored name that equals
    /// `name` under ASCII case folding.
    pub fn resolve_name(&self, name: &ModelName) -> Result<ResolvedModel, StoreError> {
        self.check_root()?;
        let exact = self.manifest_path(name);
        let (stored_name, manifest_path) = if is_file(&exact)? {
            (name.clone(), exact)
        } else {
            let present = self.list()?;
            match present.iter().find(|stored| stored.eq_ignore_case(name)) {
                Some(stored) => (stored.clone(), self.manifest_path(stored)),
                None => {
                    return Err(StoreError::ModelNotFound {
                        name: name.to_string(),
                        root: self.root.clone(),
                        present: present.iter().map(ModelName::to_string).collect(),
                    });
                }
            }
        };
        let (manifest, manifest_digest) = Manifest::read(&manifest_path)?;
        ResolvedModel::from_manifest(&self.root, stored_name, manifest_path, manifest, manifest_digest)
    }

    /// Every model with a manifest in the store, sorted. Paths that are not valid names (editor backups, stray
    /// files) are skipped, as Ollama skips them.
    pub fn list(&self) -> Result<Vec<ModelName>, StoreError> {
        self.check_root()?;
        let manifests = self.manifests_dir();
        if !manifests.exists() {
            return Ok(Vec::new());
        }
        let mut names = Vec::new();
        for (host, host_dir) in entries(&manifests, EntryKind::Dir)? {
            for (namespace, namespace_dir) in entries(&host_dir, EntryKind::Dir)? {
                for (model, model_dir) in entries(&namespace_dir, EntryKind::Dir)? {
                    for (tag, _) in entries(&model_dir, EntryKind::File)? {
                        names.extend(ModelName::new(&host, &namespace, &model, &tag).ok());
                    }
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn manifests_dir(&self) -> PathBuf {
        self.root.join("manifests")
    }

    fn check_root(&self) -> Result<(), StoreError> {
        match fs::metadata(&self.root) {
            Ok(metadata) if metadata.is_dir() => Ok(()),
            Ok(_) => Err(StoreError::RootMissing { root: self.root.clone() }),
            Err(err) if err.kind() == ErrorKind::NotFound => Err(StoreError::RootMissing { root: self.root.clone() }),
            Err(err) => Err(StoreError::io("stat", &self.root, err)),
        }
    }
}

fn env_var(key: &str) -> Result<Option<String>, StoreError> {
    match std::env::var(key) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(StoreError::NoStoreLocation { reason: format!("${key} is not valid UTF-8") })
        }
    }
}

/// Whether `path` is a regular file (following symlinks); a directory or nothing at all is `false`.
fn is_file(path: &Path) -> Result<bool, StoreError> {
    match fs::metadata(path) {
        Ok(metadata) => Ok(metadata.is_file()),
        Err(err) if matches!(err.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => Ok(false),
        Err(err) => Err(StoreError::io("stat", path, err)),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    Dir,
    File,
}

/// The entries of `dir` of one kind with UTF-8 names. Symlinks are followed, as Ollama's walk follows them;
/// dangling ones are skipped.
fn entries(dir: &Path, kind: EntryKind) -> Result<Vec<(String, PathBuf)>, StoreError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(|err| StoreError::io("list", dir, err))? {
        let entry = entry.map_err(|err| StoreError::io("list", dir, err))?;
        let path = entry.path();
        let Ok(metadata) = fs::metadata(&path) else { continue };
        let entry_kind = if metadata.is_dir() { EntryKind::Dir } else { EntryKind::File };
        if let (true, Ok(name)) = (entry_kind == kind, entry.file_name().into_string()) {
            found.push((name, path));
        }
    }
    Ok(found)
}
