//! `ferrogem tokenize` and `ferrogem detokenize`: text ↔ ids with a model's own vocabulary, no GPU.

use clap::Args;
use ferrogem::models::ModelFile;
use ferrogem::tokenizer::{DecodeSpecial, Special, Tokenizer};
use serde::Serialize;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Args)]
pub struct TokenizeArgs {
    /// A GGUF path or an Ollama model name (resolved under $OLLAMA_MODELS, default ~/.ollama/models).
    #[arg(long)]
    pub model: String,
    /// The text to tokenize.
    #[arg(long, conflicts_with = "file", required_unless_present = "file")]
    pub text: Option<String>,
    /// A UTF-8 file whose whole contents are tokenized.
    #[arg(long)]
    pub file: Option<std::path::PathBuf>,
    /// Tokenize control-token texts such as `<bos>` or `<|turn>` as plain text instead of as their ids
    /// (user-defined tokens are still matched, as in llama.cpp).
    #[arg(long)]
    pub no_special: bool,
    /// Start with BOS as a prompt does, when the model adds one and the text does not already begin with it.
    #[arg(long)]
    pub bos: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct DetokenizeArgs {
    /// A GGUF path or an Ollama model name (resolved under $OLLAMA_MODELS, default ~/.ollama/models).
    #[arg(long)]
    pub model: String,
    /// Token ids, e.g. `2,818,5279` (or `--ids 2 818 5279`).
    #[arg(long, value_delimiter = ',', num_args = 1.., required = true)]
    pub ids: Vec<u32>,
    /// Write control tokens (`<bos>`, `<turn|>`) as their text instead of leaving them out.
    #[arg(long)]
    pub show_special: bool,
    /// Print JSON instead of the text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct TokenizeReport<'a> {
    model: &'a str,
    tokenizer: &'static str,
    vocab_len: u32,
    parse_special: bool,
    bos_added: bool,
    n_tokens: usize,
    ids: &'a [u32],
    /// Each token's text as the vocabulary stores it (`▁` for a space, `<0x0A>` for a byte).
    pieces: Vec<&'a str>,
    load_ms: f64,
    encode_ms: f64,
}

#[derive(Serialize)]
struct DetokenizeReport<'a> {
    model: &'a str,
    ids: &'a [u32],
    pieces: Vec<&'a str>,
    text: &'a str,
}

/// The model's tokenizer and how long reading it took.
fn load(model: &str) -> ferrogem::Result<(Tokenizer, f64)> {
    let started = Instant::now();
    let opened = ModelFile::open(model)?;
    let tok = Tokenizer::from_gguf(&opened.gguf)?;
    Ok((tok, started.elapsed().as_secs_f64() * 1e3))
}

pub fn run_tokenize(args: TokenizeArgs) -> ferrogem::Result<ExitCode> {
    let text = match (&args.text, &args.file) {
        (Some(text), _) => text.clone(),
        (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| ferrogem::Error::Io {
            action: "read",
            path: path.display().to_string(),
            message: e.to_string(),
        })?,
        (None, None) => unreachable!("clap requires --text or --file"),
    };
    let (tok, load_ms) = load(&args.model)?;
    let special = if args.no_special { Special::AsText } else { Special::Parse };
    let started = Instant::now();
    let mut ids = tok.encode(&text, special);
    let encode_ms = started.elapsed().as_secs_f64() * 1e3;
    let bos = tok.bos().filter(|&bos| args.bos && tok.add_bos() && ids.first() != Some(&bos));
    if let Some(bos) = bos {
        ids.insert(0, bos);
    }
    let pieces: Vec<&str> = ids.iter().map(|&id| tok.piece(id).unwrap_or("")).collect();
    if args.json {
        let report = TokenizeReport {
            model: &args.model,
            tokenizer: tok.kind().name(),
            vocab_len: tok.vocab_len(),
            parse_special: !args.no_special,
            bos_added: bos.is_some(),
            n_tokens: ids.len(),
            ids: &ids,
            pieces,
            load_ms,
            encode_ms,
        };
        println!("{}", serde_json::to_string_pretty(&report).expect("plain data serializes"));
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:>6}  {:>7}  piece", "index", "id");
    for (index, (id, piece)) in ids.iter().zip(&pieces).enumerate() {
        println!("{index:>6}  {id:>7}  {}", piece.escape_debug());
    }
    println!(
        "{} tokens; {} vocabulary of {} tokens read in {load_ms:.1} ms, text encoded in {encode_ms:.2} ms",
        ids.len(),
        tok.kind().name(),
        tok.vocab_len()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run_detokenize(args: DetokenizeArgs) -> ferrogem::Result<ExitCode> {
    let ids = args.ids;
    let (tok, _) = load(&args.model)?;
    if let Some(&id) = ids.iter().find(|&&id| id >= tok.vocab_len()) {
        eprintln!("error: --ids: {id} is past the vocabulary of {} tokens", tok.vocab_len());
        return Ok(ExitCode::FAILURE);
    }
    let special = if args.show_special { DecodeSpecial::Show } else { DecodeSpecial::Skip };
    let text = tok.decode(&ids, special);
    if args.json {
        let pieces = ids.iter().map(|&id| tok.piece(id).unwrap_or("")).collect();
        let report = DetokenizeReport { model: &args.model, ids: &ids, pieces, text: &text };
        println!("{}", serde_json::to_string_pretty(&report).expect("plain data serializes"));
    } else {
        println!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}
