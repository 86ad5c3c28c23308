//! `ferrogem tokenize` and `ferrogem detokenize` on the tiny Gemma 4 and the real Gemma 3 270M, against the ids
//! llama.cpp gives (`golden/tokenizer/`, and the 270M prompt in `golden/README.md`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

fn ferrogem(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrogem")).args(args).output().expect("run ferrogem");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// llama.cpp's ids for a corpus entry of a golden (special-token texts parsed, no BOS).
fn llama_ids(golden: &str, case: &str) -> serde_json::Value {
    let path = repo(&format!("golden/tokenizer/{golden}.json"));
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let case = doc["cases"].as_array().unwrap().iter().find(|c| c["name"] == case).unwrap();
    case["llama"]["parse"].clone()
}

#[test]
fn tokenizes_text_and_files_like_llama_cpp() {
    let model = repo("golden/fixtures/tiny-gemma4-f32.gguf");
    let model = model.to_str().unwrap();
    let (ok, stdout, stderr) =
        ferrogem(&["tokenize", "--model", model, "--text", "The capital of France is", "--json"]);
    assert!(ok, "{stderr}");
    let report = json(&stdout);
    assert_eq!(report["ids"], llama_ids("tiny-gemma4", "english_prompt"));
    assert_eq!(report["tokenizer"], "gemma4-bpe");
    assert_eq!(report["bos_added"], false);
    let pieces: String = report["pieces"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(pieces, "The▁capital▁of▁France▁is");

    let text =
        "fn main() {\n    let xs: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", xs);\n}\n";
    let file = std::env::temp_dir().join(format!("ferrogem-tokenize-{}.txt", std::process::id()));
    std::fs::write(&file, text).unwrap();
    let (ok, stdout, stderr) =
        ferrogem(&["tokenize", "--model", model, "--file", file.to_str().unwrap(), "--bos", "--json"]);
    std::fs::remove_file(&file).unwrap();
    assert!(ok, "{stderr}");
    let report = json(&stdout);
    let mut expected = vec![serde_json::json!(2)];
    expected.extend(llama_ids("tiny-gemma4", "code_rust").as_array().unwrap().iter().cloned());
    assert_eq!(report["ids"], serde_json::Value::Array(expected));

    let (ok, stdout, stderr) = ferrogem(&["tokenize", "--model", model, "--text", "<bos>hi"]);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with(" index       id  piece\n     0        2  <bos>\n"), "{stdout}");
    assert!(stdout.contains("gemma4-bpe vocabulary of 512 tokens"), "{stdout}");
    let (ok, stdout, _) = ferrogem(&["tokenize", "--model", model, "--text", "<bos>hi", "--no-special", "--json"]);
    assert!(ok && json(&stdout)["ids"][0] != 2, "{stdout}");

    let (ok, _, stderr) = ferrogem(&["tokenize", "--model", model]);
    assert!(!ok && stderr.contains("--text"), "{stderr}");
}

#[test]
fn detokenizes_ids_and_rejects_ids_past_the_vocabulary() {
    let model = repo("golden/fixtures/tiny-gemma4-f32.gguf");
    let model = model.to_str().unwrap();
    let ids: Vec<String> =
        llama_ids("tiny-gemma4", "english_prompt").as_array().unwrap().iter().map(|id| id.to_string()).collect();
    let ids = format!("2,{}", ids.join(","));
    let (ok, stdout, stderr) = ferrogem(&["detokenize", "--model", model, "--ids", &ids]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "The capital of France is\n");
    let (ok, stdout, stderr) = ferrogem(&["detokenize", "--model", model, "--ids", &ids, "--show-special", "--json"]);
    assert!(ok, "{stderr}");
    assert_eq!(json(&stdout)["text"], "<bos>The capital of France is");

    let (ok, _, stderr) = ferrogem(&["detokenize", "--model", model, "--ids", "2,512"]);
    assert!(!ok && stderr.contains("512 is past the vocabulary of 512 tokens"), "{stderr}");
    let (ok, _, stderr) = ferrogem(&["detokenize", "--model", model, "--ids", "2,x"]);
    assert!(!ok && stderr.contains("'x'"), "{stderr}");
}

#[test]
fn real_gemma3_270m_prompt_ids() {
    let model = std::env::var("FERROGEM_GEMMA3_270M").unwrap_or_else(|_| {
        panic!(
            "FERROGEM_GEMMA3_270M is not set: it names the real Gemma 3 270M Q4_K_M GGUF (`bash ci/fetch-models.sh` \
             fetches it and prints its path; ci/test.sh sets the variable)"
        )
    });
    // llama.cpp's prompt ids (golden/README.md): BOS, then "The capital of France is".
    let (ok, stdout, stderr) =
        ferrogem(&["tokenize", "--model", &model, "--text", "The capital of France is", "--bos", "--json"]);
    assert!(ok, "{stderr}");
    let report = json(&stdout);
    assert_eq!(report["ids"], serde_json::json!([2, 818, 5279, 529, 7001, 563]));
    assert_eq!(report["tokenizer"], "sentencepiece");
    assert_eq!(report["vocab_len"], 262144);
    let (ok, stdout, stderr) = ferrogem(&["detokenize", "--model", &model, "--ids", "2,818,5279,529,7001,563,506"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "The capital of France is the\n");
}
