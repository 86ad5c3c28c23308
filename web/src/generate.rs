//! Generation as the page asks for it: a prompt or a conversation in the model's chat template, the sampler's
//! settings and stop strings from one JSON object, text streamed to a callback and cancelled between tokens; and
//! the session's KV cache saved to bytes and restored, so a conversation survives a reload.

use crate::engine::{Engine, MemoryFeed, js_error};
use ferrogem::chat::Message;
use ferrogem::sampling::{Sampler, SamplerConfig};
use ferrogem::session::{GenerateParams, Observer, Prefill};
use serde::Deserialize;
use wasm_bindgen::prelude::*;

/// The page's settings; every field may be left out. Left out, the sampler is greedy (temperature 0), so a page
/// that only sends `max_tokens` gets what native `generate --temp 0` gets.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    max_tokens: u32,
    temperature: f32,
    top_k: u32,
    top_p: f32,
    min_p: f32,
    repeat_penalty: f32,
    repeat_last_n: u32,
    seed: u64,
    /// Texts that end the generation (the chat template's turn ends are added in `chat`).
    stop: Vec<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        let greedy = SamplerConfig::greedy();
        Settings {
            max_tokens: 256,
            temperature: greedy.temperature,
            top_k: greedy.top_k,
            top_p: greedy.top_p,
            min_p: greedy.min_p,
            repeat_penalty: greedy.repeat_penalty,
            repeat_last_n: greedy.repeat_last_n,
            seed: greedy.seed,
            stop: Vec::new(),
        }
    }
}

impl Settings {
    fn parse(json: &str) -> Result<Settings, JsError> {
        if json.trim().is_empty() {
            return Ok(Settings::default());
        }
        serde_json::from_str(json).map_err(|e| JsError::new(&format!("generation settings: {e}")))
    }

    fn sampler(&self) -> Result<Sampler, JsError> {
        let config = SamplerConfig {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            seed: self.seed,
        };
        Sampler::new(config).map_err(js_error)
    }
}

/// Streams a generation to the worker's callbacks. A throwing callback does not stop the generation (a throwing
/// `cancelled` counts as no).
struct JsObserver<'a> {
    on_text: Option<js_sys::Function>,
    cancelled: Option<js_sys::Function>,
    prefilled_ms: Option<f64>,
    memory: MemoryFeed<'a>,
}

impl Observer for JsObserver<'_> {
    fn prefilled(&mut self, _: &Prefill) {
        self.prefilled_ms = Some(js_sys::Date::now());
    }

    fn text(&mut self, text: &str) {
        if let Some(f) = &self.on_text {
            let _ = f.call2(&JsValue::NULL, &JsValue::from_str(text), &self.memory.due());
        }
    }

    fn cancelled(&mut self) -> bool {
        let ask = |f: &js_sys::Function| f.call0(&JsValue::NULL).ok().and_then(|v| v.as_bool());
        self.cancelled.as_ref().and_then(ask).unwrap_or(false)
    }
}

#[wasm_bindgen]
impl Engine {
    /// Continues `prompt` (ids) under `settings` (JSON: `max_tokens`, `temperature`, `top_k`, `top_p`, `min_p`,
    /// `repeat_penalty`, `repeat_last_n`, `seed`, `stop`; all optional, greedy by default), stopping also at the
    /// model's end-of-generation tokens. Calls `on_text(text, memory)` as text becomes final (`memory` as `load`'s
    /// progress gives it) and asks `cancelled()` before
    /// each token, so the worker can stream and cancel between tokens. The cached prefix of an earlier call is
    /// reused. Returns JSON: `tokens`, `text`, `stop`, `prompt_tokens`, `reused_tokens`, `prefill_ms`, `decode_ms`.
    pub async fn generate(
        &mut self,
        prompt: Vec<u32>,
        settings: &str,
        on_text: Option<js_sys::Function>,
        cancelled: Option<js_sys::Function>,
    ) -> Result<String, JsError> {
        let settings = Settings::parse(settings)?;
        self.run(&prompt, settings, on_text, cancelled).await
    }

    /// One assistant turn after `messages` (JSON: `[{"role": "system"|"user"|"assistant", "content": …}, …]`),
    /// rendered with the model's chat template; the template's turn ends join `settings.stop`. The page keeps the
    /// conversation and appends the returned `text` as the assistant's message; the cache keeps the rendered
    /// prefix, so the next turn prefills only what is new. Returns what `generate` returns.
    pub async fn chat(
        &mut self,
        messages: &str,
        settings: &str,
        on_text: Option<js_sys::Function>,
        cancelled: Option<js_sys::Function>,
    ) -> Result<String, JsError> {
        let mut settings = Settings::parse(settings)?;
        let messages: Vec<Message> =
            serde_json::from_str(messages).map_err(|e| JsError::new(&format!("chat messages: {e}")))?;
        let template = self.template.as_ref().ok_or_else(|| JsError::new("this model has no chat template"))?;
        let text = template.render(&messages, &[], false).map_err(js_error)?;
        settings.stop.extend(template.stop_strings());
        let prompt = self.session()?.tokenizer().encode_prompt(&text);
        self.run(&prompt, settings, on_text, cancelled).await
    }

    /// The session's KV cache, its token ids, the last sampler's state and `app` (the page's own JSON: the
    /// conversation) as one checksummed blob, for the page to keep (OPFS, a download).
    #[wasm_bindgen(js_name = saveSession)]
    pub async fn save_session(&self, app: &str) -> Result<Vec<u8>, JsError> {
        let app: serde_json::Value = serde_json::from_str(app).map_err(|e| JsError::new(&format!("app state: {e}")))?;
        self.session()?.snapshot(self.sampler.clone(), app).await.map_err(js_error)
    }

    /// Replaces the session's cache with a saved one of the same model (and adapters and cache type); on any error
    /// the session is as it was. Returns JSON: `app` as saved, `cached_tokens`, and `sampler` (the settings).
    #[wasm_bindgen(js_name = restoreSession)]
    pub async fn restore_session(&mut self, bytes: Vec<u8>) -> Result<String, JsError> {
        let session = self.session_mut()?;
        let restored = session.restore(&bytes).await.map_err(js_error)?;
        let cached_tokens = session.cached().len();
        let json = serde_json::json!({
            "app": restored.app,
            "cached_tokens": cached_tokens,
            "sampler": restored.sampler.config,
        });
        self.sampler = restored.sampler;
        Ok(json.to_string())
    }
}

impl Engine {
    async fn run(
        &mut self,
        prompt: &[u32],
        settings: Settings,
        on_text: Option<js_sys::Function>,
        cancelled: Option<js_sys::Function>,
    ) -> Result<String, JsError> {
        let mut sampler = settings.sampler()?;
        let session = self.session.as_mut().ok_or_else(|| JsError::new("no model is loaded"))?;
        let params =
            GenerateParams { max_tokens: settings.max_tokens, stop_strings: settings.stop, stop_tokens: vec![] };
        let start_ms = js_sys::Date::now();
        let mut observer = JsObserver { on_text, cancelled, prefilled_ms: None, memory: MemoryFeed::new(&self.ctx) };
        let generation = session.generate(prompt, &mut sampler, &params, &mut observer).await.map_err(js_error)?;
        self.sampler = sampler.state();
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
}
