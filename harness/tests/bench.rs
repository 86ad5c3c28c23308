//! `ferrogem bench` on the tiny Gemma 4 (a GPU test: lavapipe on a CPU-only machine; no adapter fails it). One run
//! appends to a history an older harness wrote (fewer columns) and writes the JSON; the numbers must be sane, the
//! byte model must agree with the file's tensors, and where the device grants timestamps every dispatch the bench
//! counted must show up in the per-kernel table.

use ferrogem::gguf::GgufFile;
use ferrogem::source::MmapSource;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const PROMPT_TOKENS: u32 = 16;
const GEN_TOKENS: u32 = 8;
const REPS: u32 = 2;

fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../golden/fixtures/tiny-gemma4-f32.gguf")
}

fn number(v: &Value, path: &str) -> f64 {
    let mut at = v;
    for key in path.split('.') {
        at = &at[key];
    }
    at.as_f64().unwrap_or_else(|| panic!("{path} is not a number: {at}"))
}

#[test]
fn bench_appends_a_sane_row_and_times_every_dispatch() {
    let dir = std::env::temp_dir().join(format!("ferrogem-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (csv_path, json_path) = (dir.join("history.csv"), dir.join("bench.json"));
    std::fs::write(&csv_path, "commit,date,decode_tok_s\nold,2026-01-01T00:00:00Z,1.0\n").unwrap();

    let model = tiny_model();
    let out = Command::new(env!("CARGO_BIN_EXE_ferrogem"))
        .args(["bench", "--model", model.to_str().unwrap()])
        .args(["--prompt", &PROMPT_TOKENS.to_string(), "--gen", &GEN_TOKENS.to_string(), "--reps", &REPS.to_string()])
        .args(["--csv", csv_path.to_str().unwrap(), "--json", json_path.to_str().unwrap()])
        .output()
        .expect("run ferrogem bench");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "ferrogem bench failed (a GPU adapter is required; see ci/setup.sh):\n{stderr}");
    assert!(stdout.contains("decode") && stdout.contains("tok/s"), "{stdout}");

    // The history: the old row kept, the new one appended under the union of the headers.
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    let rows: Vec<HashMap<String, String>> =
        reader.records().map(|r| header.iter().cloned().zip(r.unwrap().iter().map(str::to_owned)).collect()).collect();
    assert_eq!(rows.len(), 2, "{header:?}");
    assert_eq!(rows[0]["commit"], "old");
    let row = &rows[1];
    assert!(!row["commit"].is_empty() && row["commit"] != "old");
    assert!(row["date"].starts_with("20") && row["date"].ends_with('Z'), "{}", row["date"]);
    assert_eq!(row["model"], "tiny-gemma4-f32.gguf");
    assert_eq!(row["quant"], "F32");
    assert!(!row["adapter"].is_empty());
    let cell = |name: &str| -> f64 { row[name].parse().unwrap_or_else(|_| panic!("{name} = {:?}", row[name])) };
    for what in ["prefill", "decode"] {
        let (median, min, max) =
            (cell(&format!("{what}_tok_s")), cell(&format!("{what}_tok_s_min")), cell(&format!("{what}_tok_s_max")));
        assert!(median.is_finite() && min > 0.0 && min <= median && median <= max, "{what}: {min} {median} {max}");
    }
    assert!(cell("dispatches_per_token") >= 6.0, "at least one dispatch per layer");
    assert!(cell("submissions_per_token") >= 1.0);
    assert!(cell("read_gb_per_s") > 0.0 && cell("achieved_gb_per_s") > 0.0 && cell("read_roofline_pct") > 0.0);
    assert!(cell("memory_peak_bytes") > 0.0);
    assert!((0.0..=1.0).contains(&cell("bind_hit_rate_decode")));

    // The byte model against the file: every text tensor but the PLE table and the KV-shared layers' unused K/V
    // (all f32, uploaded as is) bounds the weights from above; the FFN matrices alone from below.
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let source = MmapSource::open(&model).unwrap();
    let gguf = GgufFile::read(&source).unwrap();
    let tensor_bytes = |keep: &dyn Fn(&str) -> bool| -> f64 {
        gguf.tensors().iter().filter(|t| keep(t.name())).map(|t| t.size_bytes() as f64).sum()
    };
    let upper = tensor_bytes(&|n| n != "per_layer_token_embd.weight");
    let lower = tensor_bytes(&|n| n.contains(".ffn_"));
    let weights = number(&report, "decode_bytes.weights_bytes");
    assert!(lower < weights && weights <= upper, "weights read per token {weights}, expected in ({lower}, {upper}]");
    assert!(number(&report, "decode_bytes.kv_bytes") > 0.0);
    assert!((cell("bytes_per_token") - number(&report, "decode_bytes.total_bytes")).abs() <= 1.0);

    // Timestamps: granted → every counted decode dispatch is in the kernel table, with GPU time; else a reason.
    let timing = &report["gpu_timing"];
    if report["environment"]["timestamps"] == Value::Bool(true) {
        assert_eq!(timing["status"], "measured", "{timing}");
        let kernels = timing["decode"]["kernels"].as_array().expect("decode kernels");
        assert!(!kernels.is_empty(), "the decode kernel table is empty");
        let timed: f64 =
            kernels.iter().filter(|k| k["kernel"] != "copy_buffer_to_buffer").map(|k| number(k, "dispatches")).sum();
        // Timed reps are as many as untimed ones, and their kernel totals are summed.
        let counted = number(&report, "decode.dispatches") * (GEN_TOKENS * REPS) as f64;
        assert_eq!(timed, counted, "dispatches timed vs counted over {REPS} × {GEN_TOKENS} decode steps");
        assert!(kernels.iter().map(|k| number(k, "gpu_ns")).sum::<f64>() > 0.0);
        assert!(stdout.contains("GPU time per decoded token"), "{stdout}");
        assert!(!row["top_kernel"].is_empty());
    } else {
        assert_eq!(timing["status"], "unavailable", "{timing}");
        assert!(timing["reason"].as_str().is_some_and(|r| r.contains("TIMESTAMP_QUERY")), "{timing}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
