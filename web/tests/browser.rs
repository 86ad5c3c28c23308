//! ferrogem inside Chromium, in a Dedicated Worker as the page runs it, on the browser's WebGPU (SwiftShader in CI:
//! no shader-f16, so the f32 paths): the op registry against its CPU references compiled to wasm, and the tiny
//! Gemma 4 / Gemma 3 models against the independent goldens with the native tolerances. Run by
//! `ci/test-browser.sh`; a browser or adapter that does not start fails the run.

#![cfg(target_arch = "wasm32")]

use ferrogem::gpu::{Context, ContextOptions};
use ferrogem_harness::cases::device_subset;
use ferrogem_harness::cases::runner::{Mode, RunOptions, run_case};
use ferrogem_harness::compiled_golden;
use ferrogem_harness::golden::{CompiledGolden, LogitAgreement, parse_ids, parse_logits, parse_prompt};
use ferrogem_web::{Engine, JsSource};
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

/// The cases run here: each op family's smallest, and every other case up to this many elements, which covers most
/// variants (f16 ones aside: SwiftShader has no shader-f16) without the large shapes whose CPU references take
/// minutes in wasm.
const MAX_ELEMENTS: u64 = 1 << 12;

async fn device(downlevel: bool) -> Context {
    let options = ContextOptions { adapter_filter: None, downlevel, profile: None, coop_matrix: false };
    Context::new(options).await.unwrap_or_else(|e| panic!("the browser gave no WebGPU device: {e}"))
}

/// Every op family in test mode, and in grad mode where it has a backward, on the downlevel device.
#[wasm_bindgen_test]
async fn op_registry_in_the_browser() {
    let ctx = device(true).await;
    let subset = device_subset(ctx.caps(), MAX_ELEMENTS);
    let (mut passed, mut failures, mut grad_passed) = (0, Vec::new(), 0);
    for (op, cases) in &subset {
        let mut op_passed = 0;
        for case in cases {
            for mode in [Mode::Test, Mode::Grad] {
                let options = RunOptions { mode, max_elements: u64::MAX, read_gb_per_s: None };
                let row = run_case(&ctx, case.as_ref(), &options).await;
                match row.status.as_str() {
                    "ok" if mode == Mode::Grad => grad_passed += 1,
                    "ok" => op_passed += 1,
                    "no_grad" => continue,
                    _ => failures.push(format!("[{mode:?}] {}", row.line())),
                }
                console_log!("[{mode:?}] {}", row.line());
            }
        }
        if op_passed == 0 {
            failures.push(format!("{op}: no case passed"));
        }
        passed += op_passed;
    }
    console_log!("{passed} test-mode and {grad_passed} grad-mode cases passed over {} op families", subset.len());
    assert!(failures.is_empty(), "{} failed:\n{}", failures.len(), failures.join("\n"));
    assert!(subset.len() >= 20 && grad_passed > 0, "only {} op families ran", subset.len());
}

/// Gemma 4 and Gemma 3, f32 and a quantized mix (Q4_K, Q5_0, Q6_K, Q8_0, F16 tensors).
fn goldens() -> [CompiledGolden; 4] {
    [
        compiled_golden!("tiny-gemma4-f32"),
        compiled_golden!("tiny-gemma4-Q4_K_M"),
        compiled_golden!("tiny-gemma3-f32"),
        compiled_golden!("tiny-gemma3-Q4_K_M"),
    ]
}

fn memory(engine: &Engine) -> serde_json::Value {
    serde_json::from_str(&engine.memory().unwrap()).unwrap()
}

/// Through the API the worker calls: the model is read from JS memory through a [`JsSource`], its prefill logits
/// of the golden prompt are held to the native tolerances against HF transformers and llama.cpp, its greedy
/// continuation equals HF's, and unloading frees every byte.
async fn goldens_on(downlevel: bool) {
    let mode = if downlevel { "downlevel" } else { "full" };
    let mut engine = Engine::create(downlevel).await.unwrap_or_else(|e| panic!("no WebGPU device: {e:?}"));
    let mut failures = Vec::new();
    for golden in goldens() {
        let name = golden.name;
        let ids = parse_prompt(golden.json).unwrap();
        let hf_greedy = parse_ids(golden.json, "hf_dequant_greedy10").unwrap();
        let hf = parse_logits(golden.hf).unwrap().concat();
        let llama = parse_logits(golden.llama).unwrap().concat();

        let source = JsSource::from_bytes(name.into(), js_sys::Uint8Array::from(golden.gguf));
        let progress =
            js_sys::Function::new_with_args("uploaded, total", "globalThis.loadProgress = [uploaded, total]");
        engine.load(source, 64, 64, Some(progress)).unwrap_or_else(|e| panic!("{name}: load: {e:?}"));
        let last_progress = js_sys::Reflect::get(&js_sys::global(), &"loadProgress".into()).unwrap();
        let last_progress: Vec<f64> = js_sys::Array::from(&last_progress).iter().map(|v| v.as_f64().unwrap()).collect();
        if last_progress.len() != 2 || last_progress[0] != last_progress[1] || last_progress[1] <= 0.0 {
            failures.push(format!("[{mode}] {name}: the last progress call was {last_progress:?}"));
        }
        let logits = engine.logits(ids.clone()).await.unwrap_or_else(|e| panic!("{name}: logits: {e:?}"));
        let st = LogitAgreement::measure(&logits, hf.len() / ids.len(), &hf, &llama);
        let generated = engine
            .generate(ids.clone(), &format!(r#"{{"max_tokens": {}}}"#, hf_greedy.len()), None, None)
            .await
            .unwrap();
        let generated: serde_json::Value = serde_json::from_str(&generated).unwrap();
        let greedy: Vec<u32> =
            generated["tokens"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let loaded_bytes = memory(&engine)["live_bytes"].as_u64().unwrap();
        engine.unload();
        let live_after = memory(&engine)["live_bytes"].as_u64().unwrap();
        console_log!(
            "[{mode}] {name:<20} max|Δ|HF {:.2e} NMSE {:.2e} argmax=HF {}/{n} =llama {}/{n} greedy {:?} {} bytes on the GPU",
            st.max_abs,
            st.nmse,
            st.agree_hf,
            st.agree_llama,
            greedy,
            loaded_bytes,
            n = ids.len()
        );
        failures.extend(st.shortfalls().into_iter().map(|s| format!("[{mode}] {name}: {s}")));
        if greedy != hf_greedy {
            failures.push(format!("[{mode}] {name}: greedy {greedy:?}, HF {hf_greedy:?}"));
        }
        if live_after != 0 {
            failures.push(format!("[{mode}] {name}: {live_after} bytes live after unload"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[wasm_bindgen_test]
async fn model_goldens_downlevel() {
    goldens_on(true).await;
}

#[wasm_bindgen_test]
async fn model_goldens_full() {
    goldens_on(false).await;
}

/// The device report the page shows, and refusals as typed errors rather than panics.
#[wasm_bindgen_test]
async fn device_report_and_bad_input() {
    let mut engine = Engine::create(true).await.unwrap();
    let device: serde_json::Value = serde_json::from_str(&engine.device().unwrap()).unwrap();
    assert_eq!(device["downlevel"], true, "{device}");
    assert_eq!(device["f16"], false, "{device}");
    assert!(engine.logits(vec![2, 3]).await.is_err(), "logits with no model loaded");
    let truncated = &compiled_golden!("tiny-gemma4-f32").gguf[..1000];
    let source = JsSource::from_bytes("truncated.gguf".into(), js_sys::Uint8Array::from(truncated));
    assert!(engine.load(source, 0, 0, None).is_err(), "a truncated GGUF was accepted");
    let throwing = js_sys::Function::new_no_args("throw new Error('disk gone')");
    let source = JsSource::new("throwing.gguf".into(), 1e6, throwing).unwrap();
    assert!(engine.load(source, 0, 0, None).is_err(), "a source whose reads throw was accepted");
    assert!(JsSource::new("x".into(), -1.0, js_sys::Function::new_no_args("")).is_err());
}

fn tiny_source() -> JsSource {
    let golden = compiled_golden!("tiny-gemma4-f32");
    JsSource::from_bytes(golden.name.into(), js_sys::Uint8Array::from(golden.gguf))
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The chat tab's calls: a conversation in the model's template, sampling that repeats under one seed, a stop
/// string that ends the text before it, and a saved session restored after the cache moved on.
#[wasm_bindgen_test]
async fn chat_sampling_stop_strings_and_saved_sessions() {
    let mut engine = Engine::create(true).await.unwrap();
    engine.load(tiny_source(), 64, 128, None).unwrap();
    let messages = r#"[{"role": "user", "content": "Hello"}]"#;
    let turn = json(&engine.chat(messages, r#"{"max_tokens": 8}"#, None, None).await.unwrap());
    assert!(turn["prompt_tokens"].as_u64().unwrap() > 3, "{turn}");
    assert!(engine.chat("not json", "", None, None).await.is_err(), "malformed messages were accepted");
    assert!(engine.generate(vec![2], r#"{"temperature": -1}"#, None, None).await.is_err(), "a negative temperature");
    assert!(engine.generate(vec![2], r#"{"tempreature": 1}"#, None, None).await.is_err(), "a misspelt setting");

    let sampled = r#"{"max_tokens": 12, "temperature": 1.5, "top_k": 50, "seed": 7}"#;
    let prompt = engine.tokenize("The capital of France is").unwrap();
    let first = json(&engine.generate(prompt.clone(), sampled, None, None).await.unwrap());
    let again = json(&engine.generate(prompt.clone(), sampled, None, None).await.unwrap());
    assert_eq!(first["tokens"], again["tokens"], "one seed, two different samples");
    let greedy = json(&engine.generate(prompt.clone(), r#"{"max_tokens": 12}"#, None, None).await.unwrap());
    assert_ne!(first["tokens"], greedy["tokens"], "temperature 1.5 sampled exactly the greedy tokens");

    // A stop string taken from the middle of the greedy text: the generation ends there, without it.
    let text = greedy["text"].as_str().unwrap();
    let cut = text.char_indices().map(|(i, _)| i).nth(text.chars().count() / 2).unwrap();
    let stop = &text[cut..cut + text[cut..].chars().next().unwrap().len_utf8()];
    let settings = serde_json::json!({"max_tokens": 12, "stop": [stop]}).to_string();
    let stopped = json(&engine.generate(prompt.clone(), &settings, None, None).await.unwrap());
    assert_eq!(stopped["stop"], "stop_string", "{stopped}");
    assert!(text.starts_with(stopped["text"].as_str().unwrap()) && !stopped["text"].as_str().unwrap().contains(stop));

    let saved = engine.save_session(r#"{"conversation": "kept"}"#).await.unwrap();
    // The cache holds the prompt and every sampled token but the last, which was never fed back.
    let cached = prompt.len() + stopped["tokens"].as_array().unwrap().len() - 1;
    engine.generate(vec![2, 3, 4], r#"{"max_tokens": 2}"#, None, None).await.unwrap();
    let restored = json(&engine.restore_session(saved.clone()).await.unwrap());
    assert_eq!(restored["app"]["conversation"], "kept", "{restored}");
    assert_eq!(restored["cached_tokens"].as_u64().unwrap() as usize, cached, "{restored}");
    let after = json(&engine.generate(prompt.clone(), r#"{"max_tokens": 12}"#, None, None).await.unwrap());
    assert_eq!(after["tokens"], greedy["tokens"], "greedy from the restored cache");
    assert!(after["reused_tokens"].as_u64().unwrap() as usize >= prompt.len() - 1, "{after}");
    let mut corrupt = saved;
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 1;
    assert!(engine.restore_session(corrupt).await.is_err(), "a corrupted snapshot was restored");
}

/// The conformance tab's calls (each family's smallest case, the built-in model's check) and the profile tab's,
/// under the profile every browser can serve (a phone's asks for shader-f16, which SwiftShader lacks: refused).
#[wasm_bindgen_test]
async fn conformance_and_profile_tabs() {
    let engine = Engine::create(true).await.unwrap();
    let ops = json(&engine.check_ops(0.0, false, None).await.unwrap());
    assert_eq!(ops["failed"], 0, "{}", ops["failures"]);
    assert!(ops["passed"].as_u64().unwrap() >= 20, "{ops}");
    assert!(ops["csv"].as_str().unwrap().lines().count() > 20 && ops["json"].as_str().unwrap().contains("\"rows\""));
    let model = json(&engine.check_model().await.unwrap());
    assert_eq!(model["failures"], serde_json::json!([]), "{model}");

    let run = json(&ferrogem_web::profile(tiny_source(), "webgpu-default", 8, 4, 64, None, None).await.unwrap());
    assert!(run["error"].is_null(), "{}", run["error"]);
    let summary = &run["summary"];
    assert!(summary["peak_bytes"].as_u64().unwrap() > 0 && summary["after_unload_live_bytes"] == 0, "{summary}");
    assert_eq!(summary["generated_tokens"].as_array().unwrap().len(), 4, "{summary}");
    assert!(run["trajectory_csv"].as_str().unwrap().lines().count() > 10);
    assert!(run["trajectory_svg"].as_str().unwrap().starts_with("<svg"));
    assert!(ferrogem_web::profile(tiny_source(), "no-such-phone", 8, 4, 64, None, None).await.is_err());
    // A phone's profile asks for shader-f16: an adapter without it refuses the profile, naming the feature.
    match ferrogem_web::profile(tiny_source(), "iphone-16e", 8, 4, 64, None, None).await {
        Err(e) => assert!(format!("{e:?}").contains("SHADER_F16"), "{e:?}"),
        Ok(run) => assert!(json(&run)["error"].is_null(), "{run}"),
    }
    assert!(json(&engine.memory().unwrap())["chart"].as_str().unwrap().starts_with("<svg"));
}

/// LoRA training through the API the worker calls: tiny Gemma 4 f32 from PEFT adapter A (golden/lora), the golden
/// prompt as one pre-tokenized sample, 3 steps. The first step's loss against the one HF + peft's logits imply
/// (every row trained), the losses falling, the trained adapter readable by the project's PEFT reader, and every
/// byte of training released afterwards.
#[wasm_bindgen_test]
async fn lora_training_in_the_browser() {
    let mut engine = Engine::create(true).await.unwrap_or_else(|e| panic!("no WebGPU device: {e:?}"));
    let golden = compiled_golden!("tiny-gemma4-f32");
    let ids = parse_prompt(golden.json).unwrap();
    let source = JsSource::from_bytes(golden.name.into(), js_sys::Uint8Array::from(golden.gguf));
    engine.load(source, 32, 33, None).unwrap_or_else(|e| panic!("load: {e:?}"));
    let loaded_bytes = memory(&engine)["live_bytes"].as_u64().unwrap();

    let config = include_str!("../../golden/lora/tiny-gemma4-lora-a/adapter_config.json");
    let tensors = include_bytes!("../../golden/lora/tiny-gemma4-lora-a/adapter_model.safetensors");
    let jsonl = serde_json::json!({ "ids": ids }).to_string();
    let settings = r#"{"steps": 3, "seq_len": 32, "lr": 1e-3, "clip": 0, "schedule": "constant"}"#;
    let out = engine
        .train(jsonl, settings, Some(config.into()), Some(tensors.to_vec()), None)
        .await
        .unwrap_or_else(|e| panic!("train: {e:?}"));
    let get = |key: &str| js_sys::Reflect::get(&out, &key.into()).unwrap();
    let losses: Vec<f64> = js_sys::Array::from(&get("losses")).iter().map(|v| v.as_f64().unwrap()).collect();

    let hf = parse_logits(include_bytes!("../../golden/lora/tiny-gemma4-f32.lora-a.hf_logits.npy")).unwrap();
    let hf_loss = (0..ids.len() - 1)
        .map(|i| {
            let row = &hf[i];
            let max = row.iter().fold(f32::MIN, |m, &x| m.max(x)) as f64;
            let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
            lse - row[ids[i + 1] as usize] as f64
        })
        .sum::<f64>()
        / (ids.len() - 1) as f64;
    let trained = ferrogem::lora::from_peft(
        &get("adapter_config").as_string().unwrap(),
        &js_sys::Uint8Array::new(&get("adapter_model")).to_vec(),
    )
    .unwrap();
    let initial = ferrogem::lora::from_peft(config, tensors).unwrap();
    engine.unload();
    let live_after = memory(&engine)["live_bytes"].as_u64().unwrap();
    console_log!("training: losses {losses:?}, HF + peft's logits imply {hf_loss:.6}; {loaded_bytes} bytes loaded");
    assert!((losses[0] - hf_loss).abs() <= 1e-5 * hf_loss, "first loss {} vs HF {hf_loss}", losses[0]);
    assert!(losses.len() == 3 && losses[1] < losses[0] && losses[2] < losses[1], "{losses:?}");
    assert_eq!(trained.updates.len(), initial.updates.len());
    assert!(trained.updates.iter().zip(&initial.updates).all(|(t, i)| t.a != i.a && t.b != i.b));
    assert_eq!(live_after, 0, "{live_after} bytes live after training and unload");
}
