//! Tokenizer construction and encoding: Gemma 4 BPE on the tiny Gemma 4 fixture (always), and Gemma 3
//! SentencePiece with the full 262,144-token vocabulary on the real Gemma 3 270M when `FERROGEM_GEMMA3_270M`
//! names it (`bash ci/fetch-models.sh`). The text mixes prose, code and a rendered chat turn with special tokens.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ferrogem::gguf::GgufFile;
use ferrogem::source::MmapSource;
use ferrogem::tokenizer::{Special, Tokenizer};
use std::hint::black_box;
use std::path::PathBuf;

const PROSE: &str = "Gemma runs on the GPU through hand-written WGSL kernels. Decode reads every weight once per \
    token, so its speed is bounded by memory bandwidth; prefill is bounded by arithmetic. Numbers like 3.14159, \
    2,048 and 1e-6 and words like naïve, café and Straße exercise the byte fallback and the digit splits. ";
const CODE: &str =
    "fn main() {\n    let xs: Vec<u32> = (0..16).map(|i| i * i).collect();\n    println!(\"{xs:?}\");\n}\n";
const CHAT: &str =
    "<start_of_turn>user\nSummarize the text above in two sentences.<end_of_turn>\n<start_of_turn>model\n";

fn models() -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../golden/fixtures/tiny-gemma4-f32.gguf")];
    paths.extend(std::env::var_os("FERROGEM_GEMMA3_270M").map(PathBuf::from));
    paths
}

fn tokenizer(c: &mut Criterion) {
    let text = format!("{}{CODE}{CHAT}", PROSE.repeat(4));
    for path in models() {
        let name = path.file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
        let source = MmapSource::open(&path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        let gguf = GgufFile::read(&source).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let tokenizer = Tokenizer::from_gguf(&gguf).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut group = c.benchmark_group("tokenizer");
        group.bench_function(BenchmarkId::new("from_gguf", &name), |b| {
            b.iter(|| Tokenizer::from_gguf(black_box(&gguf)))
        });
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::new("encode", &name), &text, |b, text| {
            b.iter(|| tokenizer.encode(black_box(text), Special::Parse))
        });
        group.finish();
    }
}

criterion_group!(benches, tokenizer);
criterion_main!(benches);
