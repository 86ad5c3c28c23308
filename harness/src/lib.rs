//! The checking half of ferrogem's harness, as a library: the op case registry with its CPU references
//! (candle-core), the tolerance table, the golden list, the model check and the result files; and the measuring
//! half of `ferrogem profile` (`profile`, with the SVG helpers in `plot`), which the browser runs too. The
//! `ferrogem` binary (`src/cli/`) runs it all through `ferrogem check` and `ferrogem profile`; `cargo test -p
//! ferrogem-harness <op>` runs the cases of one op family on the adapter (`cases::family_tests`).

pub mod cases;
pub mod golden;
// The model check and the load round trip block on the GPU (native only); in the browser, web/'s tests check the
// model against the goldens instead.
#[cfg(not(target_arch = "wasm32"))]
pub mod load_check;
#[cfg(not(target_arch = "wasm32"))]
pub mod model_check;
pub mod npy;
pub mod plot;
pub mod profile;
pub mod reference;
pub mod results;
pub mod tolerance;
