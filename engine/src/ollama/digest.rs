//! Content digests of Ollama blobs and the streaming sha256 check.

use std::fmt;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::Path;

use sha2::Digest as _;

use super::error::StoreError;

const SHA256_HEX_LEN: usize = 64;
/// Read size of the hashing loop: large enough to keep syscalls cheap, small enough not to matter next to a
/// multi-gigabyte blob.
const HASH_CHUNK_BYTES: usize = 1 << 20;

/// A sha256 digest, validated to be exactly 64 lowercase hex digits before it is ever used in a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<hex>` (the manifest spelling) or `sha256-<hex>` (the blob file spelling).
    ///
    /// Ollama also accepts uppercase hex, but it only ever writes lowercase; requiring lowercase means one digest
    /// has exactly one blob path.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let hex = text.strip_prefix("sha256:").or_else(|| text.strip_prefix("sha256-"));
        match hex {
            Some(hex) if is_lower_hex(hex, SHA256_HEX_LEN) => Ok(Self { hex: hex.to_owned() }),
            _ => Err(StoreError::invalid_digest(text, None)),
        }
    }

    /// The 64 lowercase hex digits.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The blob's file name under `blobs/`: the digest with `:` replaced by `-`.
    pub fn blob_file_name(&self) -> String {
        format!("sha256-{}", self.hex)
    }

    /// Hashes the file at `path` in fixed-size chunks (blobs run to many gigabytes) and compares with `self`.
    pub fn verify_file(&self, path: &Path) -> Result<(), StoreError> {
        let actual = sha256_file(path)?;
        if actual == self.hex {
            Ok(())
        } else {
            Err(StoreError::Sha256Mismatch { path: path.to_path_buf(), expected: self.hex.clone(), actual })
        }
    }

    pub(crate) fn of_bytes(bytes: &[u8]) -> Self {
        Self { hex: to_lower_hex(&sha2::Sha256::digest(bytes)) }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

fn sha256_file(path: &Path) -> Result<String, StoreError> {
    let mut file = File::open(path).map_err(|err| StoreError::io("open", path, err))?;
    let mut hasher = sha2::Sha256::new();
    let mut chunk = vec![0u8; HASH_CHUNK_BYTES];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(read) => hasher.update(&chunk[..read]),
            Err(err) if err.kind() == ErrorKind::Interrupted => continue,
            Err(err) => return Err(StoreError::io("read", path, err)),
        }
    }
    Ok(to_lower_hex(&hasher.finalize()))
}

fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn to_lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes.iter().flat_map(|&b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]]).map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_both_spellings() {
        let colon = Digest::parse(&format!("sha256:{EMPTY_SHA256}")).unwrap_or_else(|err| panic!("{err}"));
        let dash = Digest::parse(&format!("sha256-{EMPTY_SHA256}")).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(colon, dash);
        assert_eq!(colon.blob_file_name(), format!("sha256-{EMPTY_SHA256}"));
        assert_eq!(colon.to_string(), format!("sha256:{EMPTY_SHA256}"));
    }

    #[test]
    fn rejects_anything_but_sha256_lowercase_hex() {
        for bad in [
            "sha256:../../etc/passwd".to_owned(),
            format!("sha256:{}", EMPTY_SHA256.to_uppercase()),
            format!("sha512:{EMPTY_SHA256}"),
            format!("sha256:{}", &EMPTY_SHA256[1..]),
            format!("sha256:{EMPTY_SHA256}0"),
            format!("sha256:{}/..", &EMPTY_SHA256[..61]),
            EMPTY_SHA256.to_owned(),
            String::new(),
        ] {
            assert!(matches!(Digest::parse(&bad), Err(StoreError::InvalidDigest { .. })), "`{bad}` should be rejected");
        }
    }

    #[test]
    fn hashes_bytes_like_sha256sum() {
        assert_eq!(Digest::of_bytes(b"").hex(), EMPTY_SHA256);
    }
}
