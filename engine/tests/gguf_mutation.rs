//! Mutation test: thousands of deterministic corruptions of the golden GGUFs (truncations, bit flips, byte
//! overwrites, length bombs, offset changes), mostly in the header and metadata. Each must give `Ok` or a
//! `GgufError`, never a panic; on `Ok`, every tensor's bytes and every accessor are read too. Mutations that
//! must fail (a huge length, a truncation into tensor data, a misaligned offset) are checked to fail.
//!
//! The PRNG is seeded from the test name, so a failure reproduces; failures print the file and the mutation.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use ferrogem::gguf::{GgufError, GgufFile, Value, ValueType};
use ferrogem::sampling::SplitMix64;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../golden/fixtures")
}

/// Picks positions and values: the project's SplitMix64, seeded from the test's name.
struct Rng(SplitMix64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        (self.0.next_u64() % n as u64) as usize
    }
}

enum Edit {
    Truncate(usize),
    FlipBit { at: usize, bit: u8 },
    Fill { at: usize, len: usize, byte: u8 },
    Put { at: usize, bytes: Vec<u8> },
}

struct Mutation {
    edit: Edit,
    /// What the edit changes, e.g. "tensor_infos[3].offset = 1".
    what: String,
    must_fail: bool,
}

impl fmt::Display for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.edit {
            Edit::Truncate(len) => write!(f, "truncate to {len} bytes")?,
            Edit::FlipBit { at, bit } => write!(f, "flip bit {bit} of byte {at}")?,
            Edit::Fill { at, len, byte } => write!(f, "fill {len} bytes at {at} with {byte:#04x}")?,
            Edit::Put { at, bytes } => write!(f, "write {bytes:02x?} at {at}")?,
        }
        write!(f, " ({}{})", self.what, if self.must_fail { ", must fail" } else { "" })
    }
}

fn put_u64(at: usize, value: u64, what: String, must_fail: bool) -> Mutation {
    Mutation {
        edit: Edit::Put { at, bytes: value.to_le_bytes().to_vec() },
        what: format!("{what} = {value}"),
        must_fail,
    }
}

fn put_u32(at: usize, value: u32, what: String, must_fail: bool) -> Mutation {
    Mutation {
        edit: Edit::Put { at, bytes: value.to_le_bytes().to_vec() },
        what: format!("{what} = {value}"),
        must_fail,
    }
}

/// Position of `text` preceded by its u64 length, searching from `from`.
fn length_field(bytes: &[u8], from: usize, text: &str) -> usize {
    let mut needle = (text.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(text.as_bytes());
    from + bytes[from..].windows(needle.len()).position(|w| w == needle).expect("field of the parsed file")
}

/// Length bombs and type changes at the real positions of every header field, metadata entry and a sample of
/// tensor infos, found by searching for the strings the parsed file says are there.
fn structural_mutations(bytes: &[u8], file: &GgufFile, rng: &mut Rng) -> Vec<Mutation> {
    let file_len = bytes.len() as u64;
    let huge = [1 << 32, 1 << 40, 1 << 63, u64::MAX, file_len];
    let mut out = Vec::new();
    for (at, name, count) in
        [(8, "tensor_count", file.tensors().len()), (16, "metadata_kv_count", file.metadata().len())]
    {
        let count = count as u64;
        for value in [0, count - 1, count + 1] {
            out.push(put_u64(at, value, format!("header.{name}"), false));
        }
        for value in huge {
            out.push(put_u64(at, value, format!("header.{name}"), true));
        }
    }
    let mut pos = 24;
    for (key, value) in file.metadata() {
        let key_at = length_field(bytes, pos, key);
        let type_at = key_at + 8 + key.len();
        for len in huge {
            out.push(put_u64(key_at, len, format!("length of key `{key}`"), true));
        }
        for len in [0, key.len() as u64 + 1] {
            out.push(put_u64(key_at, len, format!("length of key `{key}`"), false));
        }
        for type_id in [0, 8, 9, 13, u32::MAX] {
            out.push(put_u32(type_at, type_id, format!("type of `{key}`"), type_id >= 13));
        }
        let value_at = type_at + 4;
        match value {
            Value::String(s) => {
                for len in huge {
                    out.push(put_u64(value_at, len, format!("length of `{key}`"), true));
                }
                out.push(put_u64(value_at, s.len() as u64 + 1, format!("length of `{key}`"), false));
            }
            Value::Array(array) => {
                out.push(put_u32(value_at, 99, format!("element type of `{key}`"), true));
                out.push(put_u32(value_at, ValueType::Array.to_u32(), format!("element type of `{key}`"), false));
                for count in huge {
                    out.push(put_u64(value_at + 4, count, format!("count of `{key}`"), true));
                }
                out.push(put_u64(value_at + 4, array.len() as u64 + 1, format!("count of `{key}`"), false));
                if array.elem_type() == ValueType::String && !array.is_empty() {
                    out.push(put_u64(value_at + 12, u64::MAX, format!("length of `{key}`[0]"), true));
                }
            }
            _ => {}
        }
        pos = value_at;
    }
    let tensors = file.tensors();
    let sample: Vec<usize> =
        [0, tensors.len() - 1].into_iter().chain((0..10).map(|_| rng.below(tensors.len()))).collect();
    for (index, info) in tensors.iter().enumerate() {
        let name_at = length_field(bytes, pos, info.name());
        pos = name_at;
        if !sample.contains(&index) {
            continue;
        }
        let field = |part: &str| format!("tensor_infos[{index}].{part}");
        let n_dims_at = name_at + 8 + info.name().len();
        let type_at = n_dims_at + 4 + 8 * info.dims().len();
        let offset_at = type_at + 4;
        out.push(put_u64(name_at, u64::MAX, field("name length"), true));
        for n_dims in [0, 5, u32::MAX] {
            out.push(put_u32(n_dims_at, n_dims, field("n_dims"), n_dims > 4));
        }
        for dim in [0, 1 << 40, u64::MAX] {
            out.push(put_u64(n_dims_at + 4, dim, field("ne[0]"), dim == u64::MAX));
        }
        for type_id in [0, 2, 31, 40, u32::MAX] {
            out.push(put_u32(type_at, type_id, field("type"), type_id > 30));
        }
        let relative = info.offset_bytes() - file.data_offset_bytes();
        for (offset, must_fail) in
            [(relative + 1, info.size_bytes() > 0), (0, false), (file_len, true), (u64::MAX, true)]
        {
            out.push(put_u64(offset_at, offset, field("offset"), must_fail));
        }
    }
    out
}

/// Truncations, bit flips and byte fills at random positions, mostly before the data section.
fn random_mutations(file: &GgufFile, file_len: usize, rng: &mut Rng) -> Vec<Mutation> {
    let header_len = file.data_offset_bytes() as usize;
    let data_end = file.tensors().iter().map(|t| t.offset_bytes() + t.size_bytes()).max().unwrap_or(0) as usize;
    let mut lengths: Vec<usize> = (0..=64).collect();
    lengths.extend((0..120).map(|_| rng.below(header_len + 64)));
    lengths.extend((0..20).map(|_| file_len - 1 - rng.below(file_len / 2)));
    let mut out: Vec<Mutation> = lengths
        .into_iter()
        .map(|len| Mutation { edit: Edit::Truncate(len), what: "truncation".into(), must_fail: len < data_end })
        .collect();
    for _ in 0..150 {
        let edit = Edit::FlipBit { at: rng.below(header_len), bit: rng.below(8) as u8 };
        out.push(Mutation { edit, what: "bit flip".into(), must_fail: false });
    }
    for _ in 0..100 {
        let byte = if rng.below(2) == 0 { 0x00 } else { 0xFF };
        let edit = Edit::Fill { at: rng.below(header_len - 8), len: 1 + rng.below(8), byte };
        out.push(Mutation { edit, what: "overwrite".into(), must_fail: false });
    }
    out
}

/// Parses, then reads every tensor and calls every accessor on every key; the error variant's name on failure.
fn exercise(bytes: &[u8]) -> Result<(), String> {
    let file = GgufFile::read(bytes).map_err(|err: GgufError| {
        let message = err.to_string();
        assert!(!message.is_empty());
        format!("{err:?}").split([' ', '{', '(']).next().unwrap_or_default().to_owned()
    })?;
    for info in file.tensors() {
        let tensor = info.bytes(bytes).expect("tensor ranges are checked at parse time");
        assert_eq!(tensor.len() as u64, info.size_bytes());
    }
    for (key, _) in file.metadata() {
        let _ = (file.get_u32(key), file.get_f32(key), file.get_bool(key), file.get_str(key));
        let _ = (file.get_array(key), file.get_str_array(key), file.get_bool_array(key));
        let _ = file.get_u32_per_layer(key, 6);
    }
    let _ = file.architecture();
    Ok(())
}

/// Applies each mutation to a copy of `original` (undoing it afterwards), collecting every panic and every
/// mutation that parsed although it must fail into `failures`, and counting outcomes in `tally`.
fn run(
    name: &str,
    original: &[u8],
    mutations: &[Mutation],
    failures: &mut Vec<String>,
    tally: &mut BTreeMap<String, usize>,
) {
    let mut bytes = original.to_vec();
    for mutation in mutations {
        let file_len = bytes.len();
        let (len, touched) = match &mutation.edit {
            Edit::Truncate(len) => (*len, 0..0),
            Edit::FlipBit { at, bit } => {
                bytes[*at] ^= 1 << bit;
                (file_len, *at..*at + 1)
            }
            Edit::Fill { at, len, byte } => {
                bytes[*at..*at + len].fill(*byte);
                (file_len, *at..*at + len)
            }
            Edit::Put { at, bytes: new } => {
                bytes[*at..*at + new.len()].copy_from_slice(new);
                (file_len, *at..*at + new.len())
            }
        };
        match catch_unwind(AssertUnwindSafe(|| exercise(&bytes[..len]))) {
            Err(_) => failures.push(format!("{name}: PANIC on {mutation}")),
            Ok(Ok(())) if mutation.must_fail => {
                failures.push(format!("{name}: parsed although it must fail: {mutation}"))
            }
            Ok(outcome) => *tally.entry(outcome.err().unwrap_or_else(|| "Ok".into())).or_default() += 1,
        }
        bytes[touched.clone()].copy_from_slice(&original[touched]);
    }
}

fn mutate_fixtures(test_name: &str, model: &str) {
    let mut rng = Rng(SplitMix64::from_name(test_name));
    let (mut failures, mut tally, mut total) = (Vec::new(), BTreeMap::new(), 0);
    for quant in ["f32", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0"] {
        let name = format!("tiny-{model}-{quant}.gguf");
        let original = std::fs::read(fixtures_dir().join(&name)).unwrap();
        let file = GgufFile::read(original.as_slice()).unwrap();
        let mut mutations = structural_mutations(&original, &file, &mut rng);
        mutations.extend(random_mutations(&file, original.len(), &mut rng));
        total += mutations.len();
        run(&name, &original, &mutations, &mut failures, &mut tally);
    }
    println!("{test_name}: {total} mutations, outcomes {tally:?}");
    assert!(total >= 1000, "only {total} mutations");
    assert!(failures.is_empty(), "{} of {total} mutations failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn mutations_of_gemma4_fixtures() {
    mutate_fixtures("mutations_of_gemma4_fixtures", "gemma4");
}

#[test]
fn mutations_of_gemma3_fixtures() {
    mutate_fixtures("mutations_of_gemma3_fixtures", "gemma3");
}
