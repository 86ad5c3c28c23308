//! Training data (`training::data`) on the tiny fixtures' real Gemma tokenizers and chat templates: each input
//! form, the chat mask (exactly the model's text and its turn's close marker are trained), every kind of bad
//! line naming its line, the length policy, and the seeded order.
//!
//! The tiny vocabularies have no turn-marker tokens (the markers tokenize as plain text), so the mask is also
//! checked where they are single control tokens: `golden/tokenizer/tiny-gemma4-specials.gguf` for Gemma 4 and the
//! real Gemma 3 270M from `FERROGEM_GEMMA3_270M` (`ci/test.sh` sets it from `ci/fetch-models.sh`) for Gemma 3.

use ferrogem::chat::ChatTemplate;
use ferrogem::gguf::GgufFile;
use ferrogem::source::MmapSource;
use ferrogem::tokenizer::{DecodeSpecial, Special, Tokenizer};
use ferrogem::training::data::{DataError, DataOptions, DataPosition, Dataset, LineError, Sample};
use serde_json::json;
use std::collections::HashSet;

fn open(path: &str) -> (Tokenizer, ChatTemplate) {
    let gguf = GgufFile::read(&MmapSource::open(path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap();
    (Tokenizer::from_gguf(&gguf).unwrap(), ChatTemplate::for_model(&gguf).unwrap())
}

fn repo_file(relative: &str) -> String {
    format!("{}/../{relative}", env!("CARGO_MANIFEST_DIR"))
}

fn tiny_gemma4() -> (Tokenizer, ChatTemplate) {
    open(&repo_file("golden/fixtures/tiny-gemma4-f32.gguf"))
}

fn tiny_gemma3() -> (Tokenizer, ChatTemplate) {
    open(&repo_file("golden/fixtures/tiny-gemma3-f32.gguf"))
}

/// The tiny Gemma 4 vocabulary with Gemma 4's special tokens (`<|turn>`, `<turn|>`, … as control tokens).
fn gemma4_specials() -> (Tokenizer, ChatTemplate) {
    open(&repo_file("golden/tokenizer/tiny-gemma4-specials.gguf"))
}

fn gemma3_270m() -> (Tokenizer, ChatTemplate) {
    let path = std::env::var("FERROGEM_GEMMA3_270M").unwrap_or_else(|_| {
        panic!(
            "FERROGEM_GEMMA3_270M is not set: it names the real Gemma 3 270M Q4_K_M GGUF (`bash ci/fetch-models.sh` \
             fetches it and prints its path; ci/test.sh sets the variable)"
        )
    });
    open(&path)
}

fn options(tokenizer: &Tokenizer, seq_len: u32) -> DataOptions {
    DataOptions { vocab_size: tokenizer.vocab_len(), seq_len, refuse_long: false }
}

fn load(jsonl: &str, (tokenizer, template): &(Tokenizer, ChatTemplate)) -> Result<Dataset, DataError> {
    Dataset::from_jsonl(jsonl, tokenizer, *template, &options(tokenizer, 4096))
}

fn one(line: serde_json::Value, model: &(Tokenizer, ChatTemplate)) -> Sample {
    let dataset = load(&line.to_string(), model).unwrap();
    assert_eq!((dataset.samples.len(), dataset.truncated), (1, 0));
    dataset.samples.into_iter().next().unwrap()
}

/// The trained targets as text, one string per run of consecutive trained rows.
fn trained_runs(tokenizer: &Tokenizer, sample: &Sample) -> Vec<String> {
    let mut runs: Vec<Vec<u32>> = Vec::new();
    let mut in_run = false;
    for target in &sample.targets {
        match (target, in_run) {
            (Some(id), true) => runs.last_mut().unwrap().push(*id),
            (Some(id), false) => runs.push(vec![*id]),
            (None, _) => {}
        }
        in_run = target.is_some();
    }
    runs.iter().map(|ids| tokenizer.decode(ids, DecodeSpecial::Show)).collect()
}

/// The sample's whole sequence: its rows and the last target.
fn sequence(sample: &Sample) -> Vec<u32> {
    let mut ids = sample.tokens.clone();
    ids.push(sample.targets.last().unwrap().unwrap());
    ids
}

fn chat(messages: &[(&str, &str)]) -> serde_json::Value {
    let messages: Vec<_> = messages.iter().map(|(role, content)| json!({"role": role, "content": content})).collect();
    json!({ "messages": messages })
}

const CONVERSATION: [(&str, &str); 5] = [
    ("system", "Be brief."),
    ("user", "Hi there"),
    ("assistant", "Hello! How can I help?"),
    ("user", "Tell me a joke"),
    ("assistant", "No."),
];

/// The conversation's trained text is exactly each model turn's content and close marker, and the sample is the
/// render's tokens through the last close marker.
fn check_conversation(model: &(Tokenizer, ChatTemplate), close: &str) {
    let (tokenizer, template) = model;
    let sample = one(chat(&CONVERSATION), model);
    assert_eq!(trained_runs(tokenizer, &sample), [format!("Hello! How can I help?{close}"), format!("No.{close}")]);
    let messages: Vec<ferrogem::chat::Message> =
        serde_json::from_value(chat(&CONVERSATION)["messages"].clone()).unwrap();
    let whole = template.render(&messages, &[], false).unwrap();
    let through_last = &whole[..whole.rfind(close).unwrap() + close.len()];
    assert_eq!(sequence(&sample), tokenizer.encode(through_last, Special::Parse));
    assert_eq!(sample.tokens.len(), sample.targets.len());
}

#[test]
fn chat_trains_exactly_the_model_turns_gemma4() {
    let model = tiny_gemma4();
    assert_eq!(model.1, ChatTemplate::Gemma4Small);
    check_conversation(&model, "<turn|>");
    // With Gemma 4's markers as control tokens, `<turn|>` is one trained token.
    let specials = gemma4_specials();
    check_conversation(&specials, "<turn|>");
    let sample = one(chat(&CONVERSATION), &specials);
    let close = specials.0.token_id("<turn|>").unwrap();
    assert_eq!(sample.targets.iter().filter(|t| **t == Some(close)).count(), 2);
}

#[test]
fn chat_trains_exactly_the_model_turns_gemma4_large() {
    // Large's generation prompt ends with an empty thought block that a turn in the history does not have: the
    // trained text is the same, and the block is nowhere in the sample.
    let (tokenizer, _) = gemma4_specials();
    let model = (tokenizer, ChatTemplate::Gemma4Large);
    check_conversation(&model, "<turn|>");
    let sample = one(chat(&CONVERSATION), &model);
    let channel = model.0.token_id("<|channel>").unwrap();
    assert!(!sequence(&sample).contains(&channel));
}

#[test]
fn chat_trains_exactly_the_model_turns_gemma3() {
    let model = tiny_gemma3();
    assert_eq!(model.1, ChatTemplate::Gemma3);
    check_conversation(&model, "<end_of_turn>");
    let real = gemma3_270m();
    check_conversation(&real, "<end_of_turn>");
    let sample = one(chat(&CONVERSATION), &real);
    let close = real.0.token_id("<end_of_turn>").unwrap();
    assert_eq!(sample.targets.iter().filter(|t| **t == Some(close)).count(), 2);
}

#[test]
fn chat_without_system_single_turn_and_turns_of_several_messages() {
    for (model, close, joined) in [
        (tiny_gemma4(), "<turn|>", "One.Two."),
        (gemma4_specials(), "<turn|>", "One.Two."),
        (tiny_gemma3(), "<end_of_turn>", "One.\n\nTwo."),
    ] {
        let sample = one(chat(&[("user", "Hi"), ("assistant", "Hello.")]), &model);
        assert_eq!(trained_runs(&model.0, &sample), [format!("Hello.{close}")]);
        assert_eq!(sample.tokens[0], model.0.bos().unwrap());
        // Adjacent assistant messages share one model turn in both templates, closed once.
        let sample = one(chat(&[("user", "Start"), ("assistant", "One."), ("assistant", "Two.")]), &model);
        assert_eq!(trained_runs(&model.0, &sample), [format!("{joined}{close}")]);
        // A conversation that opens with the model's turn.
        let sample = one(chat(&[("assistant", "Welcome."), ("user", "Thanks")]), &model);
        assert_eq!(trained_runs(&model.0, &sample), [format!("Welcome.{close}")]);
    }
}

#[test]
fn text_trains_every_token_after_bos_without_eos() {
    for model in [tiny_gemma4(), tiny_gemma3()] {
        let tokenizer = &model.0;
        let sample = one(json!({"text": "Hello world. Hi there"}), &model);
        let ids = tokenizer.encode_prompt("Hello world. Hi there");
        assert_eq!(ids[0], tokenizer.bos().unwrap());
        assert_ne!(ids.last(), tokenizer.eos().as_ref());
        assert_eq!(sample.tokens, ids[..ids.len() - 1]);
        assert_eq!(sample.targets, ids[1..].iter().map(|&id| Some(id)).collect::<Vec<_>>());
        assert_eq!(sample.trained_rows(), ids.len() - 1);
    }
}

#[test]
fn ids_are_taken_as_given() {
    let model = tiny_gemma4();
    let sample = one(json!({"ids": [5, 300, 511], "source": "ignored", "id": 7}), &model);
    assert_eq!(sample, Sample { tokens: vec![5, 300], targets: vec![Some(300), Some(511)] });
}

#[test]
fn samples_in_line_order_skipping_blank_lines() {
    let model = tiny_gemma3();
    let jsonl = format!("\u{feff}{}\n\n  \r\n{}\r\n", json!({"ids": [1, 2]}), json!({"ids": [3, 4, 5]}));
    let dataset = load(&jsonl, &model).unwrap();
    assert_eq!(dataset.samples.iter().map(|s| s.tokens.clone()).collect::<Vec<_>>(), [vec![1], vec![3, 4]]);
    assert_eq!(load("\n \n", &model), Err(DataError::Empty));
}

/// The error of `bad` as line 3, after a good line and a blank one.
fn error_at_line_3(bad: &str, model: &(Tokenizer, ChatTemplate)) -> LineError {
    let jsonl = format!("{}\n\n{bad}\n{}\n", json!({"text": "fine"}), json!({"text": "also fine"}));
    match load(&jsonl, model) {
        Err(DataError::Line { line: 3, error }) => {
            let message = DataError::Line { line: 3, error: error.clone() }.to_string();
            assert!(message.starts_with("line 3: "), "{message}");
            error
        }
        other => panic!("{bad}: expected an error on line 3, got {other:?}"),
    }
}

#[test]
fn every_bad_line_names_its_line() {
    let model = tiny_gemma4();
    let wrong = |field: &str, expected: &str| LineError::WrongType {
        field: field.into(),
        expected: match expected {
            "string" => "a string",
            "ids" => "an array of token ids (integers from 0)",
            "messages" => "an array of messages",
            _ => "an object with role and content",
        },
    };
    let user = json!({"role": "user", "content": "Hi"});
    let cases: Vec<(String, LineError)> = vec![
        (json!([1, 2]).to_string(), LineError::NotAnObject),
        (json!({"id": 1}).to_string(), LineError::NoInput),
        (json!({"text": "a", "ids": [1, 2]}).to_string(), LineError::SeveralInputs),
        (json!({"text": 5}).to_string(), wrong("text", "string")),
        (json!({"text": ""}).to_string(), LineError::EmptyText),
        (json!({"messages": "Hi"}).to_string(), wrong("messages", "messages")),
        (json!({"messages": []}).to_string(), LineError::NoMessages),
        (json!({"messages": [user, "Hi"]}).to_string(), wrong("messages[1]", "object")),
        (json!({"messages": [{"content": "Hi"}]}).to_string(), wrong("messages[0].role", "string")),
        (
            json!({"messages": [{"role": "user", "content": ["Hi"]}]}).to_string(),
            wrong("messages[0].content", "string"),
        ),
        (
            json!({"messages": [user, {"role": "tool", "content": "42"}]}).to_string(),
            LineError::UnknownRole { message: 1, role: "tool".into() },
        ),
        (
            json!({"messages": [user, {"role": "assistant", "content": "", "tool_calls": []}]}).to_string(),
            LineError::UnsupportedKey { message: 1, key: "tool_calls" },
        ),
        (json!({"messages": [user]}).to_string(), LineError::NothingToTrain),
        (json!({"ids": "1 2"}).to_string(), wrong("ids", "ids")),
        (json!({"ids": [1, -2]}).to_string(), wrong("ids[1]", "ids")),
        (json!({"ids": [1, 2.5]}).to_string(), wrong("ids[1]", "ids")),
        (json!({"ids": [1, 4_294_967_296u64]}).to_string(), wrong("ids[1]", "ids")),
        (json!({"ids": [1, 2, 512]}).to_string(), LineError::IdOutOfRange { index: 2, id: 512, vocab_size: 512 }),
        (json!({"ids": [7]}).to_string(), LineError::NothingToTrain),
    ];
    for (bad, expected) in cases {
        assert_eq!(error_at_line_3(&bad, &model), expected, "{bad}");
    }
    // Bad JSON carries serde's message and the column.
    match error_at_line_3("{\"text\": \"unclosed}", &model) {
        LineError::Json(message) => assert!(message.starts_with("column ") && message.contains("EOF"), "{message}"),
        other => panic!("{other:?}"),
    }
    // Tokenized text is checked against the model's vocabulary too (smaller than the tokenizer's in Ollama's
    // Gemma 3 files).
    let (tokenizer, template) = &model;
    let small = DataOptions { vocab_size: 100, ..options(tokenizer, 64) };
    assert!(matches!(
        Dataset::from_jsonl(&json!({"text": "Hello"}).to_string(), tokenizer, *template, &small),
        Err(DataError::Line { line: 1, error: LineError::IdOutOfRange { vocab_size: 100, .. } })
    ));
    let zero = DataOptions { seq_len: 0, ..options(tokenizer, 64) };
    assert_eq!(Dataset::from_jsonl("{\"ids\": [1, 2]}", tokenizer, *template, &zero), Err(DataError::ZeroSeqLen));
}

#[test]
fn chat_the_template_cannot_place_is_refused() {
    // Gemma 3 joins every system message into the top of the first user turn, so a second one rewrites a turn
    // before the first model turn.
    let second_system = chat(&[
        ("system", "Be brief."),
        ("user", "Hi"),
        ("assistant", "Hello."),
        ("system", "Be kind."),
        ("user", "Joke?"),
        ("assistant", "No."),
    ]);
    assert_eq!(error_at_line_3(&second_system.to_string(), &tiny_gemma3()), LineError::UnstableRender { message: 2 });
    // Gemma 4 gives a later system message a turn of its own.
    let sample = one(second_system, &tiny_gemma4());
    assert_eq!(trained_runs(&tiny_gemma4().0, &sample), ["Hello.<turn|>", "No.<turn|>"]);
    // Gemma 3 does not trim content: a newline opening the model's text joins the header's into `\n\n`, one token.
    let leading_newline = chat(&[("user", "Hi"), ("assistant", "\nHello.")]);
    assert_eq!(error_at_line_3(&leading_newline.to_string(), &gemma3_270m()), LineError::TurnBoundary { message: 1 });
}

#[test]
fn long_samples_are_truncated_or_refused() {
    let model = tiny_gemma4();
    let (tokenizer, template) = &model;
    let text = json!({"text": "Hello world. Tell me a joke, and then another one."}).to_string();
    let ids = tokenizer.encode_prompt("Hello world. Tell me a joke, and then another one.");
    let jsonl = format!("{}\n{text}\n", json!({"ids": [1, 2, 3]}));
    let dataset = Dataset::from_jsonl(&jsonl, tokenizer, *template, &options(tokenizer, 8)).unwrap();
    assert_eq!(dataset.truncated, 1);
    let sample = &dataset.samples[1];
    assert_eq!(sample.tokens, ids[..8]);
    assert_eq!(sample.targets, ids[1..9].iter().map(|&id| Some(id)).collect::<Vec<_>>());
    // Exactly seq_len rows fit.
    let fits = Dataset::from_jsonl(&text, tokenizer, *template, &options(tokenizer, ids.len() as u32 - 1)).unwrap();
    assert_eq!((fits.truncated, fits.samples[0].tokens.len()), (0, ids.len() - 1));

    let refuse = DataOptions { refuse_long: true, ..options(tokenizer, 8) };
    assert_eq!(
        Dataset::from_jsonl(&jsonl, tokenizer, *template, &refuse),
        Err(DataError::Line { line: 2, error: LineError::TooLong { rows: ids.len() - 1, seq_len: 8 } })
    );

    // A chat is cut after its last close marker before its length is judged: the generation prompt the render
    // ends with is not a row.
    let conversation = chat(&[("user", "Hi"), ("assistant", "Hello.")]);
    let whole = one(conversation.clone(), &model);
    let exact = options(tokenizer, whole.tokens.len() as u32);
    let dataset = Dataset::from_jsonl(&conversation.to_string(), tokenizer, *template, &exact).unwrap();
    assert_eq!((dataset.truncated, &dataset.samples[0]), (0, &whole));
    // A model turn that starts past seq_len leaves nothing to train on.
    let short = options(tokenizer, 5);
    assert_eq!(
        Dataset::from_jsonl(&conversation.to_string(), tokenizer, *template, &short),
        Err(DataError::Line { line: 1, error: LineError::NothingToTrainWithin { seq_len: 5 } })
    );
    // Cut inside the model's turn: trained up to the cut, no untrained rows after it.
    let cut = options(tokenizer, whole.tokens.len() as u32 - 2);
    let dataset = Dataset::from_jsonl(&conversation.to_string(), tokenizer, *template, &cut).unwrap();
    assert_eq!(dataset.truncated, 1);
    assert_eq!(dataset.samples[0].tokens, whole.tokens[..whole.tokens.len() - 2]);
    assert_eq!(dataset.samples[0].targets, whole.targets[..whole.targets.len() - 2]);
}

fn dataset_of(n: usize) -> Dataset {
    let jsonl: String = (0..n).map(|i| format!("{}\n", json!({"ids": [1, i % 500 + 2]}))).collect();
    load(&jsonl, &tiny_gemma4()).unwrap()
}

#[test]
fn order_is_a_seeded_permutation_per_epoch() {
    let dataset = dataset_of(50);
    let order = dataset.order(42, 0);
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    assert_eq!(order, dataset.order(42, 0), "the same seed and epoch give the same order");
    let epochs: HashSet<Vec<usize>> = (0..8).map(|epoch| dataset.order(42, epoch)).collect();
    assert_eq!(epochs.len(), 8, "every epoch has its own order");
    assert_ne!(order, dataset.order(43, 0), "another seed, another order");
    assert_ne!(order, sorted, "shuffled");
    assert_eq!(dataset_of(1).order(7, 3), [0]);
}

#[test]
fn data_position_advances_across_epochs() {
    let start = DataPosition::default();
    assert_eq!(start.advance(3, 10), DataPosition { epoch: 0, index: 3 });
    assert_eq!(start.advance(10, 10), DataPosition { epoch: 1, index: 0 });
    assert_eq!(DataPosition { epoch: 2, index: 7 }.advance(25, 10), DataPosition { epoch: 5, index: 2 });
    let saved = serde_json::to_string(&DataPosition { epoch: 1, index: 4 }).unwrap();
    assert_eq!(serde_json::from_str::<DataPosition>(&saved).unwrap(), DataPosition { epoch: 1, index: 4 });
}
