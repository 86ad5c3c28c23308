//! `ferrogem inspect`: what a GGUF holds, or what a LoRA adapter holds and whether it fits a model (`adapter.rs`),
//! without touching the GPU.

mod adapter;

use clap::Args;
use ferrogem::gguf::{Array, GgufFile, Value};
use ferrogem::models::ModelFile;
use ferrogem::models::skipped_by_text_model;
use serde::Serialize;
use std::collections::BTreeMap;
use std::process::ExitCode;

#[derive(Args)]
pub struct InspectArgs {
    /// A GGUF path, an Ollama model name (resolved under $OLLAMA_MODELS, default ~/.ollama/models), or a LoRA
    /// adapter (a PEFT directory or a llama.cpp LoRA GGUF).
    pub model: String,
    /// For an adapter: the base model to check it against (exit status 1 if it does not fit).
    #[arg(long)]
    pub base: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct TypeRow {
    dtype: String,
    tensors: usize,
    bytes: u64,
}

#[derive(Serialize)]
struct Report {
    model: String,
    path: String,
    ollama_blob_digest: Option<String>,
    gguf_version: u32,
    architecture: String,
    name: Option<String>,
    /// `<arch>.*` metadata: scalars as they are, per-layer arrays as lists.
    hyperparameters: BTreeMap<String, serde_json::Value>,
    tokenizer_model: Option<String>,
    vocab_size: Option<usize>,
    tensor_count: usize,
    tensor_bytes: u64,
    types: Vec<TypeRow>,
    /// (prefix reason, tensor count, bytes) of tensors a text model does not load.
    skipped: Vec<(String, usize, u64)>,
}

fn to_json(value: &Value) -> serde_json::Value {
    use serde_json::json;
    match value {
        Value::U8(v) => json!(v),
        Value::I8(v) => json!(v),
        Value::U16(v) => json!(v),
        Value::I16(v) => json!(v),
        Value::U32(v) => json!(v),
        Value::I32(v) => json!(v),
        Value::F32(v) => json!(v),
        Value::Bool(v) => json!(v),
        Value::String(v) => json!(v),
        Value::Array(a) => array_json(a),
        Value::U64(v) => json!(v),
        Value::I64(v) => json!(v),
        Value::F64(v) => json!(v),
    }
}

fn array_json(array: &Array) -> serde_json::Value {
    use serde_json::json;
    match array {
        Array::U8(v) => json!(v),
        Array::I8(v) => json!(v),
        Array::U16(v) => json!(v),
        Array::I16(v) => json!(v),
        Array::U32(v) => json!(v),
        Array::I32(v) => json!(v),
        Array::F32(v) => json!(v),
        Array::Bool(v) => json!(v),
        Array::String(v) => json!(v),
        Array::Array(v) => serde_json::Value::Array(v.iter().map(array_json).collect()),
        Array::U64(v) => json!(v),
        Array::I64(v) => json!(v),
        Array::F64(v) => json!(v),
    }
}

fn report(opened: &ModelFile) -> ferrogem::Result<Report> {
    let g: &GgufFile = &opened.gguf;
    let arch = g.architecture()?.to_owned();
    let prefix = format!("{arch}.");
    let hyperparameters = g
        .metadata()
        .filter(|(k, _)| k.starts_with(&prefix))
        .map(|(k, v)| (k[prefix.len()..].to_owned(), to_json(v)))
        .collect();
    let mut types: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    let mut skipped: BTreeMap<&'static str, (usize, u64)> = BTreeMap::new();
    for t in g.tensors() {
        let row = types.entry(t.dtype().name().to_owned()).or_default();
        row.0 += 1;
        row.1 += t.size_bytes();
        if let Some(reason) = skipped_by_text_model(t.name()) {
            let row = skipped.entry(reason).or_default();
            row.0 += 1;
            row.1 += t.size_bytes();
        }
    }
    Ok(Report {
        model: opened.display.clone(),
        path: opened.path.display().to_string(),
        ollama_blob_digest: opened.ollama.as_ref().map(|r| r.model_layer.digest.to_string()),
        gguf_version: g.version(),
        architecture: arch,
        name: g.get_str("general.name").ok().map(str::to_owned),
        hyperparameters,
        tokenizer_model: g.get_str("tokenizer.ggml.model").ok().map(str::to_owned),
        vocab_size: g.get_array("tokenizer.ggml.tokens").ok().map(|a| a.len()),
        tensor_count: g.tensors().len(),
        tensor_bytes: g.tensors().iter().map(|t| t.size_bytes()).sum(),
        types: types.into_iter().map(|(dtype, (tensors, bytes))| TypeRow { dtype, tensors, bytes }).collect(),
        skipped: skipped.into_iter().map(|(r, (n, b))| (r.to_owned(), n, b)).collect(),
    })
}

pub fn run(args: InspectArgs) -> ferrogem::Result<ExitCode> {
    if args.base.is_some() || std::path::Path::new(&args.model).join("adapter_config.json").is_file() {
        return adapter::run(&args);
    }
    let opened = ModelFile::open(&args.model)?;
    if opened.gguf.get_str("general.type").is_ok_and(|t| t == "adapter") {
        return adapter::run(&args);
    }
    let r = report(&opened)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    println!("{} ({})", r.model, r.path);
    if let Some(d) = &r.ollama_blob_digest {
        println!("  ollama blob     {d}");
    }
    println!("  gguf version    {}", r.gguf_version);
    println!(
        "  architecture    {}{}",
        r.architecture,
        r.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()
    );
    if let Some(t) = &r.tokenizer_model {
        println!("  tokenizer       {t}, {} tokens", r.vocab_size.unwrap_or(0));
    }
    println!("  hyperparameters");
    for (k, v) in &r.hyperparameters {
        println!("    {k:<40} {v}");
    }
    println!("  tensors         {} ({:.2} MiB)", r.tensor_count, r.tensor_bytes as f64 / (1 << 20) as f64);
    for t in &r.types {
        println!("    {:<8} {:>5} tensors {:>12} bytes", t.dtype, t.tensors, t.bytes);
    }
    if r.skipped.is_empty() {
        println!("  skipped         none (every tensor belongs to the text model)");
    } else {
        for (reason, n, bytes) in &r.skipped {
            println!("  skipped         {n} tensors, {bytes} bytes: {reason}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
