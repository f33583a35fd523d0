"""Q and K after RoPE and QK-norm against the models' own code: Hugging Face transformers'
Llama 3 (its llama3 frequency scaling), Qwen3 (RMSNorm per head) and Gemma 3 (RMSNorm with 1 + w,
a sliding layer at base 10,000 and a full one) built from tiny configs with random weights,
saved as safetensors with their config.json, run on the CPU with torch. The Q and K each model
hands its attention (caught by an attention function registered for the test) are compared
with `Projector.from_checkpoint(..., rope=True, qk_norm=True)` on the same attention input,
at positions from an offset (a decode step's) within two sequences.

The bound, per element: both sides accumulate the projection and normalize in f32, so each
errs by at most qk_ttol (the library's Q/K tolerance: the f32 accumulation's, plus the norm's
and RoPE's own rounding) times the element's magnitude m' (Σ|x·w| carried through the norm and
the rotation to first order, as the library's reference carries it: written again here);
transformers also computes each angle in f32 (inv_freq from an f32 power, the product by the
position, cos and sin in f32): at most 8 units of f32 rounding per radian of angle and 8
more, times m'. So |ours - theirs| <= m' (2 qk_ttol + 8u (max position + 1)), u = 2^-24."""

import numpy as np
import pytest
import torch
import transformers
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

import qkv_wgpu

U = 2.0 ** -24
BATCH, SEQ, OFFSET = 2, 8, 30
CAUGHT = {}


def catch(module, query, key, value, *args, **kwargs):
    """The model's attention, after keeping the Q and K it was given ([batch, heads, seq,
    head_dim])."""
    CAUGHT[module.layer_idx] = (query.detach().clone(), key.detach().clone())
    return sdpa_attention_forward(module, query, key, value, *args, **kwargs)


AttentionInterface.register("qkv_catch", catch)

SMALL = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, vocab_size=64, max_position_embeddings=512)


def llama3():
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        num_hidden_layers=1, rms_norm_eps=1e-5, **SMALL,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500_000.0, "factor": 8.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 64}))


def qwen3():
    return transformers.Qwen3ForCausalLM(transformers.Qwen3Config(
        num_hidden_layers=1, rms_norm_eps=1e-6, **SMALL,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0}))


def gemma3():
    # Layers 0 to 4 slide (base 10,000), layer 5 attends to everything (base 1,000,000).
    return transformers.Gemma3ForCausalLM(transformers.Gemma3TextConfig(
        num_hidden_layers=6, rms_norm_eps=1e-6, sliding_window=64, **SMALL))


def magnitudes(x, w, norm):
    """m' of Q or K [tokens, heads, dim]: Σ|x·w| per element, through the norm (weights as
    applied: 1 + w for Gemma) to first order, then summed over each rotate-half pair."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    y = (x @ w.T).reshape(len(x), -1, 16)
    m = (np.abs(x) @ np.abs(w.T)).reshape(y.shape)
    if norm is not None:
        scale, eps = norm
        n = y.shape[-1]
        r = 1.0 / np.sqrt((y * y).mean(-1, keepdims=True) + eps)
        spread = (np.abs(y) * m).sum(-1, keepdims=True) / n
        m = np.abs(scale) * r * (m + np.abs(y) * r * r * spread)
    half = m.shape[-1] // 2
    pair = m[..., :half] + m[..., half:]
    return np.concatenate([pair, pair], -1)


@pytest.mark.parametrize("make,layers,norm", [
    (llama3, [0], False),
    (qwen3, [0], True),
    (gemma3, [0, 5], True),
])
def test_q_and_k_match_the_model_s_own(tmp_path, make, layers, norm):
    torch.manual_seed(36)
    model = make().eval()
    model.set_attn_implementation("qkv_catch")
    with torch.no_grad():
        for layer in model.model.layers:
            attn = layer.self_attn
            for name in ("q_norm", "k_norm"):
                if hasattr(attn, name):
                    # Random norm weights: the initial ones (or zeros, as 1 + w) hide errors.
                    getattr(attn, name).weight.uniform_(-0.5, 1.5)
    model.save_pretrained(tmp_path)
    # The attention's input (after each layer's own input norm), caught as it is given.
    inputs = {}
    for i in layers:
        model.model.layers[i].self_attn.register_forward_pre_hook(
            lambda mod, args, kw, i=i: inputs.__setitem__(i, kw["hidden_states"].clone()),
            with_kwargs=True)
    x = torch.randn(BATCH, SEQ, SMALL["hidden_size"])
    position_ids = (OFFSET + torch.arange(SEQ)).expand(BATCH, SEQ)
    with torch.no_grad():
        model.model(inputs_embeds=x, position_ids=position_ids)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    for i in layers:
        prefix = f"model.layers.{i}"
        p = qkv_wgpu.Projector.from_checkpoint(
            tmp_path / "model.safetensors", prefix, rope=True, qk_norm=norm,
            head_layout="heads", kernel="tiled")
        xi = np.ascontiguousarray(inputs[i].numpy())
        ttol = p.check(xi.reshape(-1, xi.shape[-1]))["qk_ttol"]
        q, k, _ = p(xi, position_offset=OFFSET)
        bound_scale = 2 * ttol + 8 * U * (OFFSET + SEQ)
        for got, want, name in ((q, CAUGHT[i][0], "q"), (k, CAUGHT[i][1], "k")):
            w = state[f"{prefix}.self_attn.{name}_proj.weight"]
            scale = None
            if norm:
                nw = state[f"{prefix}.self_attn.{name}_norm.weight"].astype(np.float64)
                plus_one = isinstance(model, transformers.Gemma3ForCausalLM)
                scale = (1.0 + nw if plus_one else nw, model.config.rms_norm_eps)
            m = magnitudes(xi.reshape(-1, xi.shape[-1]), w, scale)
            # [tokens, heads, dim] -> [batch, heads, seq, dim], as both sides lay them out.
            m = m.reshape(BATCH, SEQ, -1, 16).transpose(0, 2, 1, 3)
            want = want.numpy().astype(np.float64)
            err = np.abs(np.asarray(got, np.float64) - want)
            assert got.shape == want.shape, (got.shape, want.shape)
            print(f"{make.__name__} layer {i} {name}: worst |ours - transformers| / m' "
                  f"{(err / m).max():.3e} within {bound_scale:.3e}")
            assert np.all(err <= bound_scale * m), (
                f"{make.__name__} layer {i} {name}: worst err/m' {(err / m).max():.3e}, "
                f"bound {bound_scale:.3e}")
            # The comparison can fail: the model's Q at the next position is far outside it.
            if name == "q":
                shifted, _, _ = p(xi, position_offset=OFFSET + 1)
                assert np.any(np.abs(np.asarray(shifted, np.float64) - want) > bound_scale * m)
