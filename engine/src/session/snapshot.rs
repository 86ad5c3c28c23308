//! Session snapshots (`/save` and `/load` in chat): the KV cache, the cached ids and the sampler state, so a
//! restored session continues with exactly the tokens an uninterrupted one produces.
//!
//! Layout, version 1 (integers little-endian):
//! ```text
//! magic "FGSNAP\0\0" | version u32 | header_len u32 | header (JSON, `Header`) |
//! for each KV-owning layer in index order: K bytes, V bytes (sizes in the header) | SHA-256 of everything before
//! ```
//! Restoring checks, before touching the GPU: the magic, the version, the digest (a truncated or edited file),
//! the model's fingerprint, the cache type and every ring's capacity and size.

use super::Session;
use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::models::gemma::AppliedAdapter;
use crate::sampling::SamplerState;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"FGSNAP\0\0";
/// The largest header a snapshot may have: token ids of a full context and a long conversation fit many times.
pub const MAX_HEADER_BYTES: u64 = 64 << 20;
pub const VERSION: u32 = 1;
const DIGEST_BYTES: usize = 32;

/// Identifies a model's weights without reading them (the architecture and every tensor's name, type, shape and
/// offset) and the LoRA adapters applied to it (every update's values and scales): a cache computed with other
/// adapters is another model's cache.
pub fn fingerprint(gguf: &GgufFile, adapters: &[AppliedAdapter]) -> String {
    let mut hash = Sha256::new();
    for applied in adapters {
        hash.update(b"adapter");
        hash.update(applied.scale.to_le_bytes());
        for u in &applied.adapter.updates {
            hash.update(u.layer.to_le_bytes());
            hash.update(u.target.gguf_stem().as_bytes());
            hash.update(u.scale.to_le_bytes());
            hash.update(bytemuck::cast_slice::<f32, u8>(&u.a));
            hash.update(bytemuck::cast_slice::<f32, u8>(&u.b));
        }
    }
    hash.update(gguf.architecture().unwrap_or("?").as_bytes());
    for t in gguf.tensors() {
        hash.update(t.name().as_bytes());
        hash.update(t.dtype().name().as_bytes());
        for d in t.dims() {
            hash.update(d.to_le_bytes());
        }
        hash.update(t.offset_bytes().to_le_bytes());
    }
    hash.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Serialize, Deserialize)]
struct LayerEntry {
    index: usize,
    capacity: u32,
    k_bytes: u64,
    v_bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    fingerprint: String,
    cache_type: String,
    layers: Vec<LayerEntry>,
    cached: Vec<u32>,
    sampler: SamplerState,
    /// The caller's own state (chat: the conversation), returned as saved.
    app: serde_json::Value,
}

/// What a snapshot carries besides the cache.
#[derive(Debug, Clone)]
pub struct Restored {
    pub sampler: SamplerState,
    pub app: serde_json::Value,
}

impl Session {
    pub async fn snapshot(&self, sampler: SamplerState, app: serde_json::Value) -> Result<Vec<u8>> {
        let ctx = self.model.context();
        let mut layers = Vec::new();
        let mut payload = Vec::new();
        for (index, cache) in self.model.kv.layers.iter().enumerate() {
            let Some(cache) = cache else { continue };
            let (k, v) = (ctx.read_bytes(&cache.k).await?, ctx.read_bytes(&cache.v).await?);
            layers.push(LayerEntry {
                index,
                capacity: cache.capacity,
                k_bytes: k.len() as u64,
                v_bytes: v.len() as u64,
            });
            payload.extend_from_slice(&k);
            payload.extend_from_slice(&v);
        }
        let header = Header {
            fingerprint: self.fingerprint.clone(),
            cache_type: format!("{:?}", self.model.kv.cache_type),
            layers,
            cached: self.cached.clone(),
            sampler,
            app,
        };
        let header = serde_json::to_vec(&header).map_err(|e| bad(format!("cannot encode the header: {e}")))?;
        let mut out = Vec::with_capacity(16 + header.len() + payload.len() + DIGEST_BYTES);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&payload);
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        Ok(out)
    }

    /// Replaces the cache with the snapshot's. On any error the session is left as it was (checks come first).
    /// The most bytes a snapshot of this session can take: every owner layer's K and V, plus the header (token ids,
    /// sampler, the caller's conversation) up to [`MAX_HEADER_BYTES`]. A reader bounds a file by it before reading.
    pub fn snapshot_max_bytes(&self) -> u64 {
        let caches: u64 = self.model.kv.layers.iter().flatten().map(|c| c.k.size_bytes() + c.v.size_bytes()).sum();
        (16 + DIGEST_BYTES) as u64 + MAX_HEADER_BYTES + caches
    }

    pub async fn restore(&mut self, bytes: &[u8]) -> Result<Restored> {
        let (header, payload) = parse(bytes)?;
        if header.fingerprint != self.fingerprint {
            return Err(bad(format!(
                "it was saved from another model or with other LoRA adapters (fingerprint {}, this session {})",
                header.fingerprint, self.fingerprint
            )));
        }
        let cache_type = format!("{:?}", self.model.kv.cache_type);
        if header.cache_type != cache_type {
            return Err(bad(format!("its KV cache is {}, this session's is {cache_type}", header.cache_type)));
        }
        let owners: Vec<_> =
            self.model.kv.layers.iter().enumerate().filter_map(|(i, c)| c.as_ref().map(|c| (i, c))).collect();
        if owners.len() != header.layers.len() {
            return Err(bad(format!("it holds {} cache layers, this model has {}", header.layers.len(), owners.len())));
        }
        let mut offset = 0u64;
        for ((index, cache), entry) in owners.iter().zip(&header.layers) {
            let mut differs = Vec::new();
            if *index != entry.index {
                differs.push(format!("its next cache belongs to layer {}, here to layer {index}", entry.index));
            }
            if cache.capacity != entry.capacity {
                differs.push(format!(
                    "layer {index}'s ring holds {} positions in it and {} here (use the --ctx it was saved with)",
                    entry.capacity, cache.capacity
                ));
            }
            for (what, saved, here) in
                [("K", entry.k_bytes, cache.k.size_bytes()), ("V", entry.v_bytes, cache.v.size_bytes())]
            {
                if saved != here {
                    differs.push(format!("layer {index}'s {what} cache is {saved} bytes in it and {here} here"));
                }
            }
            if !differs.is_empty() {
                return Err(bad(differs.join("; ")));
            }
            offset += entry.k_bytes + entry.v_bytes;
        }
        if offset != payload.len() as u64 {
            return Err(bad(format!("its payload is {} bytes, the header describes {offset}", payload.len())));
        }
        if header.cached.len() as u64 > self.n_ctx() as u64 {
            return Err(bad(format!("it holds {} positions, this cache {}", header.cached.len(), self.n_ctx())));
        }
        let vocab = self.model.config.vocab;
        if let Some(&id) = header.cached.iter().find(|&&id| id >= vocab) {
            return Err(bad(format!("it caches token id {id}, outside this model's vocabulary of {vocab}")));
        }
        header.sampler.config.validate().map_err(|e| bad(format!("its sampler settings are invalid: {e}")))?;
        let queue = self.model.context().queue();
        let mut at = 0usize;
        for ((_, cache), entry) in owners.iter().zip(&header.layers) {
            let (k_end, v_end) = (at + entry.k_bytes as usize, at + (entry.k_bytes + entry.v_bytes) as usize);
            queue.write_buffer(cache.k.raw(), 0, &payload[at..k_end]);
            queue.write_buffer(cache.v.raw(), 0, &payload[k_end..v_end]);
            at = v_end;
        }
        self.model.kv.next_pos = header.cached.len() as u32;
        self.cached = header.cached;
        Ok(Restored { sampler: header.sampler, app: header.app })
    }
}

fn parse(bytes: &[u8]) -> Result<(Header, &[u8])> {
    if bytes.len() < 16 + DIGEST_BYTES || &bytes[..8] != MAGIC {
        return Err(bad("it is not a ferrogem session snapshot (bad magic or too short)".into()));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(bad(format!("it is format version {version}; this build reads version {VERSION}")));
    }
    let (body, digest) = bytes.split_at(bytes.len() - DIGEST_BYTES);
    if Sha256::digest(body).as_slice() != digest {
        return Err(bad("its checksum does not match (the file is truncated or was modified)".into()));
    }
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
    let header_bytes =
        body.get(16..16 + header_len).ok_or_else(|| bad(format!("its header of {header_len} bytes is cut short")))?;
    let header: Header =
        serde_json::from_slice(header_bytes).map_err(|e| bad(format!("its header is malformed: {e}")))?;
    Ok((header, &body[16 + header_len..]))
}

fn bad(reason: String) -> Error {
    Error::BadSnapshot { reason }
}
