"""Dequantization fixtures: raw ggml blocks of every weight type and their values as dequantized by gguf-py, whose
dequantizers are bit-identical to ggml's for Q4_0/1, Q5_0/1, Q8_0 and Q2_K..Q6_K (see ../README.md). The Rust
tests compare candle-core's and our WGSL kernels' dequantization with these values bit for bit, so CI needs no
Python.

Per type: ROWS rows of ROW_ELEMS elements (two 256-wide super-blocks per K-quant row). The quant bits are seeded
random bytes; the f16 scale fields are written explicitly so they are finite and of sensible size (random bytes
there would give NaN, Inf or 1e4 scales):
  rows 0..7    d in [-2, 2], mins (Q4_1/Q5_1 m in [-1, 1], K-quant dmin in [0, 1]), random quant bits;
  rows 8..15   extreme but finite scales, cycling block by block through +-65504 (f16 max), +-2^-24 (smallest
               f16 subnormal), random subnormals, +0, -0, 2^-14 (smallest normal), the largest subnormal, 32768
               (16 K-quant super-blocks, so every kind occurs); row 15 also has every quant bit set (largest codes).
F16 / BF16 have no scales: rows 0..11 are random bit patterns with NaN/Inf patterns made finite (every finite
value, subnormals included), rows 12..13 are all subnormals and signed zeros, rows 14..15 mix in +-Inf, quiet
NaNs (+ and -), the largest and smallest finite values and signed zeros (NaN compares by parity only: payloads
are not part of the contract).

Outputs in <out_dir>: <type>.blocks (raw block bytes, rows back to back), <type>.f32 (little-endian f32 values,
row-major [ROWS][ROW_ELEMS]) and manifest.json.

Usage: pip install gguf==0.19.0 numpy; python make_dequant_fixtures.py <out_dir>   (e.g. golden/dequant)
"""

import hashlib
import json
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T
from gguf.quants import dequantize

ROWS = 16
EXTREME_FROM = 8  # first row of extreme scales (quant types)
ROW_ELEMS = 512
SEED = 20240917

# type -> byte offsets inside one block of the f16 fields: (scale fields "d", min fields "m").
# Layouts from ggml-common.h: block_q4_0 {d, qs}, q4_1 {d, m, qs}, q5_0 {d, qh, qs}, q5_1 {d, m, qh, qs},
# q8_0 {d, qs}, q2_K {scales[16], qs[64], d, dmin}, q3_K {hmask[32], qs[64], scales[12], d},
# q4_K {d, dmin, scales[12], qs}, q5_K {d, dmin, scales[12], qh, qs}, q6_K {ql, qh, scales[16], d}.
SCALE_FIELDS = {
    T.Q4_0: ([0], []),
    T.Q4_1: ([0], [2]),
    T.Q5_0: ([0], []),
    T.Q5_1: ([0], [2]),
    T.Q8_0: ([0], []),
    T.Q2_K: ([80], [82]),
    T.Q3_K: ([108], []),
    T.Q4_K: ([0], [2]),
    T.Q5_K: ([0], [2]),
    T.Q6_K: ([208], []),
}
DENSE = [T.F16, T.BF16]
TYPES = DENSE + list(SCALE_FIELDS)
# The block-min (Q4_1/Q5_1 `m`, added) is signed in practice; the K-quant `dmin` (subtracted) is not.
SIGNED_MIN = {T.Q4_1, T.Q5_1}


def f16_bits(values):
    return np.asarray(values, dtype=np.float16).view(np.uint16)


def extreme_f16(rng, n, order):
    """n f16 bit patterns cycling through extreme-but-finite kinds, starting at kind `order`."""
    kinds = [
        lambda: 0x7BFF,  # 65504, the largest finite f16
        lambda: 0xFBFF,  # -65504
        lambda: 0x0001,  # 2^-24, the smallest subnormal
        lambda: 0x8001,
        lambda: int(rng.integers(1, 0x400)),  # a random subnormal
        lambda: 0x8000 | int(rng.integers(1, 0x400)),
        lambda: 0x0000,  # +0
        lambda: 0x8000,  # -0
        lambda: 0x0400,  # 2^-14, the smallest normal
        lambda: 0x83FF,  # the largest subnormal, negative
        lambda: 0x7800,  # 32768
    ]
    return np.array([kinds[(order + i) % len(kinds)]() for i in range(n)], dtype=np.uint16)


def quant_blocks(rng, qtype):
    block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
    n_blocks = ROWS * ROW_ELEMS // block_elems
    blocks = rng.integers(0, 256, size=(ROWS, n_blocks // ROWS, block_bytes), dtype=np.uint8)
    d_offs, m_offs = SCALE_FIELDS[qtype]
    per_row = n_blocks // ROWS
    for row in range(ROWS):
        for field, offs in (("d", d_offs), ("m", m_offs)):
            for off in offs:
                if row < EXTREME_FROM:
                    if field == "d":
                        vals = rng.uniform(-2.0, 2.0, per_row)
                    elif qtype in SIGNED_MIN:
                        vals = rng.uniform(-1.0, 1.0, per_row)
                    else:
                        vals = rng.uniform(0.0, 1.0, per_row)
                    bits = f16_bits(vals)
                else:
                    first = (row - EXTREME_FROM) * per_row + (3 if field == "m" else 0)
                    bits = extreme_f16(rng, per_row, order=first)
                blocks[row, :, off : off + 2] = bits.astype("<u2").view(np.uint8).reshape(per_row, 2)
        if row == ROWS - 1:
            # Largest codes everywhere except the f16 fields (Q6_K scales become -1, Q3_K scales 31, K mins 63).
            keep = np.zeros(block_bytes, dtype=bool)
            for off in d_offs + m_offs:
                keep[off : off + 2] = True
            blocks[row, :, ~keep] = 0xFF
    return blocks.reshape(-1)


def dense_values(rng, qtype):
    n = ROWS * ROW_ELEMS
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint64).astype(np.uint16).reshape(ROWS, ROW_ELEMS)
    exp_mask, man_bits = (0x7C00, 10) if qtype == T.F16 else (0x7F80, 7)
    for row in range(ROWS - 4):
        # Redraw NaN/Inf patterns (all-ones exponent) as the same bits with a cleared top exponent bit: finite.
        special = (bits[row] & exp_mask) == exp_mask
        bits[row, special] &= ~np.uint16(0x4000)
    man_mask = (1 << man_bits) - 1
    bits[ROWS - 4 : ROWS - 2] &= np.uint16(0x8000 | man_mask)  # exponent 0: subnormals and signed zeros
    bits[ROWS - 4 : ROWS - 2, ::17] &= np.uint16(0x8000)
    bits[ROWS - 2 :] &= ~np.uint16(exp_mask & 0x4000)  # finite background for the specials
    inf = exp_mask
    qnan = exp_mask | (1 << (man_bits - 1))
    largest = (exp_mask - (1 << man_bits)) | man_mask
    smallest_normal = 1 << man_bits
    specials = [inf, 0x8000 | inf, qnan, 0x8000 | qnan, largest, 0x8000 | largest, smallest_normal, 1, 0, 0x8000]
    for i, v in enumerate(specials):
        bits[ROWS - 2 :, i * 7 :: 7 * len(specials)] = v
    return bits.reshape(-1).astype("<u2").view(np.uint8)


def main(out_dir):
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    manifest = {}
    for qtype in TYPES:
        raw = dense_values(rng, qtype) if qtype in DENSE else quant_blocks(rng, qtype)
        values = dequantize(raw.reshape(ROWS, -1), qtype).astype("<f4", copy=False)
        assert values.shape == (ROWS, ROW_ELEMS), values.shape
        nonfinite = int((~np.isfinite(values)).sum())
        if qtype not in DENSE:
            assert nonfinite == 0, f"{qtype.name}: {nonfinite} non-finite values"
        name = qtype.name.lower()
        blocks_bytes = raw.tobytes()
        f32_bytes = values.tobytes()
        (out / f"{name}.blocks").write_bytes(blocks_bytes)
        (out / f"{name}.f32").write_bytes(f32_bytes)
        manifest[name] = {
            "ggml_type": int(qtype),
            "rows": ROWS,
            "row_elems": ROW_ELEMS,
            "blocks_bytes": len(blocks_bytes),
            "f32_bytes": len(f32_bytes),
            "non_finite_values": nonfinite,
            "blocks_sha256": hashlib.sha256(blocks_bytes).hexdigest(),
            "f32_sha256": hashlib.sha256(f32_bytes).hexdigest(),
            "gguf_version": metadata.version("gguf"),
            "numpy_version": np.__version__,
            "seed": SEED,
        }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    total = sum(v["blocks_bytes"] + v["f32_bytes"] for v in manifest.values())
    print(f"{len(manifest)} types, {total} bytes of fixtures in {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "golden/dequant")
