"""Official checkpoints: the key map against the official shape files, and output equivalence.

The equivalence test writes a checkpoint in the official release format (Lightning dict, ``net.``
prefix, fp16) with random weights of the official shapes, loads it through our key map, and compares
our network's output with an independent functional re-implementation of the official forward
(plain torch.nn.functional over the official-keyed state dict, in the official order of operations).
"""

from __future__ import annotations

import pickle

import pytest
import torch
import torch.nn.functional as F

from dynet_model.build import build_model
from dynet_model.checkpoint import load_official_checkpoint, model_from_official
from dynet_model.config import DYNET_L, DYNET_S, ModelConfig
from dynet_model.keymap import UNUSED_PREFIXES, map_official_state_dict
from tests.dynet_model.official_states import official_shapes, random_official_state


# ---------------- independent functional reference of the official forward ----------------
def _ln(x, w, b):
    n, c, h, wd = x.shape
    t = x.flatten(2).transpose(1, 2)  # b (h w) c
    mu = t.mean(-1, keepdim=True)
    var = t.var(-1, keepdim=True, unbiased=False)
    t = (t - mu) / torch.sqrt(var + 1e-5) * w + b
    return t.transpose(1, 2).reshape(n, c, h, wd)


def _dw(x, w):
    return F.conv2d(x, w, padding=1, groups=w.shape[0])


def _block(sd, p, x):
    n, c, h, w = x.shape
    heads = sd[p + "attn.temperature"].shape[0]
    y = _ln(x, sd[p + "norm1.body.weight"], sd[p + "norm1.body.bias"])
    q, k, v = _dw(F.conv2d(y, sd[p + "attn.qkv.weight"]), sd[p + "attn.qkv_dwconv.weight"]).chunk(3, dim=1)
    q, k, v = (t.reshape(n, heads, c // heads, h * w) for t in (q, k, v))
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    attn = ((q @ k.transpose(-2, -1)) * sd[p + "attn.temperature"]).softmax(dim=-1)
    x = x + F.conv2d((attn @ v).reshape(n, c, h, w), sd[p + "attn.project_out.weight"])
    y = _ln(x, sd[p + "norm2.body.weight"], sd[p + "norm2.body.bias"])
    y1, y2 = _dw(F.conv2d(y, sd[p + "ffn.project_in.weight"]), sd[p + "ffn.dwconv.weight"]).chunk(2, dim=1)
    return x + F.conv2d(F.gelu(y1) * y2, sd[p + "ffn.project_out.weight"])


def _prompt(sd, p, x):
    n, _, h, w = x.shape
    wts = F.softmax(F.linear(x.mean(dim=(-2, -1)), sd[p + "linear_layer.weight"], sd[p + "linear_layer.bias"]), dim=1)
    comps = sd[p + "prompt_param"].unsqueeze(0).repeat(n, 1, 1, 1, 1, 1).squeeze(1)
    prompt = (wts.unsqueeze(-1).unsqueeze(-1).unsqueeze(-1) * comps).sum(dim=1)
    return F.conv2d(F.interpolate(prompt, (h, w), mode="bilinear"), sd[p + "conv3x3.weight"], padding=1)


def _interact(sd, level, x):
    y = torch.cat([x, _prompt(sd, f"prompt{level}.", x)], 1)
    return F.conv2d(_block(sd, f"noise_level{level}.", y), sd[f"reduce_noise_level{level}.weight"])


def _stage(sd, name, x, times, shared):
    for i in range(times):
        x = _block(sd, f"{name}." if shared else f"{name}.{i}.", x)
    return x


def official_forward(sd, x, reuse, shared):
    """The official DyNet (shared=True) / PromptIR (shared=False, decoder=True) forward."""
    f1, f2, f3, f4 = reuse
    up = lambda name, t: F.pixel_shuffle(F.conv2d(t, sd[f"{name}.body.0.weight"], padding=1), 2)
    down = lambda name, t: F.pixel_unshuffle(F.conv2d(t, sd[f"{name}.body.0.weight"], padding=1), 2)
    e1 = _stage(sd, "encoder_level1", F.conv2d(x, sd["patch_embed.proj.weight"], padding=1), f1, shared)
    e2 = _stage(sd, "encoder_level2", down("down1_2", e1), f2, shared)
    e3 = _stage(sd, "encoder_level3", down("down2_3", e2), f3, shared)
    lat = _interact(sd, 3, _stage(sd, "latent", down("down3_4", e3), f4, shared))
    d3 = up("up4_3", lat)
    if shared:
        e3 = _interact(sd, 2, e3)
    d3 = _stage(sd, "decoder_level3", F.conv2d(torch.cat([d3, e3], 1), sd["reduce_chan_level3.weight"]), f3, shared)
    if not shared:
        d3 = _interact(sd, 2, d3)
    d2 = up("up3_2", d3)
    if shared:
        e2 = _interact(sd, 1, e2)
    d2 = _stage(sd, "decoder_level2", F.conv2d(torch.cat([d2, e2], 1), sd["reduce_chan_level2.weight"]), f2, shared)
    if not shared:
        d2 = _interact(sd, 1, d2)
    d1 = _stage(sd, "decoder_level1", torch.cat([up("up2_1", d2), e1], 1), f1, shared)
    for i in range(4):
        d1 = _block(sd, f"refinement.{i}.", d1)
    return F.conv2d(d1, sd["output.weight"], padding=1) + x


# ------------------------------------------ tests ------------------------------------------
@pytest.mark.parametrize("arch", ["dynet", "promptir"])
def test_every_official_key_maps_to_same_shape_parameter(arch):
    official = {k: torch.empty(s, device="meta") for k, s in official_shapes(arch).items()}
    ours, skipped = map_official_state_dict(official, arch)
    assert skipped == sorted(k for k in official if k.startswith(UNUSED_PREFIXES[arch]))
    assert {k.split(".")[0] for k in skipped} == {p.rstrip(".") for p in UNUSED_PREFIXES[arch]}
    with torch.device("meta"):
        model = build_model(ModelConfig(arch=arch))
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.items()} == expected
    assert len(ours) + len(skipped) == len(official)


def test_wrong_arch_or_unknown_key_is_rejected():
    promptir = {k: torch.empty(s, device="meta") for k, s in official_shapes("promptir").items()}
    with pytest.raises(ValueError):  # chnl_reduce* are not DyNet modules
        map_official_state_dict(promptir, "dynet")
    with pytest.raises(ValueError):
        map_official_state_dict({"some_other_net.weight": torch.zeros(1)}, "dynet")


def _save_lightning(path, sd, half=True):
    state = {"net." + k: (v.half() if half else v) for k, v in sd.items()}
    torch.save({"epoch": 119, "global_step": 1000, "state_dict": state}, path)


def test_dynet_matches_official_forward(tmp_path):
    sd = random_official_state("dynet", seed=1)
    _save_lightning(tmp_path / "dynet.ckpt", sd, half=True)
    sd = {k: v.half().float() for k, v in sd.items()}  # what the fp16 release holds
    model = model_from_official(tmp_path / "dynet.ckpt", ModelConfig(arch="dynet"))
    x = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(5))
    for reuse in (DYNET_S, DYNET_L):
        with torch.no_grad():
            ref = official_forward(sd, x, reuse, shared=True)
            out = model(x, reuse=reuse)
        assert torch.isfinite(ref).all() and (ref - x).abs().mean() > 1e-2  # a non-trivial network
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_promptir_matches_official_forward_bare_state_dict(tmp_path):
    sd = random_official_state("promptir", seed=2)
    torch.save(sd, tmp_path / "promptir.pth")  # bare fp32 state dict, no prefix
    state, skipped = load_official_checkpoint(tmp_path / "promptir.pth", "promptir")
    assert len(skipped) == 6
    model = build_model(ModelConfig(arch="promptir")).eval()
    model.load_state_dict(state, strict=True)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        ref = official_forward(sd, x, DYNET_L, shared=False)
        out = model(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


class ArbitraryObject:  # any non-allow-listed class must not be unpickled
    pass


def test_checkpoint_loading_refuses_pickled_objects(tmp_path):
    torch.save({"state_dict": {"net.x": torch.zeros(1)}, "obj": ArbitraryObject()}, tmp_path / "evil.ckpt")
    with pytest.raises(pickle.UnpicklingError):
        load_official_checkpoint(tmp_path / "evil.ckpt", "dynet")


def test_restore_command_runs_an_official_checkpoint(tmp_path):
    import cv2
    import numpy as np

    from dynet_model.restore import main as restore_main

    sd = random_official_state("dynet", seed=3)
    _save_lightning(tmp_path / "official.ckpt", sd, half=True)
    img = np.random.default_rng(0).integers(0, 255, (20, 13, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "x.png"), img)
    report = restore_main([str(tmp_path / "x.png"), "-o", str(tmp_path / "out"), "--checkpoint",
                           str(tmp_path / "official.ckpt"), "--arch", "dynet", "--variant", "s"])
    assert [e["status"] for e in report] == ["ok"]
    out = cv2.imread(str(tmp_path / "out" / "x.png"))
    assert out.shape == img.shape
    sd = {k: v.half().float() for k, v in sd.items()}
    x = torch.from_numpy(img[:, :, ::-1].copy()).permute(2, 0, 1)[None].float() / 255  # BGR -> RGB
    padded = F.pad(x, (0, 3, 0, 4), mode="reflect")  # our forward pads to a multiple of 8
    with torch.no_grad():
        ref = official_forward(sd, padded, DYNET_S, shared=True)[..., :20, :13]
    expected = (ref[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()[:, :, ::-1]
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 1
