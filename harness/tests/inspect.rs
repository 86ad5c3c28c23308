//! `ferrogem inspect` on a golden GGUF by path and on an Ollama name in a real-format store.

use std::path::{Path, PathBuf};
use std::process::Command;

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../golden/fixtures").join(name)
}

fn inspect(args: &[&str], models_dir: Option<&Path>) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrogem"));
    cmd.arg("inspect").args(args);
    if let Some(dir) = models_dir {
        cmd.env("OLLAMA_MODELS", dir);
    }
    let out = cmd.output().expect("run ferrogem");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn inspects_a_golden_gguf_by_path() {
    let path = golden("tiny-gemma4-Q4_K_M.gguf");
    let (ok, stdout, stderr) = inspect(&[path.to_str().unwrap(), "--json"], None);
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["architecture"], "gemma4");
    assert_eq!(report["tensor_count"], 102);
    assert_eq!(report["hyperparameters"]["block_count"], 6);
    assert_eq!(report["hyperparameters"]["feed_forward_length"], serde_json::json!([256, 256, 256, 256, 512, 512]));
    let types: Vec<(String, u64)> = report["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["dtype"].as_str().unwrap().to_owned(), t["tensors"].as_u64().unwrap()))
        .collect();
    let expected = [("F16", 6), ("F32", 50), ("Q4_K", 6), ("Q5_0", 34), ("Q6_K", 2), ("Q8_0", 4)];
    assert_eq!(types, expected.iter().map(|(t, n)| (t.to_string(), *n)).collect::<Vec<_>>());
}

#[test]
fn inspects_an_ollama_name_and_lists_present_models_when_missing() {
    use sha2::Digest;
    let root = std::env::temp_dir().join(format!("ferrogem-inspect-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let blob = std::fs::read(golden("tiny-gemma3-Q8_0.gguf")).unwrap();
    let hex: String = sha2::Sha256::digest(&blob).iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(root.join("blobs")).unwrap();
    std::fs::write(root.join(format!("blobs/sha256-{hex}")), &blob).unwrap();
    let manifest_dir = root.join("manifests/registry.ollama.ai/library/gemma3");
    std::fs::create_dir_all(&manifest_dir).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": format!("sha256:{hex}"), "size": blob.len()}],
    });
    std::fs::write(manifest_dir.join("270m"), manifest.to_string()).unwrap();

    let (ok, stdout, stderr) = inspect(&["gemma3:270m"], Some(&root));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("architecture    gemma3") && stdout.contains(&hex), "{stdout}");

    let (ok, _, stderr) = inspect(&["gemma4:e2b"], Some(&root));
    assert!(!ok);
    assert!(stderr.contains("gemma3:270m"), "a missing model names the present ones: {stderr}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_truncated_file_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("ferrogem-inspect-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("truncated.gguf");
    std::fs::write(&bad, &std::fs::read(golden("tiny-gemma4-Q8_0.gguf")).unwrap()[..1000]).unwrap();
    let (ok, _, stderr) = inspect(&[bad.to_str().unwrap()], None);
    assert!(!ok);
    assert!(stderr.starts_with("error: bad model file:") && stderr.contains("byte"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
