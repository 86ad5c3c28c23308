//! Bad arguments and a closed stdout (issue 15): each bad value is refused by the command line, naming the flag and
//! its valid range, before a model is opened; a command whose reader went away ends quietly, without a panic. No
//! GPU is needed: every refusal happens before a device is requested, and the pipe tests use GPU-free commands.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../golden/fixtures/tiny-gemma4-f32.gguf")
}

fn ferrogem(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrogem")).args(args).output().expect("run ferrogem");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn out_of_range_sampler_settings_are_refused_naming_the_flag() {
    let model = tiny_model();
    let model = model.to_str().unwrap();
    let bad = [
        ("--temp", "-1"),
        ("--temp", "NaN"),
        ("--temp", "inf"),
        ("--top-p", "2"),
        ("--top-p", "-0.5"),
        ("--min-p", "-1"),
        ("--min-p", "5"),
        ("--repeat-penalty", "-3"),
        ("--temp", "warm"),
    ];
    for (flag, value) in bad {
        for command in ["generate", "chat"] {
            let mut args = vec![command, "--model", model, flag, value];
            if command == "generate" {
                args.extend(["--prompt", "hi"]);
            }
            let (ok, stderr) = ferrogem(&args);
            assert!(!ok, "{command} {flag} {value} was accepted");
            let named = stderr.contains(&format!("'{flag} <")) && stderr.contains(value);
            let explained = stderr.contains("out of range") || stderr.contains("not a number");
            assert!(named && explained && !stderr.contains("panicked"), "{command} {flag} {value}: {stderr}");
        }
    }
}

#[test]
fn malformed_token_lists_and_a_zero_chunk_are_refused() {
    let model = tiny_model();
    let model = model.to_str().unwrap();
    let out = std::env::temp_dir().join(format!("ferrogem-bad-input-{}.npy", std::process::id()));
    let out = out.to_str().unwrap();
    for (tokens, why) in [("2,,3", "token id 2 of `2,,3` is empty"), ("2,3,", "token id 3"), ("2,x", "`x`")] {
        let (ok, stderr) = ferrogem(&["logits", "--model", model, "--tokens", tokens, "--out", out]);
        assert!(!ok && stderr.contains(why), "--tokens {tokens}: {stderr}");
    }
    let (ok, stderr) = ferrogem(&["logits", "--model", model, "--tokens", "2", "--out", out, "--max-chunk", "0"]);
    assert!(!ok && stderr.contains("--max-chunk") && stderr.contains("0"), "{stderr}");
    assert!(!Path::new(out).exists(), "nothing is written for a refused command");
}

#[test]
fn missing_paths_directories_and_devices_say_what_they_are() {
    for (arg, why) in [
        ("no/such/model.gguf", "no such file"),
        ("./missing", "no such file"),
        ("/dev/null", "not a regular file"),
        ("/tmp", "a directory"),
    ] {
        let (ok, stderr) = ferrogem(&["inspect", arg]);
        assert!(!ok && stderr.contains(why) && !stderr.contains("host"), "{arg}: {stderr}");
    }
}

/// The reader closes its end before the command writes anything (as `| head -c 0` would), so the first write meets
/// a closed pipe. The command must end without a panic: exit 0, or killed by SIGPIPE as other Unix tools are.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let model = tiny_model();
    let model = model.to_str().unwrap();
    let commands: [&[&str]; 4] = [
        &["inspect", model],
        &["inspect", model, "--json"],
        &["tokenize", "--model", model, "--text", "The capital of France is"],
        &["detokenize", "--model", model, "--ids", "2,100,200"],
    ];
    for args in commands {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferrogem"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ferrogem");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait for ferrogem");
        let stderr = String::from_utf8_lossy(&out.stderr);
        #[cfg(unix)]
        let quiet = out.status.success() || std::os::unix::process::ExitStatusExt::signal(&out.status) == Some(13);
        #[cfg(not(unix))]
        let quiet = out.status.success();
        assert!(quiet && !stderr.contains("panicked"), "{args:?}: {:?} {stderr}", out.status);
    }
}
