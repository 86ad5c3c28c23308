//! The API the worker drives: one WebGPU device, at most one model on it.

use crate::source::JsSource;
use ferrogem::gpu::{Context, ContextOptions};
use ferrogem::models::ModelFile;
use ferrogem::models::gemma::{GemmaOptions, LoadProgress, LogitRows};
use ferrogem::sampling::{Sampler, SamplerConfig};
use ferrogem::session::{GenerateParams, Observer, Prefill, Session, snapshot};
use ferrogem::tokenizer::Tokenizer;
use std::path::PathBuf;
use std::sync::Arc;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

/// ferrogem on the page's WebGPU device. Every method that waits on the GPU returns a Promise; none blocks.
#[wasm_bindgen]
pub struct Engine {
    ctx: Context,
    session: Option<Session>,
}

/// Streams a generation to the worker's callbacks. A throwing callback does not stop the generation (a throwing
/// `cancelled` counts as no).
struct JsObserver {
    on_text: Option<js_sys::Function>,
    cancelled: Option<js_sys::Function>,
    prefilled_ms: Option<f64>,
}

impl Observer for JsObserver {
    fn prefilled(&mut self, _: &Prefill) {
        self.prefilled_ms = Some(js_sys::Date::now());
    }

    fn text(&mut self, text: &str) {
        if let Some(f) = &self.on_text {
            let _ = f.call1(&JsValue::NULL, &JsValue::from_str(text));
        }
    }

    fn cancelled(&mut self) -> bool {
        let ask = |f: &js_sys::Function| f.call0(&JsValue::NULL).ok().and_then(|v| v.as_bool());
        self.cancelled.as_ref().and_then(ask).unwrap_or(false)
    }
}

fn js_error(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

#[wasm_bindgen]
impl Engine {
    /// Opens the adapter's device. `downlevel` asks for WebGPU's default limits and no optional feature, the
    /// paths every browser has; otherwise the adapter's limits and the features ferrogem uses where granted.
    pub async fn create(downlevel: bool) -> Result<Engine, JsError> {
        let options = ContextOptions { adapter_filter: None, downlevel, profile: None };
        let ctx = Context::new(options).await.map_err(js_error)?;
        Ok(Engine { ctx, session: None })
    }

    /// The adapter, the limits and features granted and the memory ceiling, as JSON.
    pub fn device(&self) -> Result<String, JsError> {
        serde_json::to_string(self.ctx.caps()).map_err(js_error)
    }

    /// Parses the model's header and uploads its weights tensor by tensor from `source`, calling
    /// `progress(uploaded_bytes, total_bytes)` after each; a model already loaded is released first. `max_chunk` is
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
        let name = source.name().to_owned();
        let file = ModelFile::from_source(&name, PathBuf::from(&name), Arc::new(source)).map_err(js_error)?;
        let defaults = GemmaOptions::default();
        let options = GemmaOptions {
            max_chunk: if max_chunk == 0 { defaults.max_chunk } else { max_chunk },
            n_ctx: if n_ctx == 0 { defaults.n_ctx } else { n_ctx },
            ..defaults
        };
        let mut report = |p: LoadProgress| {
            if let Some(f) = &progress {
                // A throwing progress callback must not abort the upload half way; its error is the page's to show.
                let _ = f.call2(&JsValue::NULL, &(p.uploaded_bytes as f64).into(), &(p.total_bytes as f64).into());
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
        self.session = Some(Session::new(model, tokenizer, fingerprint));
        Ok(summary.to_string())
    }

    /// The logits of every position of `ids`, run from position 0 as one sequence: `ids.length × vocab` values,
    /// row-major. The cache then holds `ids`.
    pub async fn logits(&mut self, ids: Vec<u32>) -> Result<Vec<f32>, JsError> {
        let session = self.session.as_mut().ok_or_else(|| JsError::new("no model is loaded"))?;
        let model = session.model_mut();
        Ok(model.forward(&ids, 0, LogitRows::All).await.map_err(js_error)?.values)
    }

    /// The ids of a prompt text in the loaded model's tokenizer (control texts read as tokens, BOS where the model
    /// wants one).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, JsError> {
        Ok(self.session()?.tokenizer().encode_prompt(text))
    }

    /// Greedy continuation of `prompt` (ids): at most `max_tokens` ids, stopping at the model's end-of-generation
    /// tokens. Calls `on_text(text)` as text becomes final and asks `cancelled()` before each token, so the worker
    /// can stream and cancel between tokens. The cached prefix of an earlier call is reused. Returns JSON: `tokens`,
    /// `text`, `stop`, `prompt_tokens`, `reused_tokens`, `prefill_ms`, `decode_ms`.
    pub async fn generate(
        &mut self,
        prompt: Vec<u32>,
        max_tokens: u32,
        on_text: Option<js_sys::Function>,
        cancelled: Option<js_sys::Function>,
    ) -> Result<String, JsError> {
        let session = self.session.as_mut().ok_or_else(|| JsError::new("no model is loaded"))?;
        let mut sampler = Sampler::new(SamplerConfig::greedy()).map_err(js_error)?;
        let params = GenerateParams { max_tokens, stop_strings: Vec::new(), stop_tokens: Vec::new() };
        let start_ms = js_sys::Date::now();
        let mut observer = JsObserver { on_text, cancelled, prefilled_ms: None };
        let generation = session.generate(&prompt, &mut sampler, &params, &mut observer).await.map_err(js_error)?;
        let prefilled_ms = observer.prefilled_ms.unwrap_or(start_ms);
        let json = serde_json::json!({
            "tokens": generation.tokens,
            "text": generation.text,
            "stop": generation.stop.name(),
            "prompt_tokens": generation.prompt_tokens,
            "reused_tokens": generation.reused_tokens,
            "prefill_ms": prefilled_ms - start_ms,
            "decode_ms": js_sys::Date::now() - prefilled_ms,
        });
        Ok(json.to_string())
    }

    /// Releases the model's GPU memory.
    pub fn unload(&mut self) {
        self.session = None;
    }

    fn session(&self) -> Result<&Session, JsError> {
        self.session.as_ref().ok_or_else(|| JsError::new("no model is loaded"))
    }

    /// The memory accountant's snapshot (live and peak bytes, by category and phase) and the wasm memory's size in
    /// bytes (it only grows, so it is also the peak), as JSON.
    pub fn memory(&self) -> Result<String, JsError> {
        let wasm_bytes = wasm_bindgen::memory()
            .dyn_into::<js_sys::WebAssembly::Memory>()
            .map(|m| m.buffer().unchecked_into::<js_sys::ArrayBuffer>().byte_length() as u64)
            .unwrap_or(0);
        let mut json = serde_json::to_value(self.ctx.memory()).map_err(js_error)?;
        json["wasm_memory_bytes"] = wasm_bytes.into();
        Ok(json.to_string())
    }
}
