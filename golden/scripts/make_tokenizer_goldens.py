# Tokenizer goldens: token ids and decoded text from llama.cpp and from HF transformers for every entry of
# golden/tokenizer/corpus.json, per vocabulary. See golden/tokenizer/README.md for what the fields mean.
#
#   python3 -m venv /tmp/tokvenv && /tmp/tokvenv/bin/pip install transformers tokenizers sentencepiece protobuf gguf
#   /tmp/tokvenv/bin/pip install llama_cpp_python-0.3.36-*.whl      # built as in golden/README.md
#   /tmp/tokvenv/bin/python golden/scripts/make_tokenizer_goldens.py /tmp/models/gemma-3-270m-q4_k_m.gguf
#
# Run from the repository root. It rewrites golden/tokenizer/{tiny-gemma4-specials.gguf, *.json}.
import hashlib, importlib.metadata as md, json, os
import ctypes, sys, types
import gguf, llama_cpp
from transformers import GemmaTokenizer, PreTrainedTokenizerFast

# transformers' GGUF reader (and the dequantizer it imports) name torch types at import time only, in annotations
# and dtype tables; reading a tokenizer's metadata never calls torch. A stand-in that answers every attribute lets
# it import without a 3 GB torch install.
_torch_stub = types.ModuleType("torch")
_torch_stub.__getattr__ = lambda name: type(name, (), {})
sys.modules["torch"] = _torch_stub
import transformers.integrations.gguf.reader  # noqa: E402,F401
del sys.modules["torch"]

OUT = "golden/tokenizer"
CORPUS = json.load(open(f"{OUT}/corpus.json"))

# Gemma 4's special tokens as llama.cpp's converter types them (gemma4.md §2.4 item 3: channel/tool markers
# USER_DEFINED), appended to the tiny Gemma 4 vocabulary, plus newline runs as normal tokens (the real vocab has
# "\n" = 107, "\n\n" = 108, ...), so the goldens exercise special-token splitting and the newline-run rule.
CONTROL, USER_DEFINED, NORMAL = 3, 4, 1
GEMMA4_SPECIALS = [
    ("<|tool>", CONTROL), ("<tool|>", CONTROL), ("<|tool_call>", USER_DEFINED), ("<tool_call|>", USER_DEFINED),
    ("<|tool_response>", USER_DEFINED), ("<tool_response|>", USER_DEFINED), ('<|"|>', USER_DEFINED),
    ("<|think|>", CONTROL), ("<|channel>", USER_DEFINED), ("<channel|>", USER_DEFINED), ("<|turn>", CONTROL),
    ("<turn|>", CONTROL), ("\n", NORMAL), ("\n\n", NORMAL), ("\n\n\n", NORMAL),
]


def make_specials_vocab(src, dst):
    """A metadata-only GGUF: the tiny Gemma 4's metadata with GEMMA4_SPECIALS appended to its vocabulary."""
    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(dst, arch=r.fields["general.architecture"].contents())
    appended = {"tokenizer.ggml.tokens": [t for t, _ in GEMMA4_SPECIALS],
                "tokenizer.ggml.token_type": [ty for _, ty in GEMMA4_SPECIALS],
                "tokenizer.ggml.scores": [-1000.0 if ty == CONTROL else 0.0 for _, ty in GEMMA4_SPECIALS]}
    for key, field in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        value, vtype = field.contents(), field.types[0]
        if key in appended:
            value = value + appended[key]
        if key.endswith(".vocab_size"):
            value += len(GEMMA4_SPECIALS)
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(key, value, vtype, sub_type=sub)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()


class Llama:
    """llama.cpp's own vocabulary code (vocab_only: no weights), through the C API of llama-cpp-python."""

    def __init__(self, path):
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        self.model = llama_cpp.llama_model_load_from_file(path.encode(), params)
        assert self.model, path
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)

    def encode(self, text, parse_special):
        b = text.encode()
        n = len(b) + 8
        out = (llama_cpp.llama_token * n)()
        k = llama_cpp.llama_tokenize(self.vocab, b, len(b), out, n, False, parse_special)
        assert k >= 0
        return list(out[:k])

    def piece(self, token, special):
        buf = ctypes.create_string_buffer(256)
        k = llama_cpp.llama_token_to_piece(self.vocab, token, buf, 256, 0, special)
        assert 0 <= k <= 256
        return buf.raw[:k]

    def decode(self, ids, special):
        # What a streaming generator prints: the pieces, concatenated as bytes (llama_detokenize would also apply
        # BPE's clean_spaces pass, which no generation path uses).
        return b"".join(self.piece(t, special) for t in ids).decode("utf-8", errors="replace")


class Hf:
    def __init__(self, tok):
        self.tok = tok

    def encode(self, text, parse_special):
        return self.tok.encode(text, add_special_tokens=False, split_special_tokens=not parse_special)

    def decode(self, ids, special):
        return self.tok.decode(ids, skip_special_tokens=not special)


def side(impl, text):
    parse, plain = impl.encode(text, True), impl.encode(text, False)
    return {"parse": parse, "text": plain, "decode_skip": impl.decode(parse, False),
            "decode_show": impl.decode(parse, True)}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def golden(name, path, hf_json=None):
    llama = Llama(path)
    hf = Hf(GemmaTokenizer.from_pretrained(os.path.dirname(path) or ".", gguf_file=os.path.basename(path)))
    hf_file = Hf(PreTrainedTokenizerFast(tokenizer_file=hf_json)) if hf_json else None
    r = gguf.GGUFReader(path)
    cases = []
    for entry in CORPUS:
        text = entry["text"]
        case = {"name": entry["name"], "text": text, "llama": side(llama, text), "hf_gguf": side(hf, text)}
        if hf_file:
            case["hf_json"] = side(hf_file, text)
        cases.append(case)
    doc = {
        "model": {"name": name, "file": path if path.startswith(("golden/", OUT)) else os.path.basename(path),
                  "sha256": sha256(path), "tokenizer_model": r.fields["tokenizer.ggml.model"].contents(),
                  "n_vocab": llama_cpp.llama_vocab_n_tokens(llama.vocab)},
        "llama": {"version": f"llama-cpp-python {md.version('llama_cpp_python')}", "add_special": False,
                  "parse_special": {"parse": True, "text": False},
                  "add_bos_when_add_special": bool(llama_cpp.llama_vocab_get_add_bos(llama.vocab)),
                  "decode": "concatenated llama_token_to_piece(lstrip 0, special false|true), lossy UTF-8"},
        "hf_gguf": {"version": f"transformers {md.version('transformers')}, tokenizers {md.version('tokenizers')}",
                    "how": "AutoTokenizer.from_pretrained(dir, gguf_file=...); encode(add_special_tokens=False, "
                           "split_special_tokens=not parse); decode(skip_special_tokens=not show)"},
        "cases": cases,
    }
    if hf_file:
        doc["hf_json"] = {"file": hf_json, "how": "PreTrainedTokenizerFast(tokenizer_file=...), same calls"}
    with open(f"{OUT}/{name}.json", "w") as f:
        json.dump(doc, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")
    for key in [k for k in ("hf_gguf", "hf_json") if k in cases[0]]:
        differ = [c["name"] + "/" + field for c in cases for field in ("parse", "text", "decode_skip", "decode_show")
                  if c[key][field] != c["llama"][field]]
        print(f"{name}: {key} differs from llama.cpp in {len(differ)} of {4 * len(cases)}: {differ}")


if __name__ == "__main__":
    llama_cpp.llama_backend_init()
    QUIET = llama_cpp.llama_log_callback(lambda *a: None)  # kept alive: llama.cpp calls it until exit
    llama_cpp.llama_log_set(QUIET, ctypes.c_void_p(0))
    make_specials_vocab("golden/fixtures/tiny-gemma4-f32.gguf", f"{OUT}/tiny-gemma4-specials.gguf")
    seed_json = "golden/tok/hf/tokenizer.json"
    golden("tiny-gemma4", "golden/fixtures/tiny-gemma4-f32.gguf", seed_json)
    golden("tiny-gemma4-specials", f"{OUT}/tiny-gemma4-specials.gguf")
    golden("tiny-gemma3", "golden/fixtures/tiny-gemma3-f32.gguf", seed_json)
    if len(sys.argv) > 1:
        golden("gemma3-270m", sys.argv[1])
