//! Tensor element types as GGUF stores them (ggml's `enum ggml_type`).
//!
//! Ids follow `ggml/include/ggml.h`; block sizes follow `type_traits` in `ggml/src/ggml.c` and the
//! `static_assert`ed block structs in `ggml/src/ggml-common.h` (llama.cpp master, checked against gguf-py's
//! `GGML_QUANT_SIZES`). Ids 4, 5 and 31..=33, 36..=38 were removed from ggml and are unknown here.

use std::fmt;

/// One ggml tensor type. The variant name is the ggml name with the underscores before letters dropped
/// (`Q4_K` is `Q4K`), the stem used for block structs and shader variants too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum QuantType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q8_1 = 9,
    Q2K = 10,
    Q3K = 11,
    Q4K = 12,
    Q5K = 13,
    Q6K = 14,
    Q8K = 15,
    IQ2XXS = 16,
    IQ2XS = 17,
    IQ3XXS = 18,
    IQ1S = 19,
    IQ4NL = 20,
    IQ3S = 21,
    IQ2S = 22,
    IQ4XS = 23,
    I8 = 24,
    I16 = 25,
    I32 = 26,
    I64 = 27,
    F64 = 28,
    IQ1M = 29,
    BF16 = 30,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
}

/// Elements per K-quant super-block (ggml's `QK_K`).
const QK_K: u64 = 256;

impl QuantType {
    pub const ALL: [QuantType; 32] = {
        use QuantType::*;
        [
            F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2K, Q3K, Q4K, Q5K, Q6K, Q8K, IQ2XXS, IQ2XS, IQ3XXS, IQ1S,
            IQ4NL, IQ3S, IQ2S, IQ4XS, I8, I16, I32, I64, F64, IQ1M, BF16, TQ1_0, TQ2_0, MXFP4,
        ]
    };

    /// The type with ggml id `id`, or `None` for ids ggml never had or has removed.
    pub fn from_u32(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.to_u32() == id)
    }

    pub fn to_u32(self) -> u32 {
        self as u32
    }

    /// Elements in one block (1 for plain scalar types).
    pub fn block_elems(self) -> u64 {
        self.block_layout().0
    }

    /// Bytes in one block.
    pub fn block_bytes(self) -> u64 {
        self.block_layout().1
    }

    /// `(block_elems, block_bytes)`, kept in one table so the two can never disagree.
    fn block_layout(self) -> (u64, u64) {
        use QuantType::*;
        match self {
            F32 | I32 => (1, 4),
            F16 | BF16 | I16 => (1, 2),
            F64 | I64 => (1, 8),
            I8 => (1, 1),
            Q4_0 | IQ4NL => (32, 2 + 16),
            Q4_1 => (32, 2 + 2 + 16),
            Q5_0 => (32, 2 + 4 + 16),
            Q5_1 => (32, 2 + 2 + 4 + 16),
            Q8_0 => (32, 2 + 32),
            // Two f16s (d, s) since ggml made them half precision; older ggml used two f32s (40 bytes).
            Q8_1 => (32, 2 + 2 + 32),
            MXFP4 => (32, 1 + 16),
            Q2K => (QK_K, 2 + 2 + QK_K / 16 + QK_K / 4),
            Q3K => (QK_K, 2 + QK_K / 4 + QK_K / 8 + 12),
            Q4K => (QK_K, 2 + 2 + QK_K / 2 + 12),
            Q5K => (QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12),
            Q6K => (QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16),
            Q8K => (QK_K, 4 + QK_K + QK_K / 8),
            IQ2XXS => (QK_K, 2 + QK_K / 4),
            IQ2XS => (QK_K, 2 + QK_K / 4 + QK_K / 32),
            IQ3XXS => (QK_K, 2 + QK_K / 4 + QK_K / 8),
            IQ1S => (QK_K, 2 + QK_K / 8 + QK_K / 16),
            IQ3S => (QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4),
            IQ2S => (QK_K, 2 + QK_K / 4 + QK_K / 16),
            IQ4XS => (QK_K, 2 + 2 + QK_K / 2 + QK_K / 64),
            IQ1M => (QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32),
            TQ1_0 => (QK_K, 2 + 4 * 13),
            TQ2_0 => (QK_K, 2 + 64),
        }
    }

    /// The ggml name as gguf-py and llama.cpp's quantize tool spell it: `"Q4_K"`, `"IQ2_XXS"`, `"BF16"`.
    pub fn name(self) -> &'static str {
        use QuantType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2K => "Q2_K",
            Q3K => "Q3_K",
            Q4K => "Q4_K",
            Q5K => "Q5_K",
            Q6K => "Q6_K",
            Q8K => "Q8_K",
            IQ2XXS => "IQ2_XXS",
            IQ2XS => "IQ2_XS",
            IQ3XXS => "IQ3_XXS",
            IQ1S => "IQ1_S",
            IQ4NL => "IQ4_NL",
            IQ3S => "IQ3_S",
            IQ2S => "IQ2_S",
            IQ4XS => "IQ4_XS",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            IQ1M => "IQ1_M",
            BF16 => "BF16",
            TQ1_0 => "TQ1_0",
            TQ2_0 => "TQ2_0",
            MXFP4 => "MXFP4",
        }
    }

    /// Little-endian values of a dense type (F32, F16, BF16) as f32; `None` for block-quantized types.
    pub fn dense_to_f32(self, bytes: &[u8]) -> Option<Vec<f32>> {
        Some(match self {
            QuantType::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            QuantType::F16 => bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            QuantType::BF16 => {
                bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
            }
            _ => return None,
        })
    }

    /// As [`dense_to_f32`](Self::dense_to_f32), and Q8_0 (blocks of an f16 scale and 32 signed bytes: what
    /// llama.cpp's `convert_lora_to_gguf.py --outtype q8_0` writes for LoRA A matrices); `None` for other types.
    pub fn to_f32(self, bytes: &[u8]) -> Option<Vec<f32>> {
        if self != QuantType::Q8_0 {
            return self.dense_to_f32(bytes);
        }
        let mut values = Vec::with_capacity(bytes.len() / self.block_bytes() as usize * 32);
        for block in bytes.chunks_exact(self.block_bytes() as usize) {
            let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
            values.extend(block[2..].iter().map(|&q| d * q as i8 as f32));
        }
        Some(values)
    }

    /// Bytes that `elems` elements take, or `None` if `elems` is not a whole number of blocks or the size
    /// overflows `u64`.
    pub fn bytes_for(self, elems: u64) -> Option<u64> {
        let (block_elems, block_bytes) = self.block_layout();
        if !elems.is_multiple_of(block_elems) {
            return None;
        }
        (elems / block_elems).checked_mul(block_bytes)
    }
}

impl fmt::Display for QuantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_ggml() {
        use QuantType::*;
        // (type, ggml id, block elems, block bytes), written out from ggml.h and ggml-common.h.
        let table = [
            (F32, 0, 1, 4),
            (F16, 1, 1, 2),
            (Q4_0, 2, 32, 18),
            (Q4_1, 3, 32, 20),
            (Q5_0, 6, 32, 22),
            (Q5_1, 7, 32, 24),
            (Q8_0, 8, 32, 34),
            (Q8_1, 9, 32, 36),
            (Q2K, 10, 256, 84),
            (Q3K, 11, 256, 110),
            (Q4K, 12, 256, 144),
            (Q5K, 13, 256, 176),
            (Q6K, 14, 256, 210),
            (Q8K, 15, 256, 292),
            (IQ2XXS, 16, 256, 66),
            (IQ2XS, 17, 256, 74),
            (IQ3XXS, 18, 256, 98),
            (IQ1S, 19, 256, 50),
            (IQ4NL, 20, 32, 18),
            (IQ3S, 21, 256, 110),
            (IQ2S, 22, 256, 82),
            (IQ4XS, 23, 256, 136),
            (I8, 24, 1, 1),
            (I16, 25, 1, 2),
            (I32, 26, 1, 4),
            (I64, 27, 1, 8),
            (F64, 28, 1, 8),
            (IQ1M, 29, 256, 56),
            (BF16, 30, 1, 2),
            (TQ1_0, 34, 256, 54),
            (TQ2_0, 35, 256, 66),
            (MXFP4, 39, 32, 17),
        ];
        assert_eq!(table.len(), QuantType::ALL.len());
        for (ty, id, block_elems, block_bytes) in table {
            assert_eq!(ty.to_u32(), id, "{ty}");
            assert_eq!(QuantType::from_u32(id), Some(ty), "{ty}");
            assert_eq!((ty.block_elems(), ty.block_bytes()), (block_elems, block_bytes), "{ty}");
        }
    }

    #[test]
    fn removed_and_unknown_ids_are_none() {
        for id in [4, 5, 31, 32, 33, 36, 37, 38, 40, 1000, u32::MAX] {
            assert_eq!(QuantType::from_u32(id), None, "id {id}");
        }
    }

    #[test]
    fn names_are_gguf_py_spelling() {
        assert_eq!(QuantType::Q4K.name(), "Q4_K");
        assert_eq!(QuantType::IQ2XXS.to_string(), "IQ2_XXS");
        assert_eq!(QuantType::BF16.name(), "BF16");
    }

    #[test]
    fn bytes_for_checks_blocks_and_overflow() {
        assert_eq!(QuantType::Q4K.bytes_for(512), Some(288));
        assert_eq!(QuantType::Q4K.bytes_for(0), Some(0));
        assert_eq!(QuantType::Q4K.bytes_for(100), None);
        assert_eq!(QuantType::F32.bytes_for(u64::MAX / 4), Some(u64::MAX / 4 * 4));
        assert_eq!(QuantType::F32.bytes_for(u64::MAX / 4 + 1), None);
        assert_eq!(QuantType::Q8_0.bytes_for(u64::MAX - u64::MAX % 32), None);
    }
}
