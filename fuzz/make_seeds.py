#!/usr/bin/env python3
"""Writes the seed corpus in fuzz/seeds/<target>/: small valid inputs of every form each parser
reads (and a few near misses), where the fuzzer starts and the test suite's property tests
mutate. Run from anywhere; it rewrites the directory."""
import json, os, shutil, struct

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")


def put(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def npy(descr, shape, data, version=1, extra=""):
    shape_txt = "(" + "".join(f"{d}, " for d in shape).rstrip(" ") + ")" if len(shape) != 1 else f"({shape[0]},)"
    h = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_txt}, {extra}}}"
    pre = 10 if version == 1 else 12
    h += " " * ((64 - (pre + len(h) + 1) % 64) % 64) + "\n"
    out = b"\x93NUMPY" + bytes([version, 0])
    out += struct.pack("<H" if version == 1 else "<I", len(h))
    return out + h.encode() + data


def safetensors(tensors):
    header, blob = {}, b""
    for name, (dtype, shape, values) in tensors.items():
        fmt = {"F32": "<f", "F16": "<e", "BF16": None}[dtype]
        if fmt:
            raw = b"".join(struct.pack(fmt, v) for v in values)
        else:
            raw = b"".join(struct.pack("<f", v)[2:] for v in values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def gguf(meta, tensors, version=3, alignment=32):
    """A GGUF file: `meta` as (key, type number, packed value), `tensors` as (name, dims in
    ggml's order, ggml type number, raw bytes), each tensor at the next aligned offset."""
    def string(t):
        return struct.pack("<Q", len(t)) + t.encode()
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(meta))
    for key, ty, value in meta:
        out += string(key) + struct.pack("<I", ty) + value
    at, blobs = 0, []
    for name, dims, ty, raw in tensors:
        out += string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ty, at)
        blobs.append((at, raw))
        at = -(-(at + len(raw)) // alignment) * alignment
    data = -(-len(out) // alignment) * alignment
    out += b"\0" * (data - len(out))
    for offset, raw in blobs:
        out += b"\0" * (data + offset - len(out)) + raw
    return out


def main():
    shutil.rmtree(SEEDS, ignore_errors=True)
    f32 = lambda vals: b"".join(struct.pack("<f", v) for v in vals)
    put("npy", "f32_2x3.npy", npy("<f4", [2, 3], f32([1, 2, 3, 4, 5, 6])))
    put("npy", "f16_4.npy", npy("<f2", [4], b"".join(struct.pack("<e", v) for v in [0.5, -1, 2, 3])))
    put("npy", "f16_char_e.npy", npy("<e", [2], b"".join(struct.pack("<e", v) for v in [1, 2])))
    put("npy", "f64_be_2x1.npy", npy(">f8", [2, 1], struct.pack(">dd", 0.25, -8)))
    put("npy", "f32_native_v2.npy", npy("=f4", [1, 2], f32([7, 8]), version=2))
    put("npy", "f32_v3_3d.npy", npy("|f4", [1, 2, 2], f32([1, 2, 3, 4]), version=3))
    put("npy", "empty_0x4.npy", npy("<f4", [0, 4], b""))
    put("npy", "scalar.npy", npy("<f4", [], f32([3])))
    put("npy", "int32_refused.npy", npy("<i4", [2], struct.pack("<ii", 1, 2)))
    put("npy", "truncated.npy", npy("<f4", [4, 4], f32([1] * 5)))

    arch = struct.pack("<Q", 5) + b"llama"
    q8 = bytes((i * 7) % 256 for i in range(2 * 34))
    put("gguf", "llama_q8_0_f32.gguf", gguf(
        [("general.architecture", 8, arch), ("llama.attention.head_count", 4, struct.pack("<I", 2)),
         ("llama.attention.head_count_kv", 4, struct.pack("<I", 1)),
         ("llama.embedding_length", 4, struct.pack("<I", 32))],
        [("blk.0.attn_q.weight", [32, 2], 8, q8), ("blk.0.attn_k.weight", [32, 1], 0, f32(range(32))),
         ("blk.0.attn_v.weight", [32, 1], 1, b"".join(struct.pack("<e", v) for v in range(32)))]))
    put("gguf", "q4_k_v2.gguf", gguf([("general.alignment", 4, struct.pack("<I", 64))],
                                     [("w", [256, 1], 12, bytes(range(144)))], version=2, alignment=64))

    d, w = 2, [1.0, 10.0, 0.0, -1.0]
    put("checkpoint", "bert.safetensors", safetensors({
        f"l.0.attention.self.{p}.{k}": ("F32", [d, d] if k == "weight" else [d], w if k == "weight" else [0.5, -0.5])
        for p in ("query", "key", "value") for k in ("weight", "bias")}))
    put("checkpoint", "llama_gqa_f16.safetensors", safetensors({
        "model.layers.0.self_attn.q_proj.weight": ("F16", [4, 2], [1, 2, 3, 4, 5, 6, 7, 8]),
        "model.layers.0.self_attn.k_proj.weight": ("F16", [2, 2], w),
        "model.layers.0.self_attn.v_proj.weight": ("BF16", [2, 2], w)}))
    put("checkpoint", "gpt2.safetensors", safetensors({
        "h.0.attn.c_attn.weight": ("F32", [2, 6], list(range(12))),
        "h.0.attn.c_attn.bias": ("F32", [6], [1, 2, 3, 4, 5, 6])}))

    for i, text in enumerate(["auto", "all", "naive;direct(wg=32)", "regtile(wgx=8,wgy=16)",
                              "splitk(splits=8),3", "subgroup-texture(wg=16)", "direct(wg=0)",
                              "tiled(wg=4", "9"]):
        put("kernel_config", f"{i}.txt", text)

    trial = {"config": "naive", "ms": 1.5, "status": "ok"}
    good = {"config": "direct(wg=32)", "shader_hash": "00ff", "proxy": "tokens 32, d_model 768, n_out 2304",
            "trials": [trial, {"config": "tiled", "ms": None, "status": "failed validation"}]}
    put("tuning_cache", "good.json", json.dumps({"entries": {"llvmpipe | Vulkan | Mesa | tokens<=32": good}}, indent=2))
    put("tuning_cache", "one_bad_entry.json", json.dumps({"entries": {"a": good, "b": {"config": 7}}}))
    put("tuning_cache", "truncated.json", json.dumps({"entries": {"a": good}})[:60])
    put("tuning_cache", "wrong_schema.json", "[1, 2, 3]")

    # Commit journals (.qkv-commit): what qkv writes, and what a hostile user could plant.
    h = "0123456789abcdef"
    put("journal", "rollback.json", json.dumps({"entries": [
        {"name": "q.npy", "partial": f".q.npy.{h}.qkv-partial", "old": f".q.npy.{h}.qkv-old"},
        {"name": "k.npy", "partial": f".k.npy.{h}.qkv-partial", "old": None, "id": [1, 2]}]}))
    put("journal", "planted_thesis.json", json.dumps({"entries": [
        {"name": "thesis.tex", "partial": ".gone", "old": None}]}))
    put("journal", "outside.json", json.dumps({"entries": [
        {"name": "../x", "partial": "p", "old": None}]}))
    put("journal", "empty.json", json.dumps({"entries": []}))


if __name__ == "__main__":
    main()
