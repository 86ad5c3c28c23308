//! Adapter files read as PEFT and llama.cpp write them (issue 12): the scale each config implies, the module names
//! of text-only and multimodal checkpoints, and a typed error naming the field or tensor for everything ferrogem
//! does not apply or that is malformed.

use ferrogem::gguf::{GgufWriter, Value};
use ferrogem::lora::{LoraAdapter, LoraError, Target, from_gguf, from_peft};
use ferrogem::quant::QuantType;
use ferrogem::source::MemSource;
use safetensors::{Dtype, tensor::TensorView};

const H: usize = 128;

fn values(name: &str, n: usize) -> Vec<f32> {
    let mut rng = ferrogem::sampling::SplitMix64::from_name(name);
    (0..n).map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5).collect()
}

/// `(key, [rows, cols])` tensors in a safetensors file, F32.
fn safetensors_file(tensors: &[(String, [usize; 2])]) -> Vec<u8> {
    let data: Vec<(String, Vec<u8>, [usize; 2])> = tensors
        .iter()
        .map(|(k, shape)| (k.clone(), bytemuck::cast_slice(&values(k, shape[0] * shape[1])).to_vec(), *shape))
        .collect();
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(k, bytes, shape)| (k.clone(), TensorView::new(Dtype::F32, shape.to_vec(), bytes).unwrap()))
        .collect();
    safetensors::serialize(views, None).unwrap()
}

/// lora_A `[r][in]` and lora_B `[out][r]` of `module` (e.g. `model.layers.1.self_attn.q_proj`).
fn pair(module: &str, r: usize, in_dim: usize, out_dim: usize) -> Vec<(String, [usize; 2])> {
    vec![
        (format!("base_model.model.{module}.lora_A.weight"), [r, in_dim]),
        (format!("base_model.model.{module}.lora_B.weight"), [out_dim, r]),
    ]
}

fn config(extra: &str) -> String {
    format!(r#"{{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "bias": "none", "target_modules": ["q_proj"]{extra}}}"#)
}

fn scale_of(adapter: &LoraAdapter, layer: u32, target: Target) -> f32 {
    adapter.updates.iter().find(|u| u.layer == layer && u.target == target).expect("update").scale
}

#[test]
fn peft_scales_follow_rslora_and_the_rank_and_alpha_patterns() {
    let mut tensors = pair("model.layers.1.self_attn.q_proj", 4, H, H);
    tensors.extend(pair("model.layers.1.self_attn.o_proj", 2, H, H));
    tensors.extend(pair("model.layers.3.mlp.down_proj", 4, 256, H));
    let file = safetensors_file(&tensors);
    let plain = from_peft(&config(r#", "rank_pattern": {"o_proj": 2}"#), &file).unwrap();
    assert_eq!(scale_of(&plain, 1, Target::AttnQ), 2.0);
    assert_eq!(scale_of(&plain, 1, Target::AttnOutput), 4.0);
    let rs = config(r#", "use_rslora": true, "rank_pattern": {"o_proj": 2}, "alpha_pattern": {"down_proj": 4}"#);
    let rs = from_peft(&rs, &file).unwrap();
    assert_eq!(scale_of(&rs, 1, Target::AttnQ), 8.0 / 2.0);
    assert!((scale_of(&rs, 1, Target::AttnOutput) - 8.0 / 2f32.sqrt()).abs() < 1e-6);
    assert_eq!(scale_of(&rs, 3, Target::FfnDown), 4.0 / 2.0);
    let down = rs.updates.iter().find(|u| u.target == Target::FfnDown).unwrap();
    assert_eq!((down.rank, down.in_dim, down.out_dim), (4, 256, H as u32));
    assert_eq!(down.a, values("base_model.model.model.layers.3.mlp.down_proj.lora_A.weight", 4 * 256));
    assert_eq!(rs.targets().len(), 3);
}

#[test]
fn a_pattern_names_one_layer_by_its_full_module_path() {
    let mut tensors = pair("model.layers.1.self_attn.q_proj", 4, H, H);
    tensors.extend(pair("model.layers.2.self_attn.q_proj", 8, H, H));
    let adapter =
        from_peft(&config(r#", "rank_pattern": {"model.layers.2.self_attn.q_proj": 8}"#), &safetensors_file(&tensors))
            .unwrap();
    assert_eq!(scale_of(&adapter, 1, Target::AttnQ), 2.0);
    assert_eq!(scale_of(&adapter, 2, Target::AttnQ), 1.0);
}

#[test]
fn multimodal_checkpoints_name_the_text_layers_under_language_model() {
    let tensors = pair("model.language_model.layers.5.mlp.gate_proj", 4, H, 256);
    let adapter = from_peft(&config(""), &safetensors_file(&tensors)).unwrap();
    assert_eq!((adapter.updates[0].layer, adapter.updates[0].target), (5, Target::FfnGate));
    let vision = pair("model.vision_tower.encoder.layers.0.self_attn.q_proj", 4, H, H);
    let err = from_peft(&config(""), &safetensors_file(&vision)).unwrap_err();
    assert!(matches!(err, LoraError::Unsupported { .. }) && err.to_string().contains("vision"), "{err}");
}

#[test]
fn what_peft_can_do_and_ferrogem_does_not_apply_is_refused_by_field() {
    let file = safetensors_file(&pair("model.layers.0.self_attn.q_proj", 4, H, H));
    for (extra, field) in [
        (r#", "use_dora": true"#, "use_dora"),
        (r#", "bias": "all""#, "bias"),
        (r#", "modules_to_save": ["lm_head"]"#, "modules_to_save"),
        (r#", "peft_type": "IA3""#, "peft_type"),
    ] {
        let text = config(extra).replacen(r#""peft_type": "LORA", "#, "", usize::from(extra.contains("peft_type")));
        let text = text.replacen(r#""bias": "none", "#, "", usize::from(extra.contains("bias")));
        let err = from_peft(&text, &file).unwrap_err();
        assert!(matches!(err, LoraError::Unsupported { .. }), "{extra}: {err}");
        assert!(err.to_string().contains(&format!("`{field}`")), "{extra}: {err}");
    }
    let mut dora = pair("model.layers.0.self_attn.q_proj", 4, H, H);
    dora.push(("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector".into(), [1, H]));
    let err = from_peft(&config(""), &safetensors_file(&dora)).unwrap_err();
    assert!(err.to_string().contains("DoRA"), "{err}");
}

#[test]
fn malformed_configs_and_tensors_are_refused_with_what_is_wrong() {
    let good = safetensors_file(&pair("model.layers.0.self_attn.q_proj", 4, H, H));
    let cases: Vec<(String, Vec<u8>, &str)> = vec![
        ("not json".into(), good.clone(), "adapter_config.json"),
        (r#"{"lora_alpha": 8}"#.into(), good.clone(), "`r` is missing"),
        (r#"{"r": 0, "lora_alpha": 8}"#.into(), good.clone(), "`r` is 0"),
        (r#"{"r": 4, "lora_alpha": "x"}"#.into(), good.clone(), "lora_alpha"),
        (config(""), b"not safetensors".to_vec(), "safetensors"),
        // rank 4 in the config, rank 8 in the file
        (config(""), safetensors_file(&pair("model.layers.0.self_attn.q_proj", 8, H, H)), "r = 4"),
        (
            config(""),
            safetensors_file(&[
                ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight".into(), [4, H]),
                ("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight".into(), [H, 2]),
            ]),
            "rank 2 but its lora_A has rank 4",
        ),
        (
            config(""),
            safetensors_file(&[("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight".into(), [4, H])]),
            "lora_B.weight` is missing",
        ),
        (config(""), safetensors_file(&pair("model.layers.0.self_attn.qkv_proj", 4, H, H)), "qkv_proj"),
        (config(""), safetensors_file(&[]), "no LoRA tensors"),
    ];
    for (cfg, file, needle) in cases {
        let err = from_peft(&cfg, &file).unwrap_err().to_string();
        assert!(err.contains(needle), "expected `{needle}` in: {err}");
    }
}

#[test]
fn non_finite_adapter_values_are_refused() {
    let module = "base_model.model.model.layers.0.self_attn.q_proj";
    let a = values("a", 4 * H);
    let mut b = values("b", H * 4);
    b[17] = f32::NAN;
    let (a_key, b_key) = (format!("{module}.lora_A.weight"), format!("{module}.lora_B.weight"));
    let views = [
        (a_key, TensorView::new(Dtype::F32, vec![4, H], bytemuck::cast_slice(&a)).unwrap()),
        (b_key, TensorView::new(Dtype::F32, vec![H, 4], bytemuck::cast_slice(&b)).unwrap()),
    ];
    let file = safetensors::serialize(views, None).unwrap();
    let err = from_peft(&config(""), &file).unwrap_err().to_string();
    assert!(err.contains("NaN at element 17 of B") && err.contains("blk.0.attn_q"), "{err}");
}

fn lora_gguf(general_type: &str, tensors: &[(&str, [u64; 2])]) -> Vec<u8> {
    let mut w = GgufWriter::new(3);
    w.add_metadata("general.architecture", Value::String("gemma4".into()));
    w.add_metadata("general.type", Value::String(general_type.into()));
    w.add_metadata("adapter.type", Value::String("lora".into()));
    w.add_metadata("adapter.lora.alpha", Value::F32(16.0));
    for (name, dims) in tensors {
        let data = values(name, (dims[0] * dims[1]) as usize);
        w.add_tensor(*name, dims, QuantType::F32, bytemuck::cast_slice(&data).to_vec());
    }
    w.to_bytes().unwrap()
}

#[test]
fn llama_cpp_lora_gguf_is_read_with_alpha_over_rank() {
    let bytes = lora_gguf(
        "adapter",
        &[("blk.2.ffn_up.weight.lora_a", [H as u64, 8]), ("blk.2.ffn_up.weight.lora_b", [8, 256])],
    );
    let file = ferrogem::gguf::GgufFile::read(&bytes[..]).unwrap();
    let adapter = from_gguf(&file, &MemSource::new(bytes.clone())).unwrap();
    let u = &adapter.updates[0];
    assert_eq!((u.layer, u.target, u.rank, u.in_dim, u.out_dim, u.scale), (2, Target::FfnUp, 8, H as u32, 256, 2.0));
    assert_eq!(adapter.architecture.as_deref(), Some("gemma4"));
    assert_eq!(u.a, values("blk.2.ffn_up.weight.lora_a", 8 * H));
}

#[test]
fn a_gguf_that_is_not_a_lora_adapter_or_updates_something_else_is_refused() {
    let model = lora_gguf(
        "model",
        &[("blk.0.attn_q.weight.lora_a", [H as u64, 4]), ("blk.0.attn_q.weight.lora_b", [4, H as u64])],
    );
    let file = ferrogem::gguf::GgufFile::read(&model[..]).unwrap();
    let err = from_gguf(&file, &MemSource::new(model.clone())).unwrap_err();
    assert!(matches!(err, LoraError::NotAnAdapter { .. }), "{err}");
    let embd =
        lora_gguf("adapter", &[("token_embd.weight.lora_a", [H as u64, 4]), ("token_embd.weight.lora_b", [4, 512])]);
    let file = ferrogem::gguf::GgufFile::read(&embd[..]).unwrap();
    let err = from_gguf(&file, &MemSource::new(embd.clone())).unwrap_err().to_string();
    assert!(err.contains("token_embd.weight.lora_a"), "{err}");
}
