//! LoRA training on the page's device: the loaded model, JSONL data in `ferrogem finetune`'s format, the same steps
//! (`training::run`), progress to a callback, and the trained adapter back as a PEFT adapter's two files, which
//! `applyAdapter` puts on the model for the chat.

use crate::engine::{Engine, MemoryFeed, js_error};
use ferrogem::lora::{LoraAdapter, Target, from_peft, peft_bytes};
use ferrogem::models::gemma::{AppliedAdapter, Checkpointing, FreshLora, LoraTrainer, fresh_adapter};
use ferrogem::ops::adamw::AdamwConfig;
use ferrogem::training::data::{DataOptions, Dataset};
use ferrogem::training::run::TrainRun;
use ferrogem::training::schedule::{LrSchedule, ScheduleKind};
use serde::Deserialize;
use std::sync::Arc;
use wasm_bindgen::prelude::*;

/// `finetune`'s settings and defaults; every field may be left out but `steps`.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    steps: u32,
    seq_len: u32,
    batch: u32,
    rank: u32,
    alpha: f32,
    targets: Vec<String>,
    lr: f32,
    weight_decay: f32,
    warmup: u32,
    schedule: String,
    /// 0: no clipping.
    clip: f32,
    seed: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        let targets = ["q", "k", "v", "o", "gate", "up", "down"].map(String::from).to_vec();
        Settings {
            steps: 0,
            seq_len: 512,
            batch: 1,
            rank: 8,
            alpha: 16.0,
            targets,
            lr: 1e-4,
            weight_decay: 0.0,
            warmup: 0,
            schedule: "linear".into(),
            clip: 1.0,
            seed: 0,
        }
    }
}

fn schedule_kind(name: &str) -> Result<ScheduleKind, JsError> {
    match name {
        "constant" => Ok(ScheduleKind::Constant),
        "linear" => Ok(ScheduleKind::Linear),
        "cosine" => Ok(ScheduleKind::Cosine),
        other => Err(JsError::new(&format!("schedule `{other}`: use constant, linear or cosine"))),
    }
}

#[wasm_bindgen]
impl Engine {
    /// Trains a LoRA adapter on the loaded model over `jsonl` (the trainer allocates its own buffers), with
    /// `settings` as JSON (`steps`, and optionally `seq_len`, `batch`, `rank`, `alpha`, `targets`, `lr`,
    /// `weight_decay`, `warmup`, `schedule`, `clip`, `seed`, as `ferrogem finetune` takes them). It starts from a
    /// fresh adapter, or from the PEFT adapter `init_config` + `init_tensors` (`adapter_config.json`,
    /// `adapter_model.safetensors`). `on_step(step, loss, lr, memory)` follows each step (`memory` as
    /// `load`'s progress gives it). Returns `{losses, adapter_config, adapter_model}`: the loss of every step before
    /// its update, and the trained adapter's two files (text and bytes).
    pub async fn train(
        &mut self,
        jsonl: String,
        settings: &str,
        init_config: Option<String>,
        init_tensors: Option<Vec<u8>>,
        on_step: Option<js_sys::Function>,
    ) -> Result<JsValue, JsError> {
        let s: Settings = serde_json::from_str(settings).map_err(|e| js_error(format!("settings: {e}")))?;
        if s.steps == 0 {
            return Err(JsError::new("settings: `steps` must be at least 1"));
        }
        let template = self.template.ok_or_else(|| JsError::new("the model has no chat template"));
        let ctx = self.ctx.clone();
        let session = self.session_mut()?;
        let template = template?;
        let vocab_size = session.model_mut().config.vocab;
        let options = DataOptions { vocab_size, seq_len: s.seq_len, refuse_long: false };
        let data = Dataset::from_jsonl(&jsonl, session.tokenizer(), template, &options).map_err(js_error)?;
        let model = session.model_mut();
        let adapter: LoraAdapter = match (init_config, init_tensors) {
            (Some(config), Some(tensors)) => from_peft(&config, &tensors).map_err(js_error)?,
            (None, None) => {
                let targets = s
                    .targets
                    .iter()
                    .map(|t| Target::from_name(t).ok_or_else(|| JsError::new(&format!("unknown target `{t}`"))))
                    .collect::<Result<Vec<_>, _>>()?;
                let spec = FreshLora { rank: s.rank, alpha: s.alpha, use_rslora: false, targets, seed: s.seed };
                let has_attn_v = |l: usize| model.weights.layers[l].attn_v.is_some();
                fresh_adapter(&model.config, &has_attn_v, &spec).map_err(js_error)?
            }
            _ => return Err(JsError::new("give both of an initial adapter's files, or neither")),
        };
        // A page has the least memory of any device: the backward recomputes each layer.
        let mut trainer =
            LoraTrainer::new(model, &adapter, 1.0, s.seq_len, Checkpointing::PerLayer).map_err(js_error)?;
        let schedule = LrSchedule::new(schedule_kind(&s.schedule)?, s.lr, s.warmup, s.steps).map_err(js_error)?;
        let adamw = AdamwConfig { weight_decay: s.weight_decay, ..AdamwConfig::default() };
        let clip = (s.clip > 0.0).then_some(s.clip);
        let mut run = TrainRun::new(s.batch.max(1) as usize, s.seed, schedule, adamw, clip);
        let mut feed = MemoryFeed::new(&ctx);
        let losses = js_sys::Array::new();
        while trainer.steps() < s.steps {
            let report = run.step(&mut trainer, model, &data).await.map_err(js_error)?;
            losses.push(&report.loss.into());
            if let Some(f) = &on_step {
                let args = js_sys::Array::of4(&report.step.into(), &report.loss.into(), &report.lr.into(), &feed.due());
                // A throwing callback must not stop the run half way; its error is the page's to show.
                let _ = f.apply(&JsValue::NULL, &args);
            }
        }
        let trained = trainer.read_adapter(model).await.map_err(js_error)?;
        let (config, tensors) = peft_bytes(&trained, None).map_err(js_error)?;
        let out = js_sys::Object::new();
        for (key, value) in [
            ("losses", JsValue::from(losses)),
            ("adapter_config", config.into()),
            ("adapter_model", js_sys::Uint8Array::from(tensors.as_slice()).into()),
        ] {
            js_sys::Reflect::set(&out, &key.into(), &value).map_err(|_| JsError::new("could not build the result"))?;
        }
        Ok(out.into())
    }

    /// Applies the PEFT adapter `config` + `tensors` (`adapter_config.json`, `adapter_model.safetensors`: what
    /// `train` returns) with `scale` to the loaded model beside the adapters already applied, as a repeated
    /// `--adapter` does; one applied before under the same `label` is replaced. The sequence restarts (its cached
    /// positions were computed without it). Returns the labels now applied.
    #[wasm_bindgen(js_name = applyAdapter)]
    pub fn apply_adapter(
        &mut self,
        label: String,
        config: &str,
        tensors: &[u8],
        scale: f32,
    ) -> Result<Vec<String>, JsError> {
        let adapter = from_peft(config, tensors).map_err(js_error)?;
        let model = self.session_mut()?.model_mut();
        let mut applied: Vec<AppliedAdapter> = model.lora.as_ref().map_or(Vec::new(), |set| set.adapters.clone());
        applied.retain(|a| a.label != label);
        applied.push(AppliedAdapter { label, adapter: Arc::new(adapter), scale });
        model.set_adapters(&applied).map_err(js_error)?;
        Ok(applied.into_iter().map(|a| a.label).collect())
    }
}

/// The loss curve of `losses` (step 0 first, as `loss.csv` numbers them) as a standalone SVG, drawn as `ferrogem finetune`'s loss.svg is; a
/// free function, so the worker may call it from `train`'s step callback while the engine is busy.
#[wasm_bindgen(js_name = lossSvg)]
pub fn loss_svg(losses: Vec<f64>) -> String {
    let train: Vec<(u32, f64)> = (0..).zip(losses).collect();
    ferrogem_harness::plot::loss::loss_svg(&train, &[])
}
