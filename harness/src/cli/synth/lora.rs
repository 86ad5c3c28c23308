//! `ferrogem synth-lora`: a deterministic random LoRA adapter for a model, as a llama.cpp LoRA GGUF, for
//! correctness runs on any model (`check model --adapter`) and speed runs on full-size shapes (`bench --adapter`).
//! A ~ U(±1/√in) and B ~ U(±amplitude/√r), so the update's size relative to the base is set by `--amplitude`;
//! α = r, so the adapter's scale is 1.

use clap::Args;
use ferrogem::gguf::{GgufWriter, Value};
use ferrogem::lora::Target;
use ferrogem::models::gemma::{gguf_has_attn_v, target_shape};
use ferrogem::models::{ModelFile, TextConfig};
use ferrogem::quant::QuantType;
use ferrogem::sampling::SplitMix64;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct SynthLoraArgs {
    /// The base model: a GGUF path or an Ollama model name.
    #[arg(long)]
    pub model: String,
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub rank: u32,
    /// Projections to update, comma-separated GGUF stems or HF names (q,k,v,o,gate,up,down also work), or `all`.
    #[arg(long, default_value = "q,k,v,o,gate,up,down")]
    pub targets: String,
    /// Size of B's entries relative to 1/√r.
    #[arg(long, default_value_t = 0.05)]
    pub amplitude: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub out: PathBuf,
}

fn parse_targets(list: &str) -> Result<Vec<Target>, String> {
    if list == "all" {
        return Ok(Target::ALL.to_vec());
    }
    list.split(',')
        .map(|name| {
            let name = name.trim();
            let short = match name {
                "q" => Some(Target::AttnQ),
                "k" => Some(Target::AttnK),
                "v" => Some(Target::AttnV),
                "o" => Some(Target::AttnOutput),
                "gate" => Some(Target::FfnGate),
                "up" => Some(Target::FfnUp),
                "down" => Some(Target::FfnDown),
                _ => None,
            };
            short.or_else(|| Target::from_gguf_stem(name)).or_else(|| Target::from_hf_module(name)).ok_or_else(|| {
                format!("--targets: `{name}` is not a projection (q,k,v,o,gate,up,down, a GGUF stem or an HF name)")
            })
        })
        .collect()
}

fn uniform(rng: &mut SplitMix64, n: usize, bound: f32) -> Vec<u8> {
    let values: Vec<f32> =
        (0..n).map(|_| ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * bound).collect();
    bytemuck::cast_slice(&values).to_vec()
}

pub fn run(args: SynthLoraArgs) -> ferrogem::Result<ExitCode> {
    let unsupported = |reason: String| ferrogem::Error::Unsupported { op: "synth-lora".into(), reason };
    let targets = parse_targets(&args.targets).map_err(unsupported)?;
    if !args.amplitude.is_finite() {
        return Err(unsupported(format!("--amplitude {} is not a finite number", args.amplitude)));
    }
    let model = ModelFile::open(&args.model)?;
    let cfg = TextConfig::from_gguf(&model.gguf)?;
    let has_attn_v = gguf_has_attn_v(&model.gguf);
    let arch = cfg.arch.gguf_name();
    let mut w = GgufWriter::new(3);
    w.add_metadata("general.architecture", Value::String(arch.into()));
    w.add_metadata("general.type", Value::String("adapter".into()));
    w.add_metadata(
        "general.name",
        Value::String(format!("synthetic LoRA r{} seed {} for {}", args.rank, args.seed, model.display)),
    );
    w.add_metadata("adapter.type", Value::String("lora".into()));
    w.add_metadata("adapter.lora.alpha", Value::F32(args.rank as f32));
    let mut rng = SplitMix64(args.seed);
    let (mut pairs, mut bytes) = (0usize, 0u64);
    let r = args.rank;
    for l in 0..cfg.n_layers() {
        for &target in &targets {
            // Projections the model lacks or never uses (k/v of KV-shared layers) are skipped, as PEFT and
            // llama.cpp's converter skip them.
            let Ok(Some((out_dim, in_dim))) = target_shape(&cfg, &has_attn_v, l, target) else { continue };
            let name = format!("blk.{l}.{}.weight", target.gguf_stem());
            let a = uniform(&mut rng, (r * in_dim) as usize, 1.0 / (in_dim as f32).sqrt());
            let b = uniform(&mut rng, (out_dim * r) as usize, args.amplitude / (r as f32).sqrt());
            bytes += (a.len() + b.len()) as u64;
            w.add_tensor(format!("{name}.lora_a"), &[in_dim as u64, r as u64], QuantType::F32, a);
            w.add_tensor(format!("{name}.lora_b"), &[r as u64, out_dim as u64], QuantType::F32, b);
            pairs += 1;
        }
    }
    if pairs == 0 {
        return Err(unsupported(format!("the model has none of the projections `{}`", args.targets)));
    }
    let file = w.to_bytes()?;
    std::fs::write(&args.out, file).map_err(|e| ferrogem::Error::Io {
        action: "write",
        path: args.out.display().to_string(),
        message: e.to_string(),
    })?;
    eprintln!("wrote {}: {pairs} projections, rank {r}, {bytes} bytes of f32 A and B", args.out.display());
    Ok(ExitCode::SUCCESS)
}
