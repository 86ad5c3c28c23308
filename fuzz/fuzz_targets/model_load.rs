//! Arbitrary bytes as a model file, through everything a load does before the GPU: the GGUF reader, the model
//! config, the tokenizer (and a text through it and back), the chat template, the memory plan for a few context
//! sizes, and for a LoRA adapter GGUF the adapter reader and its fit against the model it names. Start it from the
//! golden files (`fuzz/seed.sh`), which are valid, so mutations reach past the reader.
//! Every failure must be an error: a panic, an abort or an allocation past libFuzzer's `-rss_limit_mb` is a bug.

#![no_main]

use ferrogem::chat::{ChatTemplate, Message};
use ferrogem::gguf::GgufFile;
use ferrogem::lora;
use ferrogem::models::TextConfig;
use ferrogem::models::gemma::GemmaOptions;
use ferrogem::models::gemma::plan::{MemoryPlan, PlanLimits};
use ferrogem::source::MemSource;
use ferrogem::tokenizer::{DecodeSpecial, Special, Tokenizer};
use libfuzzer_sys::fuzz_target;

/// WebGPU's default limits: the binding size is what splits tensors and bounds the KV ring in the plan.
const LIMITS: PlanLimits = PlanLimits { max_storage_buffer_binding_bytes: 128 << 20, max_buffer_bytes: 256 << 20 };

fuzz_target!(|data: &[u8]| {
    let source = MemSource::from(data.to_vec());
    let Ok(gguf) = GgufFile::read(&source) else { return };
    if gguf.get_str("general.type").is_ok_and(|t| t == "adapter") {
        let _ = lora::from_gguf(&gguf, &source);
        return;
    }
    let Ok(cfg) = TextConfig::from_gguf(&gguf) else { return };
    if let Ok(tokenizer) = Tokenizer::from_gguf(&gguf) {
        let ids = tokenizer.encode("Hello <start_of_turn>user\n  tabs\tand ünïcode 🙂", Special::Parse);
        let _ = tokenizer.decode(&ids, DecodeSpecial::Show);
    }
    if let Ok(template) = ChatTemplate::for_model(&gguf) {
        let _ = template.render(&[Message::system("s"), Message::user("u")], &[], false);
    }
    for n_ctx in [1, 4096, 1 << 20] {
        let options = GemmaOptions { n_ctx, ..GemmaOptions::default() };
        let _ = MemoryPlan::new(&gguf, &cfg, &options, LIMITS);
    }
});
