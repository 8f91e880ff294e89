"""The network matches the official ImageNet-64 layout and behaves as the facts describe."""

from pathlib import Path

import pytest
import torch
from nets import TINY_KWARGS

from visualizer.models import IMAGENET64_KWARGS, EDMPrecond, infer_kwargs

KEYS_FILE = Path(__file__).parent / "data" / "imagenet64_state_dict_keys.txt"


def _reference_keys() -> list[tuple[str, tuple[int, ...]]]:
    if not KEYS_FILE.exists():
        pytest.skip(f"{KEYS_FILE} not present")
    rows = [line.split("\t") for line in KEYS_FILE.read_text().splitlines() if line.strip()]
    return [(k, tuple(int(s) for s in shape.strip("()").split(",") if s.strip())) for k, shape, _ in rows]


def test_imagenet64_state_dict_equals_official_key_list():
    with torch.device("meta"):
        net = EDMPrecond(**IMAGENET64_KWARGS)
    ours = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
    assert ours == _reference_keys()
    assert sum(p.numel() for p in net.parameters()) == 295_899_267
    buffers = [k for k, _ in net.named_buffers()]
    assert len(buffers) == 12 and all(k.endswith("resample_filter") for k in buffers)


def test_infer_kwargs_reproduces_imagenet64_layout():
    with torch.device("meta"):
        sd = EDMPrecond(**IMAGENET64_KWARGS).state_dict()
        inferred = infer_kwargs({"module." + k: v for k, v in sd.items()})
        rebuilt = EDMPrecond(**inferred).state_dict()
    assert {k: v.shape for k, v in rebuilt.items()} == {k: v.shape for k, v in sd.items()}
    assert inferred["channel_mult"] == [1, 2, 3, 4] and inferred["attn_resolutions"] == [32, 16, 8]


def test_infer_kwargs_rejects_non_adm_dict():
    with pytest.raises(ValueError, match="not an ADM"):
        infer_kwargs({"foo.weight": torch.zeros(1)})


def _randomized(net: EDMPrecond) -> EDMPrecond:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return net.eval()


def test_preconditioning_formulas():
    """With F = 0 (zero-initialised output conv), D(x, s) = c_skip x exactly."""
    net = EDMPrecond(**TINY_KWARGS).eval()
    x = torch.randn(2, 3, 16, 16)
    sigma = torch.tensor([0.5, 80.0])
    expected = x * (0.25 / (sigma**2 + 0.25)).reshape(-1, 1, 1, 1)
    torch.testing.assert_close(net(x, sigma, torch.eye(10)[:2]), expected)


def test_resampling_is_average_pool_and_nearest_upsample():
    net = EDMPrecond(**TINY_KWARGS)
    down = net.model.enc["8x8_down"].skip
    up = net.model.dec["16x16_up"].skip
    x = torch.randn(1, 64, 8, 8)
    torch.testing.assert_close(down(x), torch.nn.functional.avg_pool2d(x, 2))
    torch.testing.assert_close(up(x), torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))


def test_attention_heads_and_missing_attention_below_64_channels():
    net = EDMPrecond(**TINY_KWARGS)
    assert net.model.dec["8x8_in0"].num_heads == 1
    small = EDMPrecond(**{**TINY_KWARGS, "model_channels": 16})  # 32 channels at 8x8: zero heads, no qkv
    assert not hasattr(small.model.dec["8x8_in0"], "qkv")
    assert "model.dec.8x8_in0.qkv.weight" not in small.state_dict()


def test_batch_and_labels_broadcast_and_determinism():
    net = _randomized(EDMPrecond(**TINY_KWARGS))
    x = torch.randn(3, 3, 16, 16)
    labels = torch.eye(10)[[1, 4, 7]]
    full = net(x, 2.0, labels)
    alone = torch.cat([net(x[i : i + 1], torch.tensor([2.0]), labels[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(full, alone, rtol=1e-5, atol=1e-5)
    assert not torch.equal(net(x, 2.0, labels), net(x, 2.0, torch.eye(10)[[2, 4, 7]]))


def test_unconditional_labels_none_means_zeros():
    net = _randomized(EDMPrecond(**TINY_KWARGS))
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(net(x, 1.0, None), net(x, 1.0, torch.zeros(2, 10)))


def test_precision_stays_float32_off_cuda():
    net = _randomized(EDMPrecond(**{**TINY_KWARGS, "use_fp16": True}))
    assert net.use_fp16 and net.compute_dtype(torch.device("cpu")) == torch.float32
    assert net.compute_dtype(torch.device("cuda")) == torch.float16
    net.precision = "bf16"
    assert net.compute_dtype(torch.device("cuda")) == torch.bfloat16
    assert net(torch.randn(1, 3, 16, 16), 1.0).dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_reduced_precision_close_to_float32_on_cuda(precision):
    net = _randomized(EDMPrecond(**TINY_KWARGS)).cuda()
    x = torch.randn(4, 3, 16, 16, device="cuda") * 5
    ref = net(x, 5.0, torch.eye(10, device="cuda")[:4])
    net.precision = precision
    out = net(x, 5.0, torch.eye(10, device="cuda")[:4])
    assert ((out - ref).norm() / ref.norm()).item() < 2e-2


def test_other_model_types_are_refused():
    with pytest.raises(ValueError, match="SongUNet"):
        EDMPrecond(16, 3, model_type="SongUNet")
