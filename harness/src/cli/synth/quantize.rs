//! Values and bytes of one synthetic tensor: a splitmix64 stream keyed by the seed and the tensor's name, with
//! random access so that any row range can be generated on its own (in parallel, in any chunking) and still give
//! the same bytes; then candle-core's quantizers (bit-identical to ggml's reference ones) or f16/bf16 rounding.

use super::tensors::{Fill, PlannedTensor};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use ferrogem::quant::QuantType;

/// splitmix64's increment (the golden-ratio constant) and finalizer.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a: folds the tensor name into the stream key, so renaming or reordering tensors changes nothing else.
fn fnv1a64(text: &str) -> u64 {
    text.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3))
}

/// The stream of one tensor: element `i` is `mix64(key + (i + 1)·GAMMA)`, splitmix64's i-th output.
#[derive(Debug, Clone, Copy)]
pub struct Stream {
    key: u64,
}

impl Stream {
    pub fn new(seed: u64, tensor_name: &str) -> Self {
        Stream { key: mix64(seed ^ fnv1a64(tensor_name)) }
    }

    /// A uniform value in [0, 1) from the top 24 bits (exactly representable in f32).
    fn unit(&self, i: u64) -> f32 {
        let bits = mix64(self.key.wrapping_add(i.wrapping_add(1).wrapping_mul(GAMMA)));
        (bits >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }
}

/// Elements `first..first + out.len()` of the tensor (row-major, ne0 fastest).
pub fn fill_values(fill: Fill, stream: Stream, first: u64, out: &mut [f32]) {
    match fill {
        Fill::Uniform { lo, hi } => {
            for (k, v) in out.iter_mut().enumerate() {
                *v = lo + (hi - lo) * stream.unit(first + k as u64);
            }
        }
        Fill::RopeFreqs { rotating } => {
            for (k, v) in out.iter_mut().enumerate() {
                *v = if ((first as usize) + k) < rotating { 1.0 } else { 1e30 };
            }
        }
    }
}

fn ggml_dtype(t: QuantType) -> Option<GgmlDType> {
    use QuantType as T;
    Some(match t {
        T::Q4_0 => GgmlDType::Q4_0,
        T::Q4_1 => GgmlDType::Q4_1,
        T::Q5_0 => GgmlDType::Q5_0,
        T::Q5_1 => GgmlDType::Q5_1,
        T::Q8_0 => GgmlDType::Q8_0,
        T::Q4K => GgmlDType::Q4K,
        T::Q5K => GgmlDType::Q5K,
        T::Q6K => GgmlDType::Q6K,
        _ => return None,
    })
}

/// `values` (whole rows of `cols`) in `dtype`'s file encoding.
pub fn encode(values: Vec<f32>, cols: usize, dtype: QuantType) -> candle_core::Result<Vec<u8>> {
    match dtype {
        QuantType::F32 => Ok(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        QuantType::F16 => Ok(values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect()),
        QuantType::BF16 => Ok(values.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect()),
        other => {
            let gd = ggml_dtype(other).ok_or_else(|| candle_core::Error::Msg(format!("cannot quantize to {other}")))?;
            let rows = values.len() / cols;
            let t = Tensor::from_vec(values, (rows, cols), &Device::Cpu)?;
            Ok(QTensor::quantize(&t, gd)?.data()?.into_owned())
        }
    }
}

/// Rows per generated chunk: about a million values (4 MiB of f32) keeps memory flat on multi-GB tensors and
/// gives the worker threads enough work per chunk.
const CHUNK_ELEMS: usize = 1 << 20;

/// The tensor's bytes, `threads` chunks at a time in parallel, handed to `emit` in file order.
pub fn generate(
    t: &PlannedTensor,
    seed: u64,
    threads: usize,
    mut emit: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<(), String> {
    let (rows, cols) = (t.rows(), t.cols());
    let stream = Stream::new(seed, &t.name);
    let rows_per_chunk = (CHUNK_ELEMS / cols).max(1);
    let chunks: Vec<(usize, usize)> =
        (0..rows).step_by(rows_per_chunk).map(|r0| (r0, (r0 + rows_per_chunk).min(rows))).collect();
    let make = |&(r0, r1): &(usize, usize)| -> candle_core::Result<Vec<u8>> {
        let mut values = vec![0f32; (r1 - r0) * cols];
        fill_values(t.fill, stream, (r0 * cols) as u64, &mut values);
        encode(values, cols, t.dtype)
    };
    let make = &make;
    for round in chunks.chunks(threads.max(1)) {
        let results: Vec<candle_core::Result<Vec<u8>>> = if round.len() == 1 {
            vec![make(&round[0])]
        } else {
            std::thread::scope(|s| {
                let handles: Vec<_> = round.iter().map(|c| s.spawn(move || make(c))).collect();
                handles.into_iter().map(|h| h.join().expect("a generator thread panicked")).collect()
            })
        };
        for bytes in results {
            let bytes = bytes.map_err(|e| format!("{}: {e}", t.name))?;
            emit(&bytes).map_err(|e| format!("writing {}: {e}", t.name))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_random_access_and_keyed_by_name() {
        let s = Stream::new(7, "blk.0.attn_q.weight");
        let mut whole = vec![0f32; 100];
        fill_values(Fill::Uniform { lo: -1.0, hi: 1.0 }, s, 0, &mut whole);
        let mut tail = vec![0f32; 40];
        fill_values(Fill::Uniform { lo: -1.0, hi: 1.0 }, s, 60, &mut tail);
        assert_eq!(&whole[60..], &tail[..]);
        assert!(whole.iter().all(|v| (-1.0..1.0).contains(v)));
        let mut other = vec![0f32; 100];
        fill_values(Fill::Uniform { lo: -1.0, hi: 1.0 }, Stream::new(7, "blk.0.attn_k.weight"), 0, &mut other);
        assert_ne!(whole, other);
        let mean = whole.iter().sum::<f32>() / 100.0;
        assert!(mean.abs() < 0.2, "mean {mean}");
    }

    #[test]
    fn encodings_have_the_planned_sizes() {
        let values: Vec<f32> = (0..512).map(|i| (i as f32 - 256.0) / 1000.0).collect();
        for t in [QuantType::F32, QuantType::F16, QuantType::BF16, QuantType::Q8_0, QuantType::Q4K, QuantType::Q6K] {
            let bytes = encode(values.clone(), 256, t).unwrap();
            assert_eq!(bytes.len() as u64, t.bytes_for(512).unwrap(), "{t}");
        }
    }
}
