//! Choosing the next token from a Gemma-sized logit row (262,144 entries), once per decoded token on the host:
//! the argmax, Ollama's default chain (temperature 0.8, top-k 40, top-p 0.9), and that chain with a repetition
//! penalty over the last 64 tokens. Logits are seeded pseudo-random values, the same on every run.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ferrogem::sampling::{Sampler, SamplerConfig, SplitMix64};
use std::hint::black_box;

/// Gemma 3 and Gemma 4 vocabulary size.
const VOCAB: usize = 262_144;
const RECENT_TOKENS: usize = 64;

/// Logits spread like a real row: most near zero, a few standing out (splitmix64 from a fixed seed).
fn logits() -> Vec<f32> {
    let mut rng = SplitMix64(0x7361_6d70_6c69_6e67); // "sampling"
    (0..VOCAB)
        .map(|_| {
            let unit = (rng.next_u64() >> 11) as f32 / (1u64 << 53) as f32;
            8.0 * unit.powi(8) - 2.0
        })
        .collect()
}

fn sampling(c: &mut Criterion) {
    let logits = logits();
    let recent: Vec<u32> = (0..RECENT_TOKENS as u32).map(|i| i * 4099 % VOCAB as u32).collect();
    let penalized = SamplerConfig { repeat_penalty: 1.1, ..SamplerConfig::default() };
    let configs =
        [("greedy", SamplerConfig::greedy()), ("default", SamplerConfig::default()), ("repeat_penalty", penalized)];
    let mut group = c.benchmark_group("sampling");
    group.throughput(Throughput::Elements(VOCAB as u64));
    for (name, config) in configs {
        let mut sampler = Sampler::new(config).expect("valid sampler settings");
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| sampler.sample(black_box(&logits), black_box(&recent)))
        });
    }
    group.finish();
}

criterion_group!(benches, sampling);
criterion_main!(benches);
