//! Model names as Ollama spells them: `[host/][namespace/]model[:tag]`.
//!
//! The grammar, defaults and part rules follow Ollama's `types/model/name.go`: the tag is split off at the last
//! `:` only when it comes after the last `/` (hosts may carry a port), missing parts default to
//! `registry.ollama.ai`, `library` and `latest`, and every part must start with a letter, digit or `_`. Because
//! `/` and a leading `.` are never allowed in a part, a valid name cannot escape the manifests directory.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::error::{StoreError, quote_untrusted};

pub const DEFAULT_HOST: &str = "registry.ollama.ai";
pub const DEFAULT_NAMESPACE: &str = "library";
pub const DEFAULT_TAG: &str = "latest";

const MAX_HOST_LEN: usize = 350;
const MAX_PART_LEN: usize = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PartKind {
    Host,
    Namespace,
    Model,
    Tag,
}

impl PartKind {
    fn label(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Namespace => "namespace",
            Self::Model => "model",
            Self::Tag => "tag",
        }
    }

    fn max_len(self) -> usize {
        match self {
            Self::Host => MAX_HOST_LEN,
            _ => MAX_PART_LEN,
        }
    }

    /// Characters allowed after the first: hosts may carry a `:port`, namespaces may not contain dots.
    fn allows(self, byte: u8) -> bool {
        match byte {
            b'_' | b'-' => true,
            b'.' => self != Self::Namespace,
            b':' => self == Self::Host,
            _ => byte.is_ascii_alphanumeric(),
        }
    }
}

/// A fully qualified model name. Parts keep the case they were written in; Ollama treats names
/// case-insensitively on lookup, which [`ModelName::eq_ignore_case`] mirrors.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelName {
    host: String,
    namespace: String,
    model: String,
    tag: String,
}

impl ModelName {
    /// Parses `model`, `model:tag`, `namespace/model[:tag]` or `[scheme://]host/namespace/model[:tag]`,
    /// filling in the default host, namespace and tag.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let invalid = |reason: String| StoreError::InvalidName { name: quote_untrusted(text), reason };
        if text.contains('@') {
            return Err(invalid("digest references (`@sha256-…`) are not supported; name the model by its tag".into()));
        }

        let (rest, tag) = match (text.rfind(':'), text.rfind('/')) {
            (Some(colon), slash) if slash.is_none_or(|slash| colon > slash) => {
                (&text[..colon], Some(&text[colon + 1..]))
            }
            _ => (text, None),
        };
        let (rest, model) = match rest.rsplit_once('/') {
            Some((rest, model)) => (Some(rest), model),
            None => (None, rest),
        };
        let (host, namespace) = match rest.map(|rest| rest.rsplit_once('/').ok_or(rest)) {
            None => (None, None),
            Some(Err(namespace)) => (None, Some(namespace)),
            Some(Ok((host, namespace))) => {
                // A URL scheme in front of the host says how to reach the registry, not where the manifest lives.
                let host = host.split_once("://").map_or(host, |(_scheme, host)| host);
                (Some(host), Some(namespace))
            }
        };

        Self::from_parts(
            host.unwrap_or(DEFAULT_HOST),
            namespace.unwrap_or(DEFAULT_NAMESPACE),
            model,
            tag.unwrap_or(DEFAULT_TAG),
        )
        .map_err(invalid)
    }

    /// Builds a name from its four parts, validating each one. Used for manifest paths found on disk.
    pub fn new(host: &str, namespace: &str, model: &str, tag: &str) -> Result<Self, StoreError> {
        Self::from_parts(host, namespace, model, tag).map_err(|reason| StoreError::InvalidName {
            name: quote_untrusted(&format!("{host}/{namespace}/{model}:{tag}")),
            reason,
        })
    }

    fn from_parts(host: &str, namespace: &str, model: &str, tag: &str) -> Result<Self, String> {
        check_part(PartKind::Host, host)?;
        check_part(PartKind::Namespace, namespace)?;
        check_part(PartKind::Model, model)?;
        check_part(PartKind::Tag, tag)?;
        Ok(Self { host: host.into(), namespace: namespace.into(), model: model.into(), tag: tag.into() })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn model(&self) -> &str {
        &self.model
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// `host/namespace/model:tag`, every part spelled out.
    pub fn fully_qualified(&self) -> String {
        format!("{}/{}/{}:{}", self.host, self.namespace, self.model, self.tag)
    }

    /// The manifest's path below `manifests/`: `host/namespace/model/tag`.
    pub fn manifest_relative_path(&self) -> PathBuf {
        [&self.host, &self.namespace, &self.model, &self.tag].iter().collect()
    }

    /// Whether both names denote the same model under Ollama's ASCII case folding.
    pub fn eq_ignore_case(&self, other: &Self) -> bool {
        self.host.eq_ignore_ascii_case(&other.host)
            && self.namespace.eq_ignore_ascii_case(&other.namespace)
            && self.model.eq_ignore_ascii_case(&other.model)
            && self.tag.eq_ignore_ascii_case(&other.tag)
    }
}

/// The shortest form that parses back to the same name, as `ollama list` prints it: `gemma4:e2b`,
/// `namespace/model:tag`, or `host/namespace/model:tag`. The tag is always written.
impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.host.eq_ignore_ascii_case(DEFAULT_HOST) {
            write!(f, "{}/{}/", self.host, self.namespace)?;
        } else if !self.namespace.eq_ignore_ascii_case(DEFAULT_NAMESPACE) {
            write!(f, "{}/", self.namespace)?;
        }
        write!(f, "{}:{}", self.model, self.tag)
    }
}

impl FromStr for ModelName {
    type Err = StoreError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

fn check_part(kind: PartKind, part: &str) -> Result<(), String> {
    let label = kind.label();
    let Some(&first) = part.as_bytes().first() else {
        return Err(format!("the {label} is empty"));
    };
    if part.len() > kind.max_len() {
        return Err(format!("the {label} is {} bytes long, more than {}", part.len(), kind.max_len()));
    }
    if !(first.is_ascii_alphanumeric() || first == b'_') {
        return Err(format!("the {label} `{}` must start with a letter, digit or `_`", quote_untrusted(part)));
    }
    if let Some(bad) = part.chars().find(|&c| !(c.is_ascii() && kind.allows(c as u8))) {
        return Err(format!("the {label} `{}` contains `{bad}`", quote_untrusted(part)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(text: &str) -> [String; 4] {
        let name = ModelName::parse(text).unwrap_or_else(|err| panic!("{text}: {err}"));
        [name.host, name.namespace, name.model, name.tag]
    }

    #[test]
    fn defaults_fill_missing_parts() {
        assert_eq!(parts("gemma4"), ["registry.ollama.ai", "library", "gemma4", "latest"]);
        assert_eq!(parts("gemma4:e2b"), ["registry.ollama.ai", "library", "gemma4", "e2b"]);
        assert_eq!(parts("library/gemma4:e2b"), ["registry.ollama.ai", "library", "gemma4", "e2b"]);
        assert_eq!(parts("me/gemma4"), ["registry.ollama.ai", "me", "gemma4", "latest"]);
        assert_eq!(parts("h/nn/mm:t"), ["h", "nn", "mm", "t"]);
    }

    #[test]
    fn host_may_carry_port_and_scheme() {
        assert_eq!(parts("localhost:5000/ns/m"), ["localhost:5000", "ns", "m", "latest"]);
        assert_eq!(parts("https://example.com:8080/ns/m:7b-q4_K"), ["example.com:8080", "ns", "m", "7b-q4_K"]);
        assert_eq!(parts("host:https/namespace/model:tag"), ["host:https", "namespace", "model", "tag"]);
    }

    #[test]
    fn rejects_malformed_names() {
        for bad in [
            "",
            ":",
            "m:",
            "/m",
            "n/",
            "//mm",
            "hh//mm",
            "a/b/c/d:t",
            "-mm",
            "mm:-t",
            "hh/n.s/mm",
            "hh/name:space/mm:t",
            "../../etc/passwd",
            "..",
            "m/..:x",
            "gemma4:e2b@sha256-00",
            "m:t t",
            "mödel",
        ] {
            assert!(matches!(ModelName::parse(bad), Err(StoreError::InvalidName { .. })), "`{bad}` should be rejected");
        }
        let long = "x".repeat(81);
        assert!(ModelName::parse(&long).is_err());
        assert!(ModelName::parse(&format!("{}/n/m", "h".repeat(350))).is_ok());
    }

    #[test]
    fn display_is_shortest_and_round_trips() {
        for (input, shown) in [
            ("gemma4", "gemma4:latest"),
            ("registry.ollama.ai/library/gemma4:e2b", "gemma4:e2b"),
            ("ns/m:t", "ns/m:t"),
            ("host/library/m:t", "host/library/m:t"),
        ] {
            let name = ModelName::parse(input).unwrap_or_else(|err| panic!("{input}: {err}"));
            assert_eq!(name.to_string(), shown);
            assert_eq!(ModelName::parse(shown).ok(), Some(name));
        }
    }

    #[test]
    fn case_is_kept_but_folds_on_comparison() {
        let upper = ModelName::parse("Gemma4:E2B").unwrap_or_else(|err| panic!("{err}"));
        let lower = ModelName::parse("gemma4:e2b").unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(upper.model(), "Gemma4");
        assert_ne!(upper, lower);
        assert!(upper.eq_ignore_case(&lower));
        assert_eq!(lower.manifest_relative_path(), PathBuf::from("registry.ollama.ai/library/gemma4/e2b"));
    }
}
