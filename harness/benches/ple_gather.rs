//! The per-layer-embedding row gather that runs on the host for every forward call (`Ple::upload_rows`): read
//! each token's `[L·P]` row of `per_layer_token_embd` from the byte source and queue its upload. Timed for one
//! decode token and for a 64-token chunk on the built-in tiny Gemma 4 (the only PLE model in the repository). The
//! queue is drained outside the timed part, so wgpu's staging memory stays bounded.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ferrogem::gguf::GgufFile;
use ferrogem::gpu::{Context, ContextOptions};
use ferrogem::models::TextConfig;
use ferrogem::models::gemma::Ple;
use ferrogem::source::MmapSource;
use std::time::{Duration, Instant};

/// Uploads between queue drains.
const UPLOADS_PER_DRAIN: u64 = 256;

fn ple_gather(c: &mut Criterion) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../golden/fixtures/tiny-gemma4-f32.gguf");
    let source = MmapSource::open(&path).expect("open the tiny Gemma 4 fixture");
    let gguf = GgufFile::read(&source).expect("parse the tiny Gemma 4 fixture");
    let cfg = TextConfig::from_gguf(&gguf).expect("Gemma 4 config");
    let ctx = Context::new_blocking(ContextOptions::from_env()).unwrap_or_else(|e| {
        panic!("the PLE gather bench needs a GPU adapter (lavapipe will do; see ci/setup.sh): {e}")
    });
    let max_chunk = 64;
    let ple = Ple::new(&ctx, &gguf, &cfg, max_chunk).expect("PLE tables");
    let table = gguf.require_tensor("per_layer_token_embd.weight").expect("PLE table");
    let row_bytes = table.size_bytes() / cfg.vocab as u64;
    let mut group = c.benchmark_group("ple_gather");
    for n_tokens in [1u32, max_chunk] {
        // Spread over the vocabulary so rows are not all adjacent.
        let tokens: Vec<u32> = (0..n_tokens).map(|i| (i * 7919 + 13) % cfg.vocab).collect();
        group.throughput(Throughput::Bytes(n_tokens as u64 * row_bytes));
        group.bench_with_input(BenchmarkId::from_parameter(n_tokens), &tokens, |b, tokens| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for i in 0..iters {
                    let start = Instant::now();
                    ple.upload_rows(&ctx, &source, tokens, ple.chunk()).expect("upload_rows");
                    timed += start.elapsed();
                    if i % UPLOADS_PER_DRAIN == UPLOADS_PER_DRAIN - 1 {
                        ctx.wait_idle().expect("drain the queue");
                    }
                }
                ctx.wait_idle().expect("drain the queue");
                timed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, ple_gather);
criterion_main!(benches);
