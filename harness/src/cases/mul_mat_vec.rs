//! Cases for `mul_mat_vec`, the decode side of `mul_mat` (`ops/mul_mat_vec.rs`, `shaders/mul_mat_vec.wgsl`): a few
//! tokens, one pass over W, through `mul_mat_with(.., MulMatPath::Vec)`. Same case type and reference as
//! `mul_mat.rs`.

use super::OpCase;
use super::mul_mat::MulMatCase;
use ferrogem::ops::mul_mat::{MulMatPath, WEIGHT_TYPES};
use ferrogem::quant::QuantType;

/// Decode shapes (m, k, n): a row, odd row counts around the 4-row groups, short rows (8 lanes) and long ones (32),
/// a few tokens on both.
const VEC_SHAPES: [(u32, u32, u32); 8] =
    [(1, 256, 1), (7, 512, 1), (13, 768, 1), (64, 1024, 1), (5, 256, 2), (3, 4096, 1), (7, 256, 5), (6, 1024, 3)];
/// Dense rows need only be multiples of 8: a last chunk of 32 that passes the row's end (k = 16 is the tiny
/// Gemma 4's PLE projection).
const DENSE_TAIL_SHAPES: [(u32, u32, u32); 3] = [(5, 40, 1), (3, 16, 2), (9, 1000, 1)];
pub fn cases() -> Vec<Box<dyn OpCase>> {
    let mut cases: Vec<Box<dyn OpCase>> = Vec::new();
    for wtype in WEIGHT_TYPES {
        for (m, k, n) in VEC_SHAPES {
            cases.push(Box::new(MulMatCase::new(wtype, m, k, n, MulMatPath::Vec, 1)));
        }
        if wtype.block_elems() == 1 {
            for (m, k, n) in DENSE_TAIL_SHAPES {
                cases.push(Box::new(MulMatCase::new(wtype, m, k, n, MulMatPath::Vec, 1)));
            }
        }
        // Weights split on rows into parts of one shared y.
        cases.push(Box::new(MulMatCase::new(wtype, 13, 768, 1, MulMatPath::Vec, 2)));
        // A LoRA update in the epilogue: split rows (each part's B rows), and several tokens with more ranks
        // than lanes.
        cases.push(Box::new(MulMatCase::new(wtype, 13, 768, 1, MulMatPath::Vec, 2).with_lora(16, 1)));
        cases.push(Box::new(MulMatCase::new(wtype, 7, 256, 3, MulMatPath::Vec, 1).with_lora(40, 1)));
    }
    // u summed from parts (o's, a part per head, from the attention merge): one token and several.
    for wtype in [QuantType::F32, QuantType::Q4K, QuantType::Q6K] {
        cases.push(Box::new(MulMatCase::new(wtype, 13, 768, 1, MulMatPath::Vec, 1).with_lora(16, 8)));
        cases.push(Box::new(MulMatCase::new(wtype, 7, 256, 3, MulMatPath::Vec, 1).with_lora(13, 3)));
    }
    cases
}
