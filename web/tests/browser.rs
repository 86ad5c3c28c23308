//! ferrogem inside Chromium, in a Dedicated Worker as the page runs it, on the browser's WebGPU (SwiftShader in CI:
//! no shader-f16, so the f32 paths): the op registry against its CPU references compiled to wasm, and the tiny
//! Gemma 4 / Gemma 3 models against the independent goldens with the native tolerances. Run by
//! `ci/test-browser.sh`; a browser or adapter that does not start fails the run.

#![cfg(target_arch = "wasm32")]

use ferrogem::gpu::{Context, ContextOptions};
use ferrogem_harness::cases::runner::{Mode, RunOptions, run_case};
use ferrogem_harness::cases::{OpCase, all_cases};
use ferrogem_harness::golden::{LogitAgreement, parse_logits, parse_prompt};
use ferrogem_web::{Engine, JsSource};
use std::collections::BTreeMap;
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

/// The cases run here: each op family's smallest, and every other case up to this many elements, which covers most
/// variants (f16 ones aside: SwiftShader has no shader-f16) without the large shapes whose CPU references take
/// minutes in wasm.
const MAX_ELEMENTS: u64 = 1 << 12;

async fn device(downlevel: bool) -> Context {
    let options = ContextOptions { adapter_filter: None, downlevel, profile: None };
    Context::new(options).await.unwrap_or_else(|e| panic!("the browser gave no WebGPU device: {e}"))
}

/// Every op family in test mode, and in grad mode where it has a backward, on the downlevel device.
#[wasm_bindgen_test]
async fn op_registry_in_the_browser() {
    let ctx = device(true).await;
    let mut by_op: BTreeMap<&'static str, Vec<Box<dyn OpCase>>> = BTreeMap::new();
    for case in all_cases() {
        if case.requires().met_by(ctx.caps()) {
            by_op.entry(case.op()).or_default().push(case);
        }
    }
    let (mut passed, mut failures, mut grad_passed) = (0, Vec::new(), 0);
    for (op, cases) in &mut by_op {
        cases.sort_by_key(|c| c.elems());
        let mut op_passed = 0;
        let chosen = cases.iter().enumerate().take_while(|(i, c)| *i == 0 || c.elems() <= MAX_ELEMENTS);
        for (_, case) in chosen {
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
    console_log!("{passed} test-mode and {grad_passed} grad-mode cases passed over {} op families", by_op.len());
    assert!(failures.is_empty(), "{} failed:\n{}", failures.len(), failures.join("\n"));
    assert!(by_op.len() >= 20 && grad_passed > 0, "only {} op families ran", by_op.len());
}

/// A golden fixture, compiled in: the GGUF, its prompt and greedy continuations, and both peers' logits.
struct Golden {
    name: &'static str,
    gguf: &'static [u8],
    json: &'static [u8],
    hf: &'static [u8],
    llama: &'static [u8],
}

macro_rules! golden {
    ($name:literal) => {
        Golden {
            name: $name,
            gguf: include_bytes!(concat!("../../golden/fixtures/", $name, ".gguf")),
            json: include_bytes!(concat!("../../golden/fixtures/", $name, ".golden.json")),
            hf: include_bytes!(concat!("../../golden/fixtures/", $name, ".hf_dequant_logits.npy")),
            llama: include_bytes!(concat!("../../golden/fixtures/", $name, ".llama_logits.npy")),
        }
    };
}

/// Gemma 4 and Gemma 3, f32 and a quantized mix (Q4_K, Q5_0, Q6_K, Q8_0, F16 tensors).
fn goldens() -> [Golden; 4] {
    [
        golden!("tiny-gemma4-f32"),
        golden!("tiny-gemma4-Q4_K_M"),
        golden!("tiny-gemma3-f32"),
        golden!("tiny-gemma3-Q4_K_M"),
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
        let json: serde_json::Value = serde_json::from_slice(golden.json).unwrap();
        let hf_greedy: Vec<u32> =
            json["hf_dequant_greedy10"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
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
        let generated = engine.generate(ids.clone(), hf_greedy.len() as u32, None, None).await.unwrap();
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
    let truncated = &golden!("tiny-gemma4-f32").gguf[..1000];
    let source = JsSource::from_bytes("truncated.gguf".into(), js_sys::Uint8Array::from(truncated));
    assert!(engine.load(source, 0, 0, None).is_err(), "a truncated GGUF was accepted");
    let throwing = js_sys::Function::new_no_args("throw new Error('disk gone')");
    let source = JsSource::new("throwing.gguf".into(), 1e6, throwing).unwrap();
    assert!(engine.load(source, 0, 0, None).is_err(), "a source whose reads throw was accepted");
    assert!(JsSource::new("x".into(), -1.0, js_sys::Function::new_no_args("")).is_err());
}
