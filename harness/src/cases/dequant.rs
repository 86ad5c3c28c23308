//! Bit-exact dequantization against gguf-py: the committed fixtures of `golden/dequant/` (raw ggml blocks and the
//! f32 values gguf-py — bit-identical to ggml — decodes them to; made by `golden/scripts/make_dequant_fixtures.py`)
//! gathered whole through our `get_rows` kernel. The reference is the fixture itself, not candle: the integration
//! test `harness/tests/dequant_fixtures.rs` proves candle decodes the same blocks to the same bits.
//!
//! The fixtures are embedded with `include_bytes!`, so the binary checks them without the source tree. Their rows
//! 8.. carry extreme-but-finite scales (±65504, f16 subnormals, ±0) and the dense types ±Inf and NaN.

use super::{Built, CaseResult, OpCase, OutType, guarded_output};
use ferrogem::gpu::{Category, Context};
use ferrogem::ops::get_rows::get_rows;
use ferrogem::ops::mul_mat::WEIGHT_TYPES;
use ferrogem::quant::QuantType;
use std::rc::Rc;

/// Elements per fixture row (two K-quant super-blocks); the row count follows from the file sizes.
pub const FIXTURE_ROW_ELEMS: u32 = 512;

/// One type's fixture: its raw blocks and gguf-py's little-endian f32 values, `[rows][FIXTURE_ROW_ELEMS]`.
#[derive(Debug, Clone, Copy)]
pub struct Fixture {
    pub ttype: QuantType,
    pub blocks: &'static [u8],
    pub values: &'static [u8],
}

macro_rules! fixture {
    ($ttype:expr, $stem:literal) => {
        Fixture {
            ttype: $ttype,
            blocks: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../golden/dequant/", $stem, ".blocks")),
            values: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../golden/dequant/", $stem, ".f32")),
        }
    };
}

/// Every committed fixture, in `manifest.json`'s types.
pub fn fixtures() -> Vec<Fixture> {
    use QuantType::*;
    vec![
        fixture!(F16, "f16"),
        fixture!(BF16, "bf16"),
        fixture!(Q4_0, "q4_0"),
        fixture!(Q4_1, "q4_1"),
        fixture!(Q5_0, "q5_0"),
        fixture!(Q5_1, "q5_1"),
        fixture!(Q8_0, "q8_0"),
        fixture!(Q2K, "q2_k"),
        fixture!(Q3K, "q3_k"),
        fixture!(Q4K, "q4_k"),
        fixture!(Q5K, "q5_k"),
        fixture!(Q6K, "q6_k"),
    ]
}

pub struct DequantCase {
    fixture: Fixture,
}

impl DequantCase {
    pub fn new(fixture: Fixture) -> Self {
        DequantCase { fixture }
    }

    fn rows(&self) -> u32 {
        (self.fixture.values.len() / 4) as u32 / FIXTURE_ROW_ELEMS
    }
}

/// One case per fixture whose type has a WGSL block reader. Q2_K and Q3_K have none yet (no Gemma GGUF we load
/// uses them), so their fixtures are checked only against candle, by `harness/tests/dequant_fixtures.rs`; they
/// join here as soon as `WEIGHT_TYPES` lists them.
pub fn cases() -> Vec<Box<dyn OpCase>> {
    fixtures()
        .into_iter()
        .filter(|f| WEIGHT_TYPES.contains(&f.ttype))
        .map(|f| Box::new(DequantCase::new(f)) as Box<dyn OpCase>)
        .collect()
}

impl OpCase for DequantCase {
    fn op(&self) -> &'static str {
        "dequant"
    }

    fn vars(&self) -> String {
        format!("type={},src=gguf-py", self.fixture.ttype.name().to_lowercase())
    }

    fn max_nmse(&self) -> f64 {
        crate::tolerance::max_nmse("dequant", &self.fixture.ttype.name().to_lowercase())
    }

    fn flops(&self) -> u64 {
        self.elems()
    }

    fn bytes(&self) -> u64 {
        (self.fixture.blocks.len() + self.fixture.values.len()) as u64
    }

    fn elems(&self) -> u64 {
        self.rows() as u64 * FIXTURE_ROW_ELEMS as u64
    }

    fn build(&self, ctx: &Context) -> CaseResult<Built> {
        let Fixture { ttype, blocks, values } = self.fixture;
        let rows = self.rows();
        let want_bytes = ttype.bytes_for(rows as u64 * FIXTURE_ROW_ELEMS as u64);
        if values.len() % (4 * FIXTURE_ROW_ELEMS as usize) != 0 || want_bytes != Some(blocks.len() as u64) {
            return Err(format!("{ttype} fixture: {} block bytes, {} value bytes", blocks.len(), values.len()).into());
        }
        let reference: Vec<f32> = bytemuck::pod_collect_to_vec(values);
        let ids: Vec<u32> = (0..rows).collect();
        let table = Rc::new(ctx.upload("table", Category::Weights, blocks)?);
        let gids = Rc::new(ctx.upload("ids", Category::Scratch, bytemuck::cast_slice(&ids))?);
        let output = guarded_output(ctx, reference.len(), OutType::F32)?;
        let out = Rc::clone(&output);
        Ok(Built {
            record: Box::new(move |batch| get_rows(batch, &table, ttype, FIXTURE_ROW_ELEMS, rows, &gids, rows, &out)),
            output,
            output_type: OutType::F32,
            reference,
        })
    }
}
