//! `ferrogem inspect` on a LoRA adapter (a PEFT directory or a llama.cpp LoRA GGUF): its format, ranks, α and
//! scales, targets and layers, bytes, and with `--base` whether it fits that model (checked without a GPU).

use super::InspectArgs;
use ferrogem::lora::{LoraAdapter, Target};
use ferrogem::models::gemma::{check_fit, gguf_has_attn_v};
use ferrogem::models::{ModelFile, TextConfig};
use serde::Serialize;
use std::collections::BTreeMap;
use std::process::ExitCode;

#[derive(Serialize)]
struct TargetRow {
    target: String,
    hf_module: String,
    layers: Vec<u32>,
    ranks: Vec<u32>,
    scales: Vec<f32>,
}

#[derive(Serialize)]
struct AdapterReport {
    adapter: String,
    format: String,
    architecture: Option<String>,
    base_model: Option<String>,
    alpha: f32,
    min_rank: u32,
    max_rank: u32,
    updates: usize,
    /// f32 bytes of every A and B (what the GPU holds, with the down-projection scratch besides).
    bytes: u64,
    targets: Vec<TargetRow>,
    /// With `--base`: the model, and `fits` or why not.
    base: Option<String>,
    fits: Option<Result<String, String>>,
}

fn report(path: &str, adapter: &LoraAdapter, base: Option<&str>) -> ferrogem::Result<AdapterReport> {
    let mut by_target: BTreeMap<Target, TargetRow> = BTreeMap::new();
    for u in &adapter.updates {
        let row = by_target.entry(u.target).or_insert_with(|| TargetRow {
            target: u.target.gguf_stem().into(),
            hf_module: u.target.hf_module().into(),
            layers: Vec::new(),
            ranks: Vec::new(),
            scales: Vec::new(),
        });
        row.layers.push(u.layer);
        if !row.ranks.contains(&u.rank) {
            row.ranks.push(u.rank);
        }
        if !row.scales.contains(&u.scale) {
            row.scales.push(u.scale);
        }
    }
    let fits = match base {
        Some(model) => {
            let model = ModelFile::open(model)?;
            let cfg = TextConfig::from_gguf(&model.gguf)?;
            let has_attn_v = gguf_has_attn_v(&model.gguf);
            Some(match check_fit(&cfg, &has_attn_v, adapter) {
                Ok(0) => Ok("fits".into()),
                Ok(unused) => Ok(format!("fits ({unused} k/v updates of KV-shared layers change nothing, as in HF)")),
                Err(e) => Err(e.to_string()),
            })
        }
        None => None,
    };
    let (min_rank, max_rank) = adapter.rank_range();
    Ok(AdapterReport {
        adapter: path.into(),
        format: adapter.format.to_string(),
        architecture: adapter.architecture.clone(),
        base_model: adapter.base_model.clone(),
        alpha: adapter.alpha,
        min_rank,
        max_rank,
        updates: adapter.updates.len(),
        bytes: adapter.size_bytes(),
        targets: by_target.into_values().collect(),
        base: base.map(str::to_owned),
        fits,
    })
}

pub fn run(args: &InspectArgs) -> ferrogem::Result<ExitCode> {
    let adapter = ferrogem::lora::open(std::path::Path::new(&args.model))?;
    let r = report(&args.model, &adapter, args.base.as_deref())?;
    let fits = !matches!(r.fits, Some(Err(_)));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else {
        println!("{} (LoRA adapter, {})", r.adapter, r.format);
        if let Some(a) = &r.architecture {
            println!("  architecture    {a}");
        }
        if let Some(b) = &r.base_model {
            println!("  made for        {b}");
        }
        let ranks =
            if r.min_rank == r.max_rank { r.min_rank.to_string() } else { format!("{}..{}", r.min_rank, r.max_rank) };
        println!("  rank            {ranks}, α {}", r.alpha);
        println!("  updates         {} projections, {:.2} MiB f32", r.updates, r.bytes as f64 / (1 << 20) as f64);
        for t in &r.targets {
            let layers = t.layers.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
            let scales = t.scales.iter().map(|s| format!("{s}")).collect::<Vec<_>>().join(",");
            println!("    {:<12} {:<22} layers {layers}; rank {:?}; scale {scales}", t.target, t.hf_module, t.ranks);
        }
        match (&r.base, &r.fits) {
            (Some(base), Some(Ok(how))) => println!("  on {base}: {how}"),
            (Some(base), Some(Err(why))) => println!("  on {base}: does not fit: {why}"),
            _ => {}
        }
    }
    Ok(if fits { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
