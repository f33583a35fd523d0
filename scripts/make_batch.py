#!/usr/bin/env python3
"""Writes a large batch for `qkv project` benchmarks, with nothing but the standard library.

    python3 scripts/make_batch.py DIR [--tokens 400000] [--d-model 512] [--width 512]

DIR/x.npy: X [tokens, d_model] float32, uniform in [-1, 1). To write 0.8 GB in seconds
without NumPy, one block of 8192 rows is drawn (seed 7) and repeated, so rows repeat every
8192 tokens: the same work for the GPU and the disk as distinct rows, and every row is still
checked against the f64 reference of its own values.
DIR/m.safetensors: a Llama-style layer, model.layers.0.self_attn.{q,k,v}_proj.weight, each
[width, d_model] F32 (PyTorch's Linear layout), uniform in [-1, 1) / sqrt(d_model).
"""

import argparse
import json
import os
import random
import struct
from array import array

BLOCK_ROWS = 8192


def npy_header(shape):
    """A version 1.0 .npy header for little-endian float32 in C order."""
    dims = f"({shape[0]},)" if len(shape) == 1 else "(" + ", ".join(map(str, shape)) + ")"
    text = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }" % dims
    # Magic (6) + version (2) + length (2) + text + newline, padded to 64 bytes.
    pad = 64 - (10 + len(text) + 1) % 64
    text = text + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def write_x(path, tokens, d_model, rng):
    block_rows = min(BLOCK_ROWS, tokens)
    block = array("f", (rng.uniform(-1.0, 1.0) for _ in range(block_rows * d_model)))
    raw = block.tobytes()
    row_bytes = d_model * 4
    with open(path + ".part", "wb") as f:
        f.write(npy_header((tokens, d_model)))
        left = tokens
        while left > 0:
            n = min(left, block_rows)
            f.write(raw[: n * row_bytes])
            left -= n
    os.replace(path + ".part", path)


def write_weights(path, d_model, width, rng):
    scale = 1.0 / d_model**0.5
    header, blobs, offset = {}, [], 0
    for name in ("q_proj", "k_proj", "v_proj"):
        data = array("f", (rng.uniform(-1.0, 1.0) * scale for _ in range(width * d_model))).tobytes()
        key = f"model.layers.0.self_attn.{name}.weight"
        header[key] = {"dtype": "F32", "shape": [width, d_model], "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path + ".part", "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(path + ".part", path)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir")
    p.add_argument("--tokens", type=int, default=400000)
    p.add_argument("--d-model", type=int, default=512)
    p.add_argument("--width", type=int, default=512)
    a = p.parse_args()
    if a.tokens < 1 or a.d_model < 1 or a.width < 1:
        p.error("sizes must be positive")
    os.makedirs(a.dir, exist_ok=True)
    rng = random.Random(7)
    write_x(os.path.join(a.dir, "x.npy"), a.tokens, a.d_model, rng)
    write_weights(os.path.join(a.dir, "m.safetensors"), a.d_model, a.width, rng)
    print(f"wrote {a.dir}/x.npy [{a.tokens}, {a.d_model}] f32 and {a.dir}/m.safetensors")


if __name__ == "__main__":
    main()
