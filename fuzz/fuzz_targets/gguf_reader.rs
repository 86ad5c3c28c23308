//! Parses arbitrary bytes as GGUF. On success, reads every tensor's bytes and every metadata accessor, and
//! checks that writing the file back out and reading it again is a fixpoint.

#![no_main]

use ferrogem::gguf::{GgufFile, GgufWriter, Value};
use ferrogem::source::{ByteSource, MemSource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let source = MemSource::from(data.to_vec());
    let file = match GgufFile::read(&source) {
        Ok(file) => file,
        Err(err) => {
            assert!(!err.to_string().is_empty());
            return;
        }
    };
    let mut tensor_bytes = 0u64;
    for info in file.tensors() {
        let bytes = info.bytes(&source).expect("tensor ranges are checked at parse time");
        assert_eq!(bytes.len() as u64, info.size_bytes());
        assert!(info.offset_bytes() % file.alignment_bytes() == 0);
        tensor_bytes += info.size_bytes();
    }
    for (key, value) in file.metadata() {
        let _ = value.to_string();
        let n_layers = match value {
            Value::Array(array) => array.len(),
            _ => 6,
        };
        let _ = (file.get_u32(key), file.get_f32(key), file.get_bool(key), file.get_str(key));
        let _ = (file.get_array(key), file.get_str_array(key), file.get_bool_array(key));
        let _ = file.get_u32_per_layer(key, n_layers);
    }
    let _ = file.architecture();

    // Tensors may overlap, and the writer lays each out separately: skip inputs that would blow up in size.
    if tensor_bytes <= 4 * source.len_bytes() {
        let written = rewrite(&file, &source);
        let reread = GgufFile::read(written.as_slice()).expect("the writer's output parses");
        assert_eq!(rewrite(&reread, written.as_slice()), written);
    }
});

fn rewrite<S: ByteSource + ?Sized>(file: &GgufFile, source: &S) -> Vec<u8> {
    let mut writer = GgufWriter::new(file.version());
    for (key, value) in file.metadata() {
        writer.add_metadata(key, value.clone());
    }
    for info in file.tensors() {
        let bytes = info.bytes(source).expect("tensor ranges are checked at parse time");
        writer.add_tensor(info.name(), info.dims(), info.dtype(), bytes.into_owned());
    }
    writer.to_bytes().expect("the alignment was accepted when reading")
}
