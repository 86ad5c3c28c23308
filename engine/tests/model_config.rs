//! Per-layer configuration read from the golden GGUFs (made by HF transformers + llama.cpp's converter).

use ferrogem::gguf::GgufFile;
use ferrogem::models::{Arch, TextConfig};
use ferrogem::source::MmapSource;

fn config(name: &str) -> TextConfig {
    let path = format!("{}/../golden/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let source = MmapSource::open(&path).unwrap();
    TextConfig::from_gguf(&GgufFile::read(&source).unwrap()).unwrap()
}

#[test]
fn tiny_gemma4_layers_follow_the_pattern_and_share_kv_by_type() {
    let c = config("tiny-gemma4-Q4_K_M.gguf");
    assert_eq!((c.arch, c.hidden, c.n_head, c.vocab, c.ple_dim), (Arch::Gemma4, 128, 4, 512, 16));
    assert_eq!(c.attention_scale, 1.0);
    assert_eq!(c.final_softcap, Some(30.0));
    let sliding: Vec<bool> = c.layers.iter().map(|l| l.sliding).collect();
    assert_eq!(sliding, [true, true, true, false, true, false]);
    let head_dims: Vec<u32> = c.layers.iter().map(|l| l.head_dim).collect();
    assert_eq!(head_dims, [32, 32, 32, 64, 32, 64]);
    let ffn: Vec<u32> = c.layers.iter().map(|l| l.ffn_dim).collect();
    assert_eq!(ffn, [256, 256, 256, 256, 512, 512]);
    // Two shared layers: the sliding one reads layer 2 (last sliding owner), the full one layer 3.
    let sources: Vec<usize> = c.layers.iter().map(|l| l.kv_source).collect();
    assert_eq!(sources, [0, 1, 2, 3, 2, 3]);
    assert!(c.donors_agree_with_llama_cpp());
    assert_eq!(c.layers[0].window, Some(8));
    assert_eq!(c.layers[3].window, None);
    assert_eq!((c.layers[0].rope_base, c.layers[3].rope_base), (10_000.0, 1_000_000.0));
}

#[test]
fn tiny_gemma3_uses_the_six_layer_pattern_and_scaled_queries() {
    let c = config("tiny-gemma3-Q8_0.gguf");
    assert_eq!(c.arch, Arch::Gemma3);
    let sliding: Vec<bool> = c.layers.iter().map(|l| l.sliding).collect();
    assert_eq!(sliding, [true, true, true, true, true, false]);
    assert!(c.layers.iter().all(|l| l.owns_kv() && l.head_dim == 32));
    assert!((c.attention_scale - 1.0 / 32f32.sqrt()).abs() < 1e-7);
    assert_eq!(c.final_softcap, None);
}

#[test]
fn real_model_shapes_come_from_metadata_alone() {
    let shapes = |name: &str| {
        let path = format!("{}/../golden/shapes/{name}", env!("CARGO_MANIFEST_DIR"));
        TextConfig::from_gguf(&GgufFile::read(&MmapSource::open(&path).unwrap()).unwrap()).unwrap()
    };
    let e2b = shapes("gemma4-e2b.gguf");
    assert_eq!((e2b.n_layers(), e2b.hidden, e2b.vocab, e2b.ple_dim), (35, 1536, 262_144, 256));
    let full: Vec<usize> = e2b.layers.iter().filter(|l| !l.sliding).map(|l| l.index).collect();
    assert_eq!(full, [4, 9, 14, 19, 24, 29, 34]);
    assert!(e2b.layers[15..].iter().all(|l| l.kv_source == if l.sliding { 13 } else { 14 }));
    assert_eq!((e2b.layers[14].ffn_dim, e2b.layers[15].ffn_dim), (6144, 12288));
    assert!(e2b.donors_agree_with_llama_cpp());
    let e4b = shapes("gemma4-e4b.gguf");
    assert!(e4b.layers[24..].iter().all(|l| l.kv_source == if l.sliding { 22 } else { 23 }));
    assert_eq!(e4b.layers.iter().filter(|l| l.owns_kv()).count(), 24);
    let g3 = shapes("gemma3-270m.gguf");
    assert_eq!(
        (g3.n_layers(), g3.hidden, g3.n_head, g3.layers[0].n_kv_head, g3.layers[0].head_dim),
        (18, 640, 4, 1, 256)
    );
    let full: Vec<usize> = g3.layers.iter().filter(|l| !l.sliding).map(|l| l.index).collect();
    assert_eq!(full, [5, 11, 17]);
    assert_eq!(g3.layers[5].rope_scale, 1.0);
}
