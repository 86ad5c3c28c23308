//! The sampler chain, its settings, and stop strings. Distributions are checked against a softmax computed here,
//! with a chi-square bound on many seeded draws.

use ferrogem::Error;
use ferrogem::gguf::{GgufFile, GgufWriter, Value};
use ferrogem::sampling::{
    REPEAT_WHOLE_CONTEXT, Sampler, SamplerConfig, SamplerState, SplitMix64, StopMatcher, StopStep,
};

/// Plain sampling at temperature 1 with every filter off.
fn plain(seed: u64) -> SamplerConfig {
    SamplerConfig { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, repeat_penalty: 1.0, repeat_last_n: 0, seed }
}

/// Logits seeded from a name (FNV-1a, then SplitMix64), in [-4, 4).
fn seeded_logits(name: &str, n: usize) -> Vec<f32> {
    let mut rng = SplitMix64::from_name(name);
    (0..n).map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 8.0 - 4.0).collect()
}

fn softmax(logits: &[f32], temperature: f64) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l)) as f64;
    let w: Vec<f64> = logits.iter().map(|&l| ((l as f64 - max) / temperature).exp()).collect();
    let total: f64 = w.iter().sum();
    w.into_iter().map(|x| x / total).collect()
}

fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn greedy_is_the_argmax_with_ties_to_the_lowest_id() {
    let logits = seeded_logits("greedy", 1000);
    let mut sampler = Sampler::new(SamplerConfig::greedy()).unwrap();
    assert_eq!(sampler.sample(&logits, &[]), argmax(&logits));
    assert_eq!(sampler.sample(&[1.0, 3.0, 3.0, 2.0], &[]), 1);
    let zero_temperature = Sampler::new(SamplerConfig { temperature: 0.0, ..plain(1) }).unwrap().sample(&logits, &[]);
    assert_eq!(zero_temperature, argmax(&logits));
}

#[test]
fn top_k_1_is_greedy_at_any_temperature() {
    let logits = seeded_logits("top_k_1", 5000);
    for (seed, temperature) in [(1, 0.5), (2, 1.0), (3, 5.0), (4, 100.0)] {
        let mut sampler = Sampler::new(SamplerConfig { top_k: 1, temperature, ..plain(seed) }).unwrap();
        for _ in 0..20 {
            assert_eq!(sampler.sample(&logits, &[]), argmax(&logits), "temperature {temperature}");
        }
    }
}

#[test]
fn same_seed_same_sequence_different_seed_differs() {
    let logits = seeded_logits("seeds", 64);
    let run = |seed| {
        let mut sampler = Sampler::new(plain(seed)).unwrap();
        (0..200).map(|_| sampler.sample(&logits, &[])).collect::<Vec<u32>>()
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
}

#[test]
fn state_round_trip_resumes_the_identical_sequence() {
    let logits = seeded_logits("resume", 300);
    let config = SamplerConfig {
        temperature: 0.9,
        top_k: 40,
        top_p: 0.95,
        min_p: 0.02,
        repeat_penalty: 1.1,
        repeat_last_n: 8,
        seed: 7,
    };
    let mut sampler = Sampler::new(config.clone()).unwrap();
    let mut history = Vec::new();
    for _ in 0..25 {
        let id = sampler.sample(&logits, &history);
        history.push(id);
    }
    let saved = serde_json::to_string(&sampler.state()).unwrap();
    let continue_uninterrupted: Vec<u32> = (0..25).map(|_| sampler.sample(&logits, &history)).collect();
    let restored: SamplerState = serde_json::from_str(&saved).unwrap();
    let mut resumed = Sampler::from_state(restored).unwrap();
    assert_eq!(resumed.config(), &config);
    let continue_resumed: Vec<u32> = (0..25).map(|_| resumed.sample(&logits, &history)).collect();
    assert_eq!(continue_uninterrupted, continue_resumed);
}

#[test]
fn top_p_keeps_the_smallest_prefix_reaching_p() {
    // Probabilities 0.5, 0.25, 0.125, 0.125 (ids 2, 0, then 1 and 3, tied: the lower id first).
    let logits = [(0.25f32).ln(), (0.125f32).ln(), (0.5f32).ln(), (0.125f32).ln()];
    let ids = |top_p: f32| {
        let sampler = Sampler::new(SamplerConfig { top_p, ..plain(0) }).unwrap();
        sampler.candidates(&logits, &[]).iter().map(|c| c.id).collect::<Vec<u32>>()
    };
    assert_eq!(ids(0.5), [2]);
    assert_eq!(ids(0.6), [2, 0]);
    assert_eq!(ids(0.74), [2, 0]);
    assert_eq!(ids(0.76), [2, 0, 1]);
    assert_eq!(ids(0.0), [2]);
    assert_eq!(ids(1.0).len(), 4);
    let kept = Sampler::new(SamplerConfig { top_p: 0.6, ..plain(0) }).unwrap().candidates(&logits, &[]);
    assert!((kept[0].probability - 2.0 / 3.0).abs() < 1e-6 && (kept[1].probability - 1.0 / 3.0).abs() < 1e-6);
}

#[test]
fn min_p_keeps_tokens_at_least_min_p_times_the_best() {
    // Probabilities relative to the best: 1, 0.5, 0.2, 0.05.
    let logits = [0.0f32, (0.5f32).ln(), (0.2f32).ln(), (0.05f32).ln()];
    let ids = |min_p: f32| {
        let sampler = Sampler::new(SamplerConfig { min_p, ..plain(0) }).unwrap();
        let mut ids: Vec<u32> = sampler.candidates(&logits, &[]).iter().map(|c| c.id).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(0.1), [0, 1, 2]);
    assert_eq!(ids(0.3), [0, 1]);
    assert_eq!(ids(0.6), [0]);
    assert_eq!(ids(0.04), [0, 1, 2, 3]);
}

#[test]
fn repetition_penalty_divides_positive_and_multiplies_negative_logits() {
    let logits = [2.0f32, -2.0, 1.0, 0.5, 3.0];
    let config = SamplerConfig { repeat_penalty: 2.0, repeat_last_n: 3, ..plain(0) };
    let sampler = Sampler::new(config.clone()).unwrap();
    // Only the last 3 of the history count: token 4 (first) is out of the window; 0 repeats but counts once.
    let candidates = sampler.candidates(&logits, &[4, 0, 1, 0]);
    let logit_of = |id: u32| candidates.iter().find(|c| c.id == id).unwrap().logit;
    assert_eq!((logit_of(0), logit_of(1), logit_of(2), logit_of(3), logit_of(4)), (1.0, -4.0, 1.0, 0.5, 3.0));
    let whole = Sampler::new(SamplerConfig { repeat_last_n: REPEAT_WHOLE_CONTEXT, ..config }).unwrap();
    assert_eq!(whole.candidates(&logits, &[4]).iter().find(|c| c.id == 4).unwrap().logit, 1.5);
    // Greedy with the penalty: 4 is the argmax until it is penalized.
    let mut greedy =
        Sampler::new(SamplerConfig { repeat_penalty: 2.0, repeat_last_n: 64, ..SamplerConfig::greedy() }).unwrap();
    assert_eq!(greedy.sample(&logits, &[]), 4);
    assert_eq!(greedy.sample(&logits, &[4]), 0);
}

/// Pearson's chi-square of `draws` draws against `expected` probabilities.
fn chi_square(counts: &[u64], expected: &[f64], draws: u64) -> f64 {
    counts.iter().zip(expected).map(|(&c, &p)| (c as f64 - p * draws as f64).powi(2) / (p * draws as f64)).sum()
}

#[test]
fn draws_follow_the_softmax() {
    let logits = seeded_logits("chi_square", 10);
    const DRAWS: u64 = 200_000;
    for (temperature, seed) in [(1.0f32, 11u64), (0.7, 12)] {
        let mut sampler = Sampler::new(SamplerConfig { temperature, ..plain(seed) }).unwrap();
        let mut counts = [0u64; 10];
        for _ in 0..DRAWS {
            counts[sampler.sample(&logits, &[]) as usize] += 1;
        }
        let expected = softmax(&logits, temperature as f64);
        // 9 degrees of freedom: P(χ² > 27.88) = 0.001.
        let chi2 = chi_square(&counts, &expected, DRAWS);
        assert!(chi2 < 27.88, "temperature {temperature}: χ² = {chi2:.2}, counts {counts:?}, expected {expected:?}");
    }
}

#[test]
fn draws_after_top_k_follow_the_renormalized_softmax() {
    let logits = seeded_logits("chi_square_top_k", 50);
    const DRAWS: u64 = 100_000;
    let mut order: Vec<usize> = (0..50).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    let top: Vec<f32> = order[..5].iter().map(|&i| logits[i]).collect();
    let mut sampler = Sampler::new(SamplerConfig { top_k: 5, ..plain(5) }).unwrap();
    let mut counts = [0u64; 5];
    for _ in 0..DRAWS {
        let id = sampler.sample(&logits, &[]) as usize;
        counts[order.iter().position(|&i| i == id).expect("a draw outside the top 5")] += 1;
    }
    // 4 degrees of freedom: P(χ² > 18.47) = 0.001.
    let chi2 = chi_square(&counts, &softmax(&top, 1.0), DRAWS);
    assert!(chi2 < 18.47, "χ² = {chi2:.2}, counts {counts:?}");
}

#[test]
fn nan_is_never_chosen_and_degenerate_logits_fall_back_to_the_argmax() {
    let mut sampler = Sampler::new(plain(3)).unwrap();
    let with_nan = [f32::NAN, 0.0, f32::NAN, 0.0];
    for _ in 0..200 {
        let id = sampler.sample(&with_nan, &[]);
        assert!(id == 1 || id == 3);
    }
    let all_neg_inf = [f32::NEG_INFINITY; 4];
    assert_eq!(sampler.sample(&all_neg_inf, &[]), 0);
    assert_eq!(sampler.sample(&[f32::NAN, f32::NEG_INFINITY, f32::NEG_INFINITY], &[]), 1);
    assert_eq!(sampler.sample(&[0.0, f32::INFINITY, 1.0, f32::INFINITY], &[]), 1);
    assert_eq!(sampler.sample(&[f32::NAN; 3], &[]), 0);
    assert_eq!(sampler.sample(&[], &[]), 0);
}

fn gguf_with(metadata: &[(&str, Value)]) -> GgufFile {
    let mut writer = GgufWriter::new(3);
    writer.add_metadata("general.architecture", Value::String("gemma4".into()));
    for (key, value) in metadata {
        writer.add_metadata(*key, value.clone());
    }
    let bytes = writer.to_bytes().unwrap();
    GgufFile::read(&bytes[..]).unwrap()
}

#[test]
fn gguf_sampling_keys_override_the_defaults() {
    let defaults = SamplerConfig::from_gguf(&gguf_with(&[]));
    assert_eq!(defaults, SamplerConfig::default());
    assert_eq!((defaults.temperature, defaults.top_k, defaults.top_p), (0.8, 40, 0.9));
    let config = SamplerConfig::from_gguf(&gguf_with(&[
        ("general.sampling.temp", Value::F32(1.0)),
        ("general.sampling.top_k", Value::I32(64)),
        ("general.sampling.top_p", Value::F32(0.95)),
        ("general.sampling.min_p", Value::F64(0.05)),
        ("general.sampling.penalty_repeat", Value::F32(1.1)),
        ("general.sampling.penalty_last_n", Value::I32(-1)),
    ]));
    let expected = SamplerConfig {
        temperature: 1.0,
        top_k: 64,
        top_p: 0.95,
        min_p: 0.05,
        repeat_penalty: 1.1,
        repeat_last_n: REPEAT_WHOLE_CONTEXT,
        ..SamplerConfig::default()
    };
    assert_eq!(config, expected);
    // A key of the wrong type, or out of range, is skipped.
    let odd = SamplerConfig::from_gguf(&gguf_with(&[("general.sampling.temp", Value::String("hot".into()))]));
    assert_eq!(odd.temperature, SamplerConfig::default().temperature);
    let out_of_range = SamplerConfig::from_gguf(&gguf_with(&[
        ("general.sampling.temp", Value::F32(-1.0)),
        ("general.sampling.top_p", Value::F32(2.0)),
        ("general.sampling.min_p", Value::F32(f32::NAN)),
        ("general.sampling.penalty_repeat", Value::F32(-3.0)),
    ]));
    assert_eq!(out_of_range, SamplerConfig::default());
}

/// The settings the issue-15 probe found accepted (`--temp -1`, NaN, inf; `--top-p 2` and -0.5; `--min-p -1` and
/// 5; `--repeat-penalty -3`) are refused by the sampler itself, naming the setting and its range.
#[test]
fn out_of_range_settings_are_refused_with_their_name() {
    let refused = [
        ("temperature", SamplerConfig { temperature: -1.0, ..plain(0) }),
        ("temperature", SamplerConfig { temperature: f32::NAN, ..plain(0) }),
        ("temperature", SamplerConfig { temperature: f32::INFINITY, ..plain(0) }),
        ("top_p", SamplerConfig { top_p: 2.0, ..plain(0) }),
        ("top_p", SamplerConfig { top_p: -0.5, ..plain(0) }),
        ("min_p", SamplerConfig { min_p: -1.0, ..plain(0) }),
        ("min_p", SamplerConfig { min_p: 5.0, ..plain(0) }),
        ("repeat_penalty", SamplerConfig { repeat_penalty: -3.0, ..plain(0) }),
        ("repeat_penalty", SamplerConfig { repeat_penalty: 0.0, ..plain(0) }),
    ];
    for (name, config) in refused {
        let Err(err) = Sampler::new(config.clone()) else { panic!("{config:?} was accepted") };
        let message = err.to_string();
        assert!(message.contains(&format!("`{name}`")) && message.contains("out of range"), "{message}");
        let state = SamplerState { config, rng_words: [1, 2, 3, 4] };
        assert!(Sampler::from_state(state).is_err(), "a saved state with `{name}` out of range");
    }
    for edge in [SamplerConfig { top_p: 0.0, min_p: 1.0, temperature: 0.0, ..plain(0) }, plain(0)] {
        assert!(Sampler::new(edge).is_ok());
    }
    let mut config = SamplerConfig::default();
    let err = config.apply_ollama_params(&serde_json::json!({"top_p": 2})).unwrap_err().to_string();
    assert!(err.contains("top_p") && err.contains("out of range"), "{err}");
}

#[test]
fn ollama_params_set_sampling_and_return_stops() {
    let mut config = SamplerConfig::default();
    let params = serde_json::json!({"stop": ["<turn|>", "<eos>"], "temperature": 1, "top_k": 64.0, "top_p": 0.95,
        "min_p": 0.1, "repeat_penalty": 1.2, "repeat_last_n": -1, "seed": 99, "num_ctx": 8192});
    let stops = config.apply_ollama_params(&params).unwrap();
    assert_eq!(stops, ["<turn|>", "<eos>"]);
    let expected = SamplerConfig {
        temperature: 1.0,
        top_k: 64,
        top_p: 0.95,
        min_p: 0.1,
        repeat_penalty: 1.2,
        repeat_last_n: u32::MAX,
        seed: 99,
    };
    assert_eq!(config, expected);
    // Ollama's "random" seed keeps ours.
    config.apply_ollama_params(&serde_json::json!({"seed": -1})).unwrap();
    assert_eq!(config.seed, 99);
}

#[test]
fn bad_ollama_params_are_typed_errors() {
    let bad = [
        serde_json::json!({"temperature": "hot"}),
        serde_json::json!({"top_k": 4.5}),
        serde_json::json!({"stop": [1, 2]}),
        serde_json::json!({"repeat_last_n": -2}),
        serde_json::json!(["temperature", 1]),
    ];
    for params in bad {
        let mut config = SamplerConfig::default();
        match config.apply_ollama_params(&params) {
            Err(Error::Unsupported { op, .. }) => assert!(op.contains("Ollama params"), "{op}"),
            other => panic!("{params}: expected a params error, got {other:?}"),
        }
    }
}

/// Every way of cutting `text` into two or three pieces gives the same result as one push.
fn stop_all_splits(stops: &[&str], text: &str) -> (String, bool) {
    let run = |pieces: &[&str]| {
        let mut matcher = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for piece in pieces {
            let StopStep { emit, stopped } = matcher.push(piece);
            out.push_str(&emit);
            if stopped {
                return (out, true);
            }
        }
        out.push_str(&matcher.finish());
        (out, false)
    };
    let whole = run(&[text]);
    let cuts: Vec<usize> = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
    for &a in &cuts {
        for &b in cuts.iter().filter(|&&b| b >= a) {
            assert_eq!(run(&[&text[..a], &text[a..b], &text[b..]]), whole, "cut at {a}, {b} of {text:?}");
        }
    }
    whole
}

#[test]
fn stop_strings_match_across_token_boundaries() {
    assert_eq!(stop_all_splits(&["<turn|>"], "Hello there<turn|>ignored"), ("Hello there".into(), true));
    assert_eq!(stop_all_splits(&["<turn|>"], "a <turn no stop"), ("a <turn no stop".into(), false));
    assert_eq!(stop_all_splits(&["END", "<eos>"], "x <eoEN <eos> y END"), ("x <eoEN ".into(), true));
    assert_eq!(stop_all_splits(&["ééé"], "café éé ééé!"), ("café éé ".into(), true));
    assert_eq!(stop_all_splits(&["aab"], "aaab"), ("a".into(), true));
    assert_eq!(stop_all_splits(&[""], "empty stops are ignored"), ("empty stops are ignored".into(), false));
}

#[test]
fn held_back_text_is_only_a_possible_stop_start() {
    let mut matcher = StopMatcher::new(vec!["<turn|>".into()]);
    assert_eq!(matcher.push("Hi <tu"), StopStep { emit: "Hi ".into(), stopped: false });
    assert_eq!(matcher.push("rn"), StopStep { emit: String::new(), stopped: false });
    assert_eq!(matcher.push("ed"), StopStep { emit: "<turned".into(), stopped: false });
    assert_eq!(matcher.push(" <"), StopStep { emit: " ".into(), stopped: false });
    assert_eq!(matcher.finish(), "<");
}
