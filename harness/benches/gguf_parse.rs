//! Parsing a GGUF's header, metadata and tensor infos (what every model load and `inspect` does first): the real
//! Gemma 3 270M when `FERROGEM_GEMMA3_270M` names it (`bash ci/fetch-models.sh` prints the path), else the tiny
//! Gemma 4 fixture. The file is memory-mapped and read once before timing, so this times the parser, not the disk.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ferrogem::gguf::GgufFile;
use ferrogem::source::MmapSource;
use std::hint::black_box;
use std::path::PathBuf;

fn model_path() -> PathBuf {
    match std::env::var_os("FERROGEM_GEMMA3_270M") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../golden/fixtures/tiny-gemma4-f32.gguf"),
    }
}

fn gguf_parse(c: &mut Criterion) {
    let path = model_path();
    let source = MmapSource::open(&path).unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let header_bytes =
        GgufFile::read(&source).unwrap_or_else(|e| panic!("{}: {e}", path.display())).data_offset_bytes();
    let name = path.file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
    let mut group = c.benchmark_group("gguf_parse");
    group.throughput(Throughput::Bytes(header_bytes));
    group.bench_function(name, |b| b.iter(|| GgufFile::read(black_box(&source)).map(|g| g.tensors().len())));
    group.finish();
}

criterion_group!(benches, gguf_parse);
criterion_main!(benches);
