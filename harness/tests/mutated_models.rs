//! The mutation corpus (issue 15): golden GGUFs with one field changed at a time, through every consumer of a model
//! file in turn (the reader `inspect` prints from, the model config, the tokenizer, the memory plan, the LoRA
//! adapter reader, then a GPU load and logits), under a memory cap and a per-file time limit.
//!
//! Mutations, each deterministic: the header's tensor and key counts; every integer metadata value (0, ±1, 2^31 and
//! the type's maximum); every array's length (0, ±1, 2^32, u64::MAX); every string length (huge); every tensor's
//! dimension count, first dimension, type (to one of another size, and an unknown id) and data offset (the previous
//! tensor's, misaligned, past the end). A structural change (counts, lengths, tensor infos), a metadata value that
//! contradicts the tensors' shapes and a special token id outside the vocabulary must be refused with an error;
//! other metadata values may load if they still describe a model. Nothing may panic, allocate past the cap or
//! hang. The held-out corpus of the issue is larger; this one runs on every CI run.
//!
//! One test in its own binary: the allocator counts the whole process.

use ferrogem::gguf::GgufFile;
use ferrogem::gpu::{Context, ContextOptions};
use ferrogem::models::gemma::plan::{MemoryPlan, PlanLimits};
use ferrogem::models::gemma::{GemmaOptions, LogitRows};
use ferrogem::models::{ModelFile, TextConfig};
use ferrogem::source::MemSource;
use ferrogem::tokenizer::{Special, Tokenizer};
use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Live heap bytes may grow by at most this much while one mutated file goes through every consumer; the tiny
/// models need a few MB. Past `HARD_CAP_BYTES` an allocation fails, which aborts the test at once.
const CAP_BYTES: usize = 256 << 20;
const HARD_CAP_BYTES: usize = 2 << 30;
/// One mutated file through every consumer; a tiny model loads and runs in well under a second.
const TIME_LIMIT: Duration = Duration::from_secs(120);

struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        if live > HARD_CAP_BYTES {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            return std::ptr::null_mut();
        }
        PEAK.fetch_max(live, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn fixture(name: &str) -> Vec<u8> {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../golden").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Where the fields of a GGUF (v2/v3) header are, found by walking it.
#[derive(Default)]
struct Layout_ {
    /// (key, value type, byte offset of the value, its width) of every scalar integer.
    integers: Vec<(String, u32, usize, usize)>,
    /// (key, byte offset of the element count) of every array.
    arrays: Vec<(String, usize)>,
    /// Byte offsets of string lengths (keys, string values, tensor names).
    strings: Vec<usize>,
    tensors: Vec<TensorAt>,
}

struct TensorAt {
    name: String,
    n_dims_at: usize,
    dims: Vec<u64>,
    type_id: u32,
    type_at: usize,
    offset: u64,
    offset_at: usize,
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        s
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }
    fn string(&mut self, strings: &mut Vec<usize>) -> String {
        strings.push(self.at);
        let n = self.u64() as usize;
        String::from_utf8_lossy(self.take(n)).into_owned()
    }
}

/// Bytes of a scalar of GGUF value type `t` (0 for strings and arrays).
fn scalar_width(t: u32) -> usize {
    match t {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        _ => 0,
    }
}

fn walk(bytes: &[u8]) -> Layout_ {
    let mut r = Reader { bytes, at: 8 };
    let (n_tensors, n_kv) = (r.u64(), r.u64());
    let mut layout = Layout_::default();
    for _ in 0..n_kv {
        let key = r.string(&mut layout.strings);
        let t = r.u32();
        match t {
            8 => {
                r.string(&mut layout.strings);
            }
            9 => {
                let elem = r.u32();
                layout.arrays.push((key, r.at));
                let count = r.u64();
                for _ in 0..count {
                    match elem {
                        8 => drop(r.string(&mut Vec::new())),
                        e => drop(r.take(scalar_width(e))),
                    }
                }
            }
            t => {
                let width = scalar_width(t);
                if ![6, 7, 12].contains(&t) {
                    layout.integers.push((key, t, r.at, width));
                }
                r.take(width);
            }
        }
    }
    for _ in 0..n_tensors {
        let name = r.string(&mut layout.strings);
        let n_dims_at = r.at;
        let n_dims = r.u32();
        let dims = (0..n_dims).map(|_| r.u64()).collect();
        let type_at = r.at;
        let type_id = r.u32();
        let offset_at = r.at;
        let offset = r.u64();
        layout.tensors.push(TensorAt { name, n_dims_at, dims, type_id, type_at, offset, offset_at });
    }
    layout
}

/// Metadata whose every change contradicts the tensors' shapes.
const SHAPE_KEYS: [&str; 9] = [
    ".block_count",
    ".embedding_length",
    ".attention.head_count",
    ".attention.head_count_kv",
    ".attention.key_length",
    ".attention.key_length_swa",
    ".attention.value_length",
    ".attention.value_length_swa",
    ".embedding_length_per_layer_input",
];

struct Mutation {
    name: String,
    at: usize,
    value: Vec<u8>,
    /// A structural change: accepting the file is a defect.
    must_refuse: bool,
}

fn mutations(file: &str, bytes: &[u8]) -> Vec<Mutation> {
    let layout = walk(bytes);
    let mut out = Vec::new();
    let mut push = |name: String, at: usize, value: Vec<u8>, must_refuse: bool| {
        out.push(Mutation { name: format!("{file}: {name}"), at, value, must_refuse })
    };
    for (what, at) in [("tensor count", 8), ("metadata key count", 16)] {
        let n = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        for v in [0, n - 1, n + 1, 1 << 31, u64::MAX] {
            push(format!("{what} {n} -> {v}"), at, v.to_le_bytes().to_vec(), true);
        }
    }
    for (key, t, at, width) in &layout.integers {
        let old = bytes[*at..*at + width].iter().rev().fold(0u64, |v, b| v << 8 | *b as u64);
        let max = if *width == 8 { u64::MAX } else { (1u64 << (8 * width)) - 1 };
        let mut values = vec![0, old.wrapping_sub(1) & max, old.wrapping_add(1) & max, max];
        if *width >= 4 {
            values.push(1 << 31);
        }
        values.dedup();
        for v in values.into_iter().filter(|&v| v != old) {
            let value = v.to_le_bytes()[..*width].to_vec();
            let breaks_shapes = SHAPE_KEYS.iter().any(|k| key.ends_with(k));
            let names_no_token = key.ends_with("_token_id") && v >= 1 << 31;
            push(format!("{key} (type {t}) {old} -> {v}"), *at, value, breaks_shapes || names_no_token);
        }
    }
    for (key, at) in &layout.arrays {
        let n = u64::from_le_bytes(bytes[*at..*at + 8].try_into().unwrap());
        for v in [0, n.wrapping_sub(1), n + 1, 1 << 32, u64::MAX] {
            // A shorter array of fixed-size values leaves bytes that parse as the next key: not always an error
            // there, so only the string arrays' and the growing counts' results are judged.
            push(format!("array {key} length {n} -> {v}"), *at, v.to_le_bytes().to_vec(), v > n);
        }
    }
    for (i, at) in layout.strings.iter().enumerate().step_by(7) {
        push(format!("string #{i} length -> 2^40"), *at, (1u64 << 40).to_le_bytes().to_vec(), true);
    }
    let sizes: [(u32, u64, u64); 7] =
        [(0, 1, 4), (1, 1, 2), (2, 32, 18), (8, 32, 34), (12, 256, 144), (14, 256, 210), (99, 1, 1)];
    // Tensor data is padded to the alignment (32 in these files): a type swap that keeps the padded size keeps
    // the layout (F32 → F16 on a one-value scale, or F16 for BF16), and llama.cpp cannot tell either.
    let size_of = |type_id: u32, elems: u64| {
        sizes
            .iter()
            .find(|s| s.0 == type_id)
            .map(|&(_, block, bytes)| (elems.div_ceil(block) * bytes).next_multiple_of(32))
    };
    for (i, t) in layout.tensors.iter().enumerate() {
        let elems: u64 = t.dims.iter().product();
        push(format!("tensor {} n_dims -> 0", t.name), t.n_dims_at, 0u32.to_le_bytes().to_vec(), true);
        let dims0_at = t.n_dims_at + 4;
        push(format!("tensor {} dims[0] ×2", t.name), dims0_at, (t.dims[0] * 2).to_le_bytes().to_vec(), true);
        push(format!("tensor {} dims[0] -> 2^40", t.name), dims0_at, (1u64 << 40).to_le_bytes().to_vec(), true);
        // A type of another padded size.
        let old_size = size_of(t.type_id, elems);
        for &(new_type, _, _) in &sizes {
            let new_size = size_of(new_type, elems);
            if new_type != t.type_id && (new_type == 99 || new_size != old_size) {
                let value = new_type.to_le_bytes().to_vec();
                push(format!("tensor {} type {} -> {new_type}", t.name, t.type_id), t.type_at, value, true);
                break;
            }
        }
        push(format!("tensor {} type -> 99", t.name), t.type_at, 99u32.to_le_bytes().to_vec(), true);
        if i > 0 {
            let prev = layout.tensors[i - 1].offset;
            push(
                format!("tensor {} offset -> the previous tensor's", t.name),
                t.offset_at,
                prev.to_le_bytes().to_vec(),
                true,
            );
        }
        push(format!("tensor {} offset +1", t.name), t.offset_at, (t.offset + 1).to_le_bytes().to_vec(), true);
        push(format!("tensor {} offset -> 2^60", t.name), t.offset_at, (1u64 << 60).to_le_bytes().to_vec(), true);
    }
    out
}

/// What became of one file: refused (the first consumer's error), or accepted by every consumer.
enum Outcome {
    Refused(String),
    Accepted,
}

/// Every consumer in turn, as `inspect`, `check model` and `logits` meet the file.
fn consume(ctx: &Context, bytes: Vec<u8>) -> Outcome {
    let source = Arc::new(MemSource::from(bytes));
    let gguf = match GgufFile::read(source.as_ref()) {
        Ok(g) => g,
        Err(e) => return Outcome::Refused(format!("read: {e}")),
    };
    for (key, value) in gguf.metadata() {
        let _ = (key, value.to_string());
    }
    if gguf.get_str("general.type").is_ok_and(|t| t == "adapter") {
        return match ferrogem::lora::from_gguf(&gguf, source.as_ref()) {
            Ok(_) => Outcome::Accepted,
            Err(e) => Outcome::Refused(format!("adapter: {e}")),
        };
    }
    let cfg = match TextConfig::from_gguf(&gguf) {
        Ok(c) => c,
        Err(e) => return Outcome::Refused(format!("config: {e}")),
    };
    match Tokenizer::from_gguf(&gguf) {
        Ok(t) => drop(t.encode("The capital of France", Special::Parse)),
        Err(e) => return Outcome::Refused(format!("tokenizer: {e}")),
    }
    let limits = PlanLimits::from_caps(ctx.caps());
    if let Err(e) = MemoryPlan::new(&gguf, &cfg, &GemmaOptions::default(), limits) {
        return Outcome::Refused(format!("plan: {e}"));
    }
    let model = match ModelFile::from_source("mutated", PathBuf::from("mutated.gguf"), source) {
        Ok(m) => m,
        Err(e) => return Outcome::Refused(format!("open: {e}")),
    };
    let mut gemma = match model.load(ctx, GemmaOptions::default(), &mut |_| {}) {
        Ok(g) => g,
        Err(e) => return Outcome::Refused(format!("load: {e}")),
    };
    match gemma.forward_blocking(&[2, 9, 4], 0, LogitRows::All) {
        Ok(_) => Outcome::Accepted,
        Err(e) => Outcome::Refused(format!("logits: {e}")),
    }
}

#[test]
fn every_mutation_is_refused_or_runs_within_the_memory_cap() {
    let ctx = Context::new_blocking(ContextOptions::from_env()).expect("the mutation corpus needs a GPU adapter");
    let started = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();
    let watch = Arc::clone(&started);
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(5));
            let since = epoch.elapsed().as_secs().saturating_sub(watch.load(Ordering::Relaxed));
            if since > TIME_LIMIT.as_secs() {
                eprintln!("a mutated file took over {TIME_LIMIT:?}: see the last `mutation:` line above");
                std::process::abort();
            }
        }
    });

    let files = ["fixtures/tiny-gemma4-Q4_K_M.gguf", "fixtures/tiny-gemma3-Q8_0.gguf", "lora/tiny-gemma4-lora-a.gguf"];
    let (mut refused, mut accepted, mut failures) = (0, 0, Vec::new());
    for file in files {
        let original = fixture(file);
        assert!(matches!(consume(&ctx, original.clone()), Outcome::Accepted), "{file} itself must load");
        for m in mutations(file, &original) {
            let mut bytes = original.clone();
            bytes[m.at..m.at + m.value.len()].copy_from_slice(&m.value);
            eprintln!("mutation: {}", m.name);
            started.store(epoch.elapsed().as_secs(), Ordering::Relaxed);
            let base = LIVE.load(Ordering::Relaxed);
            PEAK.store(base, Ordering::Relaxed);
            let outcome = catch_unwind(AssertUnwindSafe(|| consume(&ctx, bytes)));
            let grew = PEAK.load(Ordering::Relaxed).saturating_sub(base);
            match outcome {
                Err(_) => failures.push(format!("{}: panicked", m.name)),
                Ok(_) if grew > CAP_BYTES => failures.push(format!("{}: {grew} bytes over the cap", m.name)),
                Ok(Outcome::Accepted) if m.must_refuse => failures.push(format!("{}: accepted", m.name)),
                Ok(Outcome::Accepted) => accepted += 1,
                Ok(Outcome::Refused(reason)) => {
                    assert!(!reason.trim().is_empty(), "{}: an empty error", m.name);
                    refused += 1;
                }
            }
        }
    }
    eprintln!("mutation corpus: {refused} refused, {accepted} accepted, {} failures", failures.len());
    assert!(refused + accepted > 500, "the corpus ran only {} mutations", refused + accepted);
    assert!(failures.is_empty(), "{} of the mutated files failed:\n{}", failures.len(), failures.join("\n"));
}
