//! ferrogem in the browser. The engine runs in a Dedicated Worker with WebGPU, and this crate is what the worker
//! calls through wasm-bindgen: [`Engine`] opens the device, loads a model from a [`JsSource`] (bytes read on demand
//! through a synchronous JS function, so the file never sits whole in wasm memory), computes logits, generates and
//! chats (sampling, stop strings, KV save/restore), trains LoRA adapters, reports memory, and runs conformance (the op registry and a
//! golden model against CPU references compiled to wasm) and [`profile`] on the device the page runs on.
//!
//! Natively the crate builds (so the workspace lints it) but does nothing useful; its tests (`tests/browser.rs`) run
//! only in a browser: `ci/test.sh` runs them in headless Chromium on SwiftShader's WebGPU.

mod conformance;
mod engine;
mod generate;
mod profile;
mod source;
mod train;

pub use conformance::{GoldenReport, check_golden};
pub use engine::Engine;
pub use profile::profile;
pub use source::JsSource;
