//! The API the worker drives: one WebGPU device, at most one model on it.

use crate::source::JsSource;
use ferrogem::chat::ChatTemplate;
use ferrogem::gpu::{Context, ContextOptions};
use ferrogem::models::ModelFile;
use ferrogem::models::gemma::{GemmaOptions, LoadProgress, LogitRows};
use ferrogem::sampling::{Sampler, SamplerConfig, SamplerState};
use ferrogem::session::{Session, snapshot};
use ferrogem::tokenizer::Tokenizer;
use std::path::PathBuf;
use std::sync::Arc;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

/// ferrogem on the page's WebGPU device. Every method that waits on the GPU returns a Promise; none blocks.
#[wasm_bindgen]
pub struct Engine {
    pub(crate) ctx: Context,
    pub(crate) session: Option<Session>,
    /// What the last generation's sampler ended as: a saved session carries it, so a restored one samples on.
    pub(crate) sampler: SamplerState,
    /// The loaded model's chat template and its turn-ending texts.
    pub(crate) template: Option<ChatTemplate>,
}

/// The wasm memory's size: it only grows, so this is also its peak so far.
pub(crate) fn wasm_memory_bytes() -> u64 {
    wasm_bindgen::memory()
        .dyn_into::<js_sys::WebAssembly::Memory>()
        .map(|m| m.buffer().unchecked_into::<js_sys::ArrayBuffer>().byte_length() as u64)
        .unwrap_or(0)
}

/// The memory accountant's snapshot (live and peak bytes, by category and phase), the wasm memory's size and the
/// chart of live bytes by category so far, as JSON.
pub(crate) fn memory_json(ctx: &Context) -> Result<String, JsError> {
    let mut json = serde_json::to_value(ctx.memory()).map_err(js_error)?;
    json["wasm_memory_bytes"] = wasm_memory_bytes().into();
    json["chart"] = crate::profile::memory_chart(ctx).into();
    Ok(json.to_string())
}

/// Memory snapshots for the page while a long call runs, at most one per `MEMORY_FEED_MS`: handed to the call's own
/// callbacks, because the page may not call back into the engine while one of its calls runs.
pub(crate) struct MemoryFeed<'a> {
    ctx: &'a Context,
    last_ms: f64,
}

const MEMORY_FEED_MS: f64 = 500.0;

impl<'a> MemoryFeed<'a> {
    pub(crate) fn new(ctx: &'a Context) -> Self {
        MemoryFeed { ctx, last_ms: js_sys::Date::now() }
    }

    /// The snapshot when one is due, else `undefined`.
    pub(crate) fn due(&mut self) -> JsValue {
        let now = js_sys::Date::now();
        if now - self.last_ms < MEMORY_FEED_MS {
            return JsValue::UNDEFINED;
        }
        self.last_ms = now;
        memory_json(self.ctx).map(JsValue::from).unwrap_or(JsValue::UNDEFINED)
    }
}

pub(crate) fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

#[wasm_bindgen]
impl Engine {
    /// Opens the adapter's device. `downlevel` asks for WebGPU's default limits and no optional feature, the
    /// paths every browser has; otherwise the adapter's limits and the features ferrogem uses where granted.
    pub async fn create(downlevel: bool) -> Result<Engine, JsError> {
        let options = ContextOptions { adapter_filter: None, downlevel, profile: None, coop_matrix: false };
        let ctx = Context::new(options).await.map_err(js_error)?;
        Ok(Engine {
            ctx,
            session: None,
            sampler: Sampler::new(SamplerConfig::greedy()).map_err(js_error)?.state(),
            template: None,
        })
    }

    /// The adapter, the limits and features granted and the memory ceiling, as JSON.
    pub fn device(&self) -> Result<String, JsError> {
        serde_json::to_string(self.ctx.caps()).map_err(js_error)
    }

    /// Parses the model's header and uploads its weights tensor by tensor from `source`, calling
    /// `progress(uploaded_bytes, total_bytes, memory)` after each (`memory`: what `memory()` returns, at most twice a
    /// second, else undefined); a model already loaded is released first. `max_chunk` is
    /// the tokens per forward pass and `n_ctx` the positions the cache holds (0 for the defaults). Returns what was
    /// loaded, as JSON.
    pub fn load(
        &mut self,
        source: JsSource,
        max_chunk: u32,
        n_ctx: u32,
        progress: Option<js_sys::Function>,
    ) -> Result<String, JsError> {
        self.session = None;
        self.template = None;
        let name = source.name().to_owned();
        let file = ModelFile::from_source(&name, PathBuf::from(&name), Arc::new(source)).map_err(js_error)?;
        let defaults = GemmaOptions::default();
        let options = GemmaOptions {
            max_chunk: if max_chunk == 0 { defaults.max_chunk } else { max_chunk },
            n_ctx: if n_ctx == 0 { defaults.n_ctx } else { n_ctx },
            ..defaults
        };
        let mut feed = MemoryFeed::new(&self.ctx);
        let mut report = |p: LoadProgress| {
            if let Some(f) = &progress {
                let (uploaded, total) = ((p.uploaded_bytes as f64).into(), (p.total_bytes as f64).into());
                // A throwing progress callback must not abort the upload half way; its error is the page's to show.
                let _ = f.call3(&JsValue::NULL, &uploaded, &total, &feed.due());
            }
        };
        let model = file.load(&self.ctx, options, &mut report).map_err(js_error)?;
        let tokenizer = Tokenizer::from_gguf(&file.gguf).map_err(js_error)?;
        let fingerprint = snapshot::fingerprint(&file.gguf, &file.adapters);
        let summary = serde_json::json!({
            "name": name,
            "arch": model.config.arch.gguf_name(),
            "layers": model.config.layers.len(),
            "vocab": model.config.vocab,
            "n_ctx": options.n_ctx,
        });
        // A model without a template (another architecture) still generates; only chat refuses.
        self.template = ChatTemplate::for_model(&file.gguf).ok();
        self.session = Some(Session::new(model, tokenizer, fingerprint));
        Ok(summary.to_string())
    }

    /// The logits of every position of `ids`, run from position 0 as one sequence: `ids.length × vocab` values,
    /// row-major. The cache then holds `ids`.
    pub async fn logits(&mut self, ids: Vec<u32>) -> Result<Vec<f32>, JsError> {
        let model = self.session_mut()?.model_mut();
        Ok(model.forward(&ids, 0, LogitRows::All).await.map_err(js_error)?.values)
    }

    /// The ids of a prompt text in the loaded model's tokenizer (control texts read as tokens, BOS where the model
    /// wants one).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, JsError> {
        Ok(self.session()?.tokenizer().encode_prompt(text))
    }

    /// Releases the model's GPU memory.
    pub fn unload(&mut self) {
        self.session = None;
        self.template = None;
    }

    pub(crate) fn session(&self) -> Result<&Session, JsError> {
        self.session.as_ref().ok_or_else(|| JsError::new("no model is loaded"))
    }

    pub(crate) fn session_mut(&mut self) -> Result<&mut Session, JsError> {
        self.session.as_mut().ok_or_else(|| JsError::new("no model is loaded"))
    }

    /// The memory accountant's snapshot (live and peak bytes, by category and phase), the wasm memory's size in
    /// bytes (it only grows, so it is also the peak) and `chart`, an SVG of live bytes by category so far, as JSON.
    pub fn memory(&self) -> Result<String, JsError> {
        memory_json(&self.ctx)
    }
}
