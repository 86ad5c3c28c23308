//! Issue 15: a corpus of damaged and hostile session snapshots (what `/load` in chat and `restoreSession` in the
//! browser read). Most are re-checksummed after the edit, so that the checks behind the digest, not the digest, must
//! refuse them. Each is refused with `Error::BadSnapshot` naming what is wrong, none panics, and the session is as
//! it was: afterwards it generates exactly what it generated before.
//! GPU tests: no adapter fails them (CI has lavapipe).

use ferrogem::Error;
use ferrogem::gpu::{Context, ContextOptions};
use ferrogem::models::ModelFile;
use ferrogem::models::gemma::GemmaOptions;
use ferrogem::sampling::{Sampler, SamplerConfig};
use ferrogem::session::{GenerateParams, Observer, Session};
use ferrogem::tokenizer::Tokenizer;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::Path;

const MAGIC: &[u8; 8] = b"FGSNAP\0\0";
const DIGEST_BYTES: usize = 32;

struct Quiet;
impl Observer for Quiet {}

/// A snapshot taken apart: its header as JSON and its payload (the KV bytes).
struct Parts {
    header: Value,
    payload: Vec<u8>,
}

fn split(bytes: &[u8]) -> Parts {
    let header_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&bytes[16..16 + header_len]).unwrap();
    Parts { header, payload: bytes[16 + header_len..bytes.len() - DIGEST_BYTES].to_vec() }
}

/// The file layout of `session/snapshot.rs` with a correct digest over whatever the parts say.
fn assemble(magic: &[u8], version: u32, header: &[u8], header_len: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = magic.to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(payload);
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

fn with_header(parts: &Parts, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut header = parts.header.clone();
    edit(&mut header);
    let text = serde_json::to_vec(&header).unwrap();
    assemble(MAGIC, 1, &text, text.len() as u32, &parts.payload)
}

fn with_payload(parts: &Parts, payload: &[u8]) -> Vec<u8> {
    let text = serde_json::to_vec(&parts.header).unwrap();
    assemble(MAGIC, 1, &text, text.len() as u32, payload)
}

/// Each case: its name, the bytes, and a fragment the refusal must contain.
fn corpus(valid: &[u8], vocab: u32, n_ctx: u32) -> Vec<(String, Vec<u8>, &'static str)> {
    let parts = split(valid);
    let text = serde_json::to_vec(&parts.header).unwrap();
    let mut cases: Vec<(String, Vec<u8>, &'static str)> = vec![
        ("empty".into(), Vec::new(), "not a ferrogem session snapshot"),
        ("the magic alone".into(), MAGIC.to_vec(), "not a ferrogem session snapshot"),
        ("another magic".into(), assemble(b"GGUF\0\0\0\0", 1, &text, text.len() as u32, &parts.payload), "magic"),
        ("version 2".into(), assemble(MAGIC, 2, &text, text.len() as u32, &parts.payload), "version 2"),
        ("header length past the end".into(), assemble(MAGIC, 1, &text, u32::MAX, &parts.payload), "cut short"),
        ("header not JSON".into(), assemble(MAGIC, 1, b"{not json", 9, &parts.payload), "malformed"),
        ("header without fields".into(), assemble(MAGIC, 1, b"{}", 2, &parts.payload), "malformed"),
        (
            "a token id outside the vocabulary".into(),
            with_header(&parts, |h| h["cached"][0] = json!(vocab)),
            "vocabulary",
        ),
        (
            "more positions than the cache".into(),
            with_header(&parts, |h| h["cached"] = json!(vec![2; n_ctx as usize + 1])),
            "positions",
        ),
        ("top_p 5".into(), with_header(&parts, |h| h["sampler"]["config"]["top_p"] = json!(5.0)), "top_p"),
        ("min_p 7".into(), with_header(&parts, |h| h["sampler"]["config"]["min_p"] = json!(7.0)), "min_p"),
        (
            "temperature -1".into(),
            with_header(&parts, |h| h["sampler"]["config"]["temperature"] = json!(-1.0)),
            "temperature",
        ),
        (
            "repeat penalty -3".into(),
            with_header(&parts, |h| h["sampler"]["config"]["repeat_penalty"] = json!(-3.0)),
            "repeat_penalty",
        ),
        ("a negative seed".into(), with_header(&parts, |h| h["sampler"]["config"]["seed"] = json!(-1)), "malformed"),
        ("another model".into(), with_header(&parts, |h| h["fingerprint"] = json!("0".repeat(64))), "another model"),
        ("another cache type".into(), with_header(&parts, |h| h["cache_type"] = json!("F16")), "KV cache is F16"),
        (
            "one cache layer fewer".into(),
            with_header(&parts, |h| {
                h["layers"].as_array_mut().unwrap().pop();
            }),
            "cache layers",
        ),
        (
            "a ring one position longer".into(),
            with_header(&parts, |h| h["layers"][0]["capacity"] = json!(n_ctx + 1)),
            "ring holds",
        ),
        ("K bytes of u64::MAX".into(), with_header(&parts, |h| h["layers"][0]["k_bytes"] = json!(u64::MAX)), "K cache"),
        ("layers out of order".into(), with_header(&parts, |h| h["layers"][0]["index"] = json!(1_000_000)), "layer"),
        ("the payload one byte short".into(), with_payload(&parts, &parts.payload[1..]), "payload"),
        ("the payload one byte long".into(), with_payload(&parts, &[&parts.payload[..], &[0]].concat()), "payload"),
        ("an app nested past serde's limit".into(), with_header(&parts, |h| h["app"] = nested(200)), "malformed"),
    ];
    // Unedited digests: a cut at each of a spread of lengths, and one flipped bit at a spread of offsets.
    for at in (0..valid.len()).step_by(valid.len() / 16 + 1) {
        let short = if at < 16 + DIGEST_BYTES { "too short" } else { "checksum" };
        cases.push((format!("truncated to {at} bytes"), valid[..at].to_vec(), short));
        let mut flipped = valid.to_vec();
        flipped[at] ^= 0x10;
        let refusal = if at < MAGIC.len() {
            "magic"
        } else if at < 12 {
            "version"
        } else {
            "checksum"
        };
        cases.push((format!("bit 4 of byte {at} flipped"), flipped, refusal));
    }
    cases
}

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(0), |inner, _| json!([inner]))
}

#[test]
fn gpu_every_bad_snapshot_is_refused_and_the_session_is_untouched() {
    let ctx = Context::new_blocking(ContextOptions::from_env()).expect("GPU test needs an adapter");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../golden/fixtures/tiny-gemma4-f32.gguf");
    let model = ModelFile::open(path.to_str().unwrap()).unwrap();
    let options = GemmaOptions { max_chunk: 16, n_ctx: 64, ..GemmaOptions::default() };
    let gemma = model.load(&ctx, options, &mut |_| {}).unwrap();
    let tokenizer = Tokenizer::from_gguf(&model.gguf).unwrap();
    let fingerprint = ferrogem::session::snapshot::fingerprint(&model.gguf, &model.adapters);
    let mut session = Session::new(gemma, tokenizer, fingerprint);
    let (vocab, n_ctx) = (session.model().config.vocab, session.n_ctx());

    let prompt: Vec<u32> = vec![2, 10, 20, 30, 40];
    let params = GenerateParams { max_tokens: 6, stop_strings: Vec::new(), stop_tokens: Vec::new() };
    let mut sampler = Sampler::new(SamplerConfig::greedy()).unwrap();
    let first = pollster::block_on(session.generate(&prompt, &mut sampler, &params, &mut Quiet)).unwrap();
    let valid = pollster::block_on(session.snapshot(sampler.state(), json!({"turns": 1}))).unwrap();
    let cached = session.cached().to_vec();
    let live_bytes = ctx.memory().live_bytes;

    // The corpus's tools are right: the valid snapshot taken apart and put together again (its header's keys in
    // another order) is restored, so each case below is refused for its own edit.
    let rebuilt = with_header(&split(&valid), |_| {});
    if let Err(e) = pollster::block_on(session.restore(&rebuilt)) {
        panic!("the valid snapshot, rebuilt, was refused: {e}");
    }

    let cases = corpus(&valid, vocab, n_ctx);
    let mut wrong = Vec::new();
    for (name, bytes, expected) in &cases {
        match pollster::block_on(session.restore(bytes)) {
            Ok(_) => wrong.push(format!("{name}: restored")),
            Err(Error::BadSnapshot { reason }) if reason.contains(expected) => {}
            Err(e) => wrong.push(format!("{name}: {e} (expected a BadSnapshot saying `{expected}`)")),
        }
        if session.cached() != cached {
            wrong.push(format!("{name}: the cached ids changed"));
        }
    }
    assert!(wrong.is_empty(), "{} of {} snapshots:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
    assert_eq!(ctx.memory().live_bytes, live_bytes, "refusals allocated or freed GPU memory");

    // The cache is the one the refusals found: the same prompt continues with the same tokens, all of it reused.
    let mut sampler = Sampler::new(SamplerConfig::greedy()).unwrap();
    let again = pollster::block_on(session.generate(&prompt, &mut sampler, &params, &mut Quiet)).unwrap();
    assert_eq!(again.tokens, first.tokens);
    let restored = pollster::block_on(session.restore(&valid)).unwrap();
    assert_eq!(restored.app["turns"], 1);
    assert_eq!(session.cached(), cached);
    eprintln!("{} bad snapshots refused", cases.len());
}
