//! `ferrogem synth`: deterministic synthetic Gemma models with the real models' metadata and tensor shapes and
//! random weights, for performance and memory work on full-size shapes without the real weights. The same
//! `--seed` gives the same bytes; the tensor types follow llama.cpp's quantization recipes.

pub mod lora;
mod metadata;
mod presets;
mod quantize;
mod store;
mod tensors;
mod writer;

use clap::Args;
use ferrogem::gguf::GgufFile;
use ferrogem::source::MmapSource;
use metadata::Naming;
use presets::{ArchArg, Preset, PresetArg};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use tensors::QuantMix;

#[derive(Args)]
pub struct SynthArgs {
    #[arg(long, value_enum)]
    pub arch: ArchArg,
    /// gemma4: tiny, e2b, e4b; gemma3: tiny, 270m.
    #[arg(long, value_enum)]
    pub preset: PresetArg,
    /// The file type, chosen per tensor as llama-quantize does (Q4_K_M: Q6_K embeddings and some attn_v/ffn_down,
    /// Q5_0/Q8_0/F16 where rows do not fit the blocks, F32 vectors).
    #[arg(long, value_enum, ignore_case = true)]
    pub quant: QuantMix,
    /// The GGUF to write (optional with --ollama-store).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Metadata as llama.cpp or Ollama writes it; default: ollama with --ollama-store, else llamacpp.
    #[arg(long, value_enum)]
    pub naming: Option<Naming>,
    /// Also install the model into this Ollama models directory (blob, params, config, manifest).
    #[arg(long, requires = "name")]
    pub ollama_store: Option<PathBuf>,
    /// The Ollama name for --ollama-store, e.g. gemma4:e2b.
    #[arg(long, requires = "ollama_store")]
    pub name: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Generator threads; default: every core.
    #[arg(long)]
    pub threads: Option<usize>,
}

fn unsupported(reason: impl Into<String>) -> ferrogem::Error {
    ferrogem::Error::Unsupported { op: "synth".into(), reason: reason.into() }
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl Fn(std::io::Error) -> ferrogem::Error + 'a {
    move |e| ferrogem::Error::Io { action, path: path.display().to_string(), message: e.to_string() }
}

pub fn run(args: SynthArgs) -> ferrogem::Result<ExitCode> {
    let preset = Preset::new(args.arch, args.preset).map_err(unsupported)?;
    let naming = args.naming.unwrap_or(if args.ollama_store.is_some() { Naming::Ollama } else { Naming::Llamacpp });
    if let Some(name) = &args.name {
        // A bad name fails now, not after minutes of generation.
        ferrogem::ollama::ModelName::parse(name)?;
    }
    let path = match (&args.out, &args.ollama_store) {
        (Some(out), _) => out.clone(),
        (None, Some(root)) => store::partial_blob_path(root)?,
        (None, None) => return Err(unsupported("give --out, --ollama-store, or both")),
    };
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let t0 = Instant::now();

    let mut plan = tensors::plan(&preset, args.quant);
    if naming == Naming::Ollama {
        tensors::ollama_order(&mut plan);
    }
    let params: u64 = plan.iter().map(|t| t.elems()).sum();
    let kv = metadata::metadata(&preset, args.quant, naming, args.seed, params);
    let layout = writer::layout(kv, &plan).map_err(unsupported)?;

    let mut sink =
        writer::Sink::create(&path, layout.file_bytes(), args.ollama_store.is_some()).map_err(io("create", &path))?;
    sink.write(&layout.header).map_err(io("write", &path))?;
    for (t, &offset) in plan.iter().zip(&layout.offsets_bytes) {
        let start = layout.header.len() as u64 + offset;
        sink.zeros(start - sink.written_bytes()).map_err(io("write", &path))?;
        sink.set_message(t.name.clone());
        quantize::generate(t, args.seed, threads, |bytes| sink.write(bytes)).map_err(unsupported)?;
    }
    sink.zeros(layout.file_bytes() - sink.written_bytes()).map_err(io("write", &path))?;
    let digest = sink.finish().map_err(io("write", &path))?;
    let elapsed = t0.elapsed();

    verify(&path, &plan, &layout)?;
    let mut written = path.display().to_string();
    let mut installed = None;
    if let (Some(root), Some(name), Some(hex)) = (&args.ollama_store, &args.name, &digest) {
        let blob = store::ModelBlob { path: &path, sha256_hex: hex, size_bytes: layout.file_bytes() };
        let manifest = store::install(root, name, blob, &preset, args.quant, params)?;
        if args.out.is_none() {
            written = root.join("blobs").join(format!("sha256-{hex}")).display().to_string();
        }
        installed = Some(format!("  ollama: {name} (blob sha256:{hex}, manifest {})", manifest.display()));
    }
    println!(
        "{written}: {} {} {} ({} naming, seed {}): {} tensors, {params} parameters, {} bytes in {elapsed:.1?}",
        preset.arch_name(),
        preset.label,
        args.quant.name(),
        naming.name(),
        args.seed,
        plan.len(),
        layout.file_bytes(),
    );
    let mut types: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for t in &plan {
        let row = types.entry(t.dtype.name()).or_default();
        row.0 += 1;
        row.1 += t.size_bytes();
    }
    for (dtype, (n, bytes)) in types {
        println!("  {dtype:<6} {n:>5} tensors {bytes:>14} bytes");
    }
    if let Some(line) = installed {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the written header back with the engine's reader: every tensor where the layout put it, and the file
/// exactly as long as the layout says.
fn verify(path: &Path, plan: &[tensors::PlannedTensor], layout: &writer::Layout) -> ferrogem::Result<()> {
    let g = GgufFile::read(&MmapSource::open(path)?)?;
    let len = std::fs::metadata(path).map_err(io("stat", path))?.len();
    let same = g.tensors().len() == plan.len()
        && g.data_offset_bytes() == layout.header.len() as u64
        && len == layout.file_bytes()
        && g.tensors().iter().zip(plan).zip(&layout.offsets_bytes).all(|((got, want), &off)| {
            got.name() == want.name
                && got.dims() == want.dims.as_slice()
                && got.dtype() == want.dtype
                && got.offset_bytes() == layout.header.len() as u64 + off
        });
    if same { Ok(()) } else { Err(unsupported(format!("{} does not read back as written", path.display()))) }
}

/// Lower-case hex of a digest, as Ollama names blobs.
fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
