"""channels_last on networks with the 5-D prompt parameter, activation checkpointing, training FLOPs,
the MFU table, and torch.compile equality with eager (tiny models: compile on CPU is slow)."""

from __future__ import annotations

import pytest
import torch

from dynet_model.build import build_model
from dynet_model.compiled import (
    cached_graph_count,
    compile_counts,
    compile_model,
    max_abs_diff,
    reset_compile_counts,
    set_activation_checkpointing,
)
from dynet_model.config import DSRIRConfig, ModelConfig
from dynet_model.flops import count_flops, count_train_flops
from dynet_model.memory_format import (
    input_channels_last,
    is_channels_last,
    resolve_channels_last,
    to_channels_last,
    to_contiguous,
)
from dynet_model.mfu import mfu, peak_tflops_for, resolve_peak_tflops


def _tiny(arch: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(ModelConfig.tiny(arch)).eval()


@pytest.mark.parametrize("arch", ["dynet", "promptir", "dsrir"])
def test_channels_last_converts_4d_only_and_matches_contiguous(arch):
    cfg = ModelConfig.tiny(arch) if arch != "dsrir" else DSRIRConfig()
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    x = torch.rand(2, 3, 24, 40)
    with torch.no_grad():
        ref = model(x)
    if arch != "dsrir":  # the 5-D prompt bank is what made model.to(channels_last) raise
        with pytest.raises(RuntimeError):
            model.to(memory_format=torch.channels_last)
    params = {name: p for name, p in model.named_parameters()}
    to_channels_last(model)
    assert is_channels_last(model)
    for name, p in model.named_parameters():
        assert p is params[name]  # same Parameter objects: an existing optimizer still points at them
        if p.dim() == 5:
            assert p.is_contiguous()
    with torch.no_grad():
        out = model(input_channels_last(x))
    assert out.shape == ref.shape
    assert max_abs_diff(out, ref) < 1e-5
    to_contiguous(model)
    assert all(p.is_contiguous() for p in model.parameters())


def test_channels_last_auto_is_cuda_only():
    assert resolve_channels_last(None, "cuda") and not resolve_channels_last(None, "cpu")
    assert resolve_channels_last(True, "cpu") and not resolve_channels_last(False, "cuda")


@pytest.mark.parametrize("arch", ["dynet", "dsrir"])
def test_activation_checkpointing_gives_the_same_gradients(arch):
    cfg = ModelConfig.tiny(arch) if arch != "dsrir" else DSRIRConfig()
    x = torch.rand(2, 3, 32, 32)
    grads = []
    for checkpointed in (False, True):
        torch.manual_seed(0)
        model = build_model(cfg).train()
        blocks = set_activation_checkpointing(model, checkpointed)
        assert blocks > 0
        model(x).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-6, msg=name)


def test_train_flops_exceed_twice_the_forward_and_scale_with_batch():
    cfg = ModelConfig.tiny("dynet")
    fwd = count_flops(cfg, 32, reuse=(1, 2, 2, 2)).total
    train = count_train_flops(cfg, 32, reuse=(1, 2, 2, 2))
    assert 2 * fwd < train < 3.5 * fwd  # backward ~ 2x forward (no input gradient for the first conv)
    assert count_train_flops(cfg, 32, batch=3, reuse=(1, 2, 2, 2)) == 3 * train
    assert count_train_flops(cfg, 32, reuse=(2, 2, 2, 2)) > train


def test_mfu_peak_table_and_cpu_null():
    assert peak_tflops_for("NVIDIA H100 80GB HBM3", "bf16") == 989.0
    assert peak_tflops_for("NVIDIA H100 PCIe", "bf16") == 756.0
    assert peak_tflops_for("NVIDIA A100-SXM4-80GB", "fp32") == 19.5
    assert peak_tflops_for("Some GPU", "bf16") is None
    assert resolve_peak_tflops("cpu", "fp32") is None
    assert resolve_peak_tflops("cpu", "fp32", override=2.0) == 2.0
    assert mfu(5e11, None) is None and mfu(5e11, 1.0) == pytest.approx(0.5)


def test_compiled_dynet_equals_eager_and_compiles_once_per_reuse_vector():
    from dynet_model.measure import ModelSpec, compiled_vs_eager

    model = _tiny("dynet")
    reset_compile_counts()
    compiled = compile_model(model, dynamic=False)
    for reuse in [(1, 1, 1, 1), (1, 1, 1, 2), (1, 1, 1, 1), (1, 1, 1, 2)]:
        diff, _ = compiled_vs_eager(model, compiled, ModelSpec("t", "dynet", reuse), 16)
        assert diff < 1e-3, (reuse, diff)
    counts = compile_counts()
    assert counts["graphs"] == 2 and counts["frames_compiled"] == 2, counts  # one graph per vector, reused
    assert cached_graph_count(model) == 2


@pytest.mark.parametrize("kind", ["WithBias", "BiasFree"])
def test_layernorm_over_channels_equals_the_permuted_layer_norm(kind):
    from dynet_model.blocks import ChannelLayerNorm

    torch.manual_seed(0)
    norm = ChannelLayerNorm(12, kind)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        if norm.bias is not None:
            norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 12, 5, 7) * 3 + 1
    y = x.permute(0, 2, 3, 1)
    var = y.var(-1, keepdim=True, unbiased=False)
    ref = (y - y.mean(-1, keepdim=True)) / torch.sqrt(var + 1e-5) if kind == "WithBias" else y / torch.sqrt(var + 1e-5)
    ref = ref * norm.weight + (norm.bias if norm.bias is not None else 0)
    ref = ref.permute(0, 3, 1, 2)
    with torch.no_grad():
        torch.testing.assert_close(norm(x), ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(norm.over_channels(x), ref, rtol=1e-5, atol=1e-5)
        assert norm.over_channels(x.bfloat16()).dtype == torch.bfloat16


def test_inference_helper_channels_last_matches_and_auto_is_off_on_cpu():
    from dynet_model.compiled import accelerate_for_inference

    model = _tiny("promptir")
    x = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        ref = model(x)
        assert accelerate_for_inference(model, device="cpu") is model and not is_channels_last(model)
        out = accelerate_for_inference(model, device="cpu", channels_last=True)(x)
    assert is_channels_last(model) and max_abs_diff(out, ref) < 1e-5
