//! `ferrogem finetune` as a user runs it on the tiny Gemma 4 fixture: the files a run leaves (a PEFT adapter that
//! `--adapter` loads, a llama.cpp GGUF, loss.csv / loss.svg, summary.json, checkpoints), a resumed run giving
//! exactly the uninterrupted run's losses, Ctrl-C (a checkpoint, exit 130), and bad data named by its line.
//! GPU tests: no adapter fails them (CI has lavapipe).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const MODEL: &str = "tiny-gemma4-Q4_K_M";

fn ferrogem() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrogem"));
    cmd.env_remove("FERROGEM_DOWNLEVEL");
    cmd
}

fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../golden/fixtures/{MODEL}.gguf"))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrogem-finetune-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Four pre-tokenized samples of 8 ids cut from the golden prompt and a text sample, all of one length so that
/// every step runs the same kernels (a sequence's length picks mat-vec or tiled products).
fn data(dir: &Path) -> PathBuf {
    let ids = ferrogem_harness::golden::prompt(MODEL).unwrap();
    let mut lines: Vec<String> = ids.chunks(8).take(4).map(|c| serde_json::json!({ "ids": c }).to_string()).collect();
    let text: String = "ab".repeat(8);
    lines.push(serde_json::json!({ "text": text }).to_string());
    let path = dir.join("data.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

fn finetune(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut cmd = ferrogem();
    cmd.args(["finetune", "--model", model().to_str().unwrap(), "--data", data.to_str().unwrap()]);
    cmd.args(["--seq-len", "16", "--rank", "4", "--lr", "5e-3", "--batch", "2", "--out", out.to_str().unwrap()]);
    cmd.args(extra).output().unwrap()
}

fn losses(out: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(out.join("loss.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (format!("{}{}", f[0], f[1]), f[2].to_owned())
        })
        .collect()
}

fn ok(output: &std::process::Output) {
    assert!(output.status.success(), "finetune failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// A run's files, and the adapter it wrote moving `logits` away from the base model's.
#[test]
fn a_run_leaves_an_adapter_logs_and_checkpoints() {
    let dir = temp_dir("run");
    let out = dir.join("out");
    ok(&finetune(&data(&dir), &out, &["--steps", "4", "--checkpoint-every", "2", "--export-gguf"]));
    for file in ["adapter_config.json", "adapter_model.safetensors", "adapter.gguf", "loss.csv", "loss.svg"] {
        assert!(out.join(file).is_file(), "{file} is missing");
    }
    // The memory trajectory, with the trainer's categories allocated in the train phase.
    let csv = std::fs::read_to_string(out.join("trajectory.csv")).unwrap();
    for needle in [",lora,", ",optimizer,", ",scratch,", ",train\n"] {
        assert!(csv.contains(needle), "trajectory.csv has no `{needle}`");
    }
    let svg = std::fs::read_to_string(out.join("trajectory.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains(">train</text>"));
    for ckpt in ["checkpoint-2", "checkpoint-4"] {
        assert!(out.join(ckpt).join("state.json").is_file(), "{ckpt} is missing");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 4);
    assert!(summary["last_loss"].as_f64().unwrap() < summary["first_loss"].as_f64().unwrap(), "{summary}");
    assert!(summary["bind_group_hit_rate_after_step_1"].as_f64().unwrap() >= 0.99, "{summary}");
    // The plan of a training run against its measured peak (the bar: within 5%).
    let over_plan = summary["peak_over_plan"].as_f64().unwrap();
    assert!((0.95..=1.05).contains(&over_plan), "peak / plan = {over_plan}: {summary}");
    let losses = losses(&out);
    assert_eq!(losses.len(), 4, "{losses:?}");

    let logits = |adapter: Option<&Path>, file: &str| {
        let path = dir.join(file);
        let mut cmd = ferrogem();
        cmd.args(["logits", "--model", model().to_str().unwrap(), "--tokens", "2,10,20", "--out"]).arg(&path);
        if let Some(a) = adapter {
            cmd.arg("--adapter").arg(a);
        }
        ok(&cmd.output().unwrap());
        std::fs::read(path).unwrap()
    };
    let base = logits(None, "base.npy");
    assert_ne!(logits(Some(&out), "peft.npy"), base, "the PEFT adapter changes nothing");
    assert_ne!(logits(Some(&out.join("adapter.gguf")), "gguf.npy"), base, "the GGUF adapter changes nothing");
}

/// Resuming from the checkpoint after step 2 gives exactly the losses of the run that went on.
#[test]
fn a_resumed_run_has_the_same_losses() {
    let dir = temp_dir("resume");
    let data = data(&dir);
    let (whole, resumed) = (dir.join("whole"), dir.join("resumed"));
    ok(&finetune(&data, &whole, &["--steps", "4", "--checkpoint-every", "2"]));
    let from = whole.join("checkpoint-2");
    ok(&finetune(&data, &resumed, &["--steps", "4", "--resume", from.to_str().unwrap()]));
    assert_eq!(losses(&resumed), losses(&whole));
    let other =
        finetune(&data, &dir.join("other"), &["--steps", "4", "--seed", "3", "--resume", from.to_str().unwrap()]);
    assert!(!other.status.success() && String::from_utf8_lossy(&other.stderr).contains("other settings"));
}

/// Ctrl-C during training: a checkpoint of the steps done, exit 130.
#[cfg(unix)]
#[test]
fn ctrl_c_writes_a_checkpoint_and_exits_130() {
    let dir = temp_dir("interrupt");
    let out = dir.join("out");
    let mut cmd = ferrogem();
    cmd.args(["finetune", "--model", model().to_str().unwrap(), "--data", data(&dir).to_str().unwrap()]);
    cmd.args(["--seq-len", "16", "--steps", "1000", "--out", out.to_str().unwrap()]);
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("training steps") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "finetune ended before training");
    }
    // SAFETY: signalling a child process this test owns.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest}");
    let checkpoint =
        std::fs::read_dir(&out).unwrap().flatten().find(|e| e.file_name().to_string_lossy().starts_with("checkpoint-"));
    assert!(checkpoint.is_some_and(|c| c.path().join("state.json").is_file()), "no checkpoint: {rest}");
}

/// A bad line is named by its number, and nothing is trained.
#[test]
fn a_bad_line_is_named() {
    let dir = temp_dir("bad");
    let path = dir.join("bad.jsonl");
    std::fs::write(&path, "{\"ids\": [1, 2, 3]}\n\n{\"text\": 5}\n").unwrap();
    let output = finetune(&path, &dir.join("out"), &["--steps", "1"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("line 3"), "{stderr}");
}

/// Under a device profile whose ceiling the run's plan exceeds: refused before loading, with the longest
/// --seq-len that fits.
#[test]
fn a_run_over_the_ceiling_is_refused_with_advice() {
    let dir = temp_dir("ceiling");
    let profile = dir.join("small.toml");
    let text = "name = \"small\"\ndescription = \"a 3.5 MB ceiling\"\nceiling_bytes = 3_500_000\n[features]\nshader_f16 = false\nsubgroups = false\n[limits]\n";
    std::fs::write(&profile, text).unwrap();
    let output =
        finetune(&data(&dir), &dir.join("out"), &["--steps", "1", "--device-profile", profile.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("ceiling") && stderr.contains("or less"), "{stderr}");
    assert!(!dir.join("out/summary.json").exists());
}
