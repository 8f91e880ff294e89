"""EDM pickles: our writer produces the official layout, the safe reader loads it (and older layouts) exactly."""

from __future__ import annotations

import io
import pickle
import pickletools
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch
from nets import tiny_kwargs, tiny_net

from visualizer.checkpoints.edm_pickle import load_edm_pickle, read_edm_pickle
from visualizer.checkpoints.edm_pickle_writer import (
    OFFICIAL_GLOBALS,
    EDMLayoutPickler,
    PersistentObject,
    dump_edm_layout,
    write_edm_pickle,
)
from visualizer.checkpoints.loading import build_network
from visualizer.errors import CheckpointError
from visualizer.models import IMAGENET64_KWARGS, EDMPrecond


def _outputs(net: EDMPrecond) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 16, 16, generator=g)
    with torch.no_grad():
        return net(x, torch.tensor([0.3, 7.0]), torch.eye(10)[[1, 4]])


def _assert_same_weights(a: EDMPrecond, b: EDMPrecond) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


def pickle_globals(data: bytes) -> set[str]:
    """'module.name' of every GLOBAL/STACK_GLOBAL/INST in a pickle, following memoized strings."""
    memo: dict[int, object] = {}
    strings: list[object] = []
    last: object = None
    found = set()
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
            last = arg
            strings.append(arg)
        elif op.name == "MEMOIZE":
            memo[len(memo)] = last
        elif op.name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = last
        elif op.name in ("BINGET", "LONG_BINGET", "GET"):
            last = memo.get(arg)
            strings.append(last)
        elif op.name == "STACK_GLOBAL":
            found.add(f"{strings[-2]}.{strings[-1]}")
            last = None
        elif op.name in ("GLOBAL", "INST"):
            found.add(arg.replace(" ", "."))
            last = None
        else:
            last = None
    return found


def test_roundtrip_gives_identical_weights_and_outputs(tmp_path):
    net = tiny_net(seed=3)
    path = write_edm_pickle(net, tmp_path / "net.pkl")
    loaded = load_edm_pickle(path)
    _assert_same_weights(net, loaded)
    assert torch.equal(_outputs(net), _outputs(loaded))
    assert not loaded.training and loaded.init_kwargs == net.init_kwargs
    assert [p.name for p in tmp_path.iterdir()] == ["net.pkl"]  # no temporary file left


def test_written_file_holds_exactly_the_official_globals_and_layout(tmp_path):
    path = write_edm_pickle(tiny_net(), tmp_path / "net.pkl")
    data = path.read_bytes()
    assert data[:2] == b"\x80\x04"  # protocol 4, like pickle.dump on Python 3.8+
    assert pickle_globals(data) == OFFICIAL_GLOBALS
    # Read with a permissive unpickler and the real torch/numpy functions: the official encoding.
    class Permissive(pickle.Unpickler):
        def find_class(self, module, name):
            if module == "torch_utils.persistence":
                return lambda meta: meta
            return super().find_class(module, name)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy 2 on numpy.core
        top = Permissive(io.BytesIO(data)).load()
    assert set(top) == {"ema", "loss_fn", "augment_pipe", "dataset_kwargs"} and top["augment_pipe"] is None
    ema = top["ema"]
    assert ema["type"] == "class" and ema["version"] == 6 and ema["class_name"] == "EDMPrecond"
    assert isinstance(ema["module_src"], str) and top["loss_fn"]["class_name"] == "EDMLoss"
    kwargs = ema["state"]["_init_kwargs"]
    assert type(kwargs["dropout"]) is np.float64 and kwargs["model_type"] == "DhariwalUNet"
    assert ema["state"]["_init_args"] == ()
    model = ema["state"]["_modules"]["model"]
    assert model["class_name"] == "DhariwalUNet" and isinstance(model["state"]["_modules"]["enc"], torch.nn.ModuleDict)
    weight = model["state"]["_modules"]["map_layer0"]["state"]["_parameters"]["weight"]
    assert isinstance(weight, torch.nn.Parameter) and not weight.requires_grad
    assert torch.equal(weight, tiny_net().model.map_layer0.weight)


def test_numpy_scalar_kwargs_become_python_numbers(tmp_path):
    class NumpyKwargs(EDMLayoutPickler):
        def init_kwargs(self, module):
            kwargs = super().init_kwargs(module)
            if kwargs:
                kwargs.update(sigma_data=np.float64(0.5), model_channels=np.int64(32), use_fp16=np.bool_(False))
            return kwargs

    path = dump_edm_layout({"ema": tiny_net()}, tmp_path / "np.pkl", NumpyKwargs)
    kwargs, _, _ = read_edm_pickle(path)
    assert type(kwargs["dropout"]) is float and type(kwargs["sigma_data"]) is float
    assert type(kwargs["model_channels"]) is int and type(kwargs["use_fp16"]) is bool
    assert torch.equal(_outputs(load_edm_pickle(path)), _outputs(tiny_net()))


def test_use_fp16_is_preserved(tmp_path):
    net = tiny_net()
    fp16 = EDMPrecond(**tiny_kwargs(), use_fp16=True)
    fp16.load_state_dict(net.state_dict())
    loaded = load_edm_pickle(write_edm_pickle(fp16, tmp_path / "fp16.pkl"))
    assert loaded.use_fp16 and loaded.precision == "fp16"
    assert read_edm_pickle(tmp_path / "fp16.pkl")[0]["use_fp16"] is True
    assert not load_edm_pickle(write_edm_pickle(net, tmp_path / "fp32.pkl")).use_fp16


def test_songunet_and_other_preconditionings_are_refused_clearly(tmp_path):
    class SongUNet(EDMLayoutPickler):
        def init_kwargs(self, module):
            kwargs = super().init_kwargs(module)
            return {**kwargs, "model_type": "SongUNet", "embedding_type": "positional"} if kwargs else kwargs

    path = dump_edm_layout({"ema": tiny_net()}, tmp_path / "cifar10.pkl", SongUNet)
    with pytest.raises(CheckpointError, match=r"cifar10\.pkl: model_type 'SongUNet' is not supported.*SongUNet"):
        load_edm_pickle(path)
    vp = dump_edm_layout({"ema": PersistentObject("VPPrecond", {"_init_kwargs": {}})}, tmp_path / "vp.pkl")
    with pytest.raises(CheckpointError, match=r"vp\.pkl: the network is a VPPrecond; only EDMPrecond"):
        load_edm_pickle(vp)


def test_older_layout_variant_loads(tmp_path):
    """OrderedDict containers, fewer hook dicts, positional constructor args, a non-persistent buffer."""

    class OldTorch(EDMLayoutPickler):
        def module_state(self, module):
            state = {k: OrderedDict(v) if k in ("_parameters", "_buffers", "_modules") else v
                     for k, v in super().module_state(module).items()
                     if k not in ("_non_persistent_buffers_set", "_forward_hooks_with_kwargs",
                                  "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs",
                                  "_backward_pre_hooks", "_state_dict_pre_hooks", "_load_state_dict_post_hooks")}
            if isinstance(module, EDMPrecond):
                kwargs = super().init_kwargs(module)
                state["_init_args"] = (kwargs.pop("img_resolution"), kwargs.pop("img_channels"))
                state["_init_kwargs"] = kwargs
            return state

    net = tiny_net(seed=5)
    path = dump_edm_layout({"ema": net, "loss_fn": None, "augment_pipe": None}, tmp_path / "old.pkl", OldTorch)
    assert b"_forward_hooks_with_kwargs" not in path.read_bytes()
    _assert_same_weights(net, load_edm_pickle(path))

    net.register_buffer("scratch", torch.ones(3), persistent=False)  # written, but not part of the state dict
    try:
        path = write_edm_pickle(net, tmp_path / "scratch.pkl")
    finally:
        del net._buffers["scratch"]
        net._non_persistent_buffers_set.discard("scratch")
    _assert_same_weights(net, load_edm_pickle(path))


def test_top_level_may_be_the_network_itself(tmp_path):
    net = tiny_net(seed=2)
    _assert_same_weights(net, load_edm_pickle(dump_edm_layout(net, tmp_path / "bare.pkl")))


def test_imagenet64_settings_build_on_the_meta_device(tmp_path):
    """The full 296 M-parameter network is built without memory; mismatched weights are listed, capped."""
    with torch.device("meta"):
        weights = EDMPrecond(**IMAGENET64_KWARGS).state_dict()
    net = build_network(IMAGENET64_KWARGS, weights, "imagenet.pkl")
    assert all(p.is_meta for p in net.parameters())
    assert sum(p.numel() for p in net.parameters()) == 295_899_267

    class ImageNetKwargs(EDMLayoutPickler):
        def init_kwargs(self, module):
            kwargs = super().init_kwargs(module)
            return {**IMAGENET64_KWARGS, "use_fp16": True} if kwargs else kwargs

    path = dump_edm_layout({"ema": tiny_net()}, tmp_path / "liar.pkl", ImageNetKwargs)
    with pytest.raises(CheckpointError, match=r"liar\.pkl: the weights do not fit.*missing: .*and \d+ more.*"
                                              r"unexpected: .*mis-shaped: model\.map_layer0\.weight"):
        load_edm_pickle(path)


def test_wrong_settings_and_missing_parts_are_reported(tmp_path):
    class TwoBlocks(EDMLayoutPickler):
        def init_kwargs(self, module):
            kwargs = super().init_kwargs(module)
            return {**kwargs, "num_blocks": 2} if kwargs else kwargs

    path = dump_edm_layout({"ema": tiny_net()}, tmp_path / "blocks.pkl", TwoBlocks)
    with pytest.raises(CheckpointError, match=r"blocks\.pkl: the weights do not fit .*num_blocks=2.*missing"):
        load_edm_pickle(path)
    no_ema = dump_edm_layout({"loss_fn": None}, tmp_path / "no_ema.pkl")
    with pytest.raises(CheckpointError, match=r"no_ema\.pkl: no 'ema' network"):
        load_edm_pickle(no_ema)
    with pytest.raises(CheckpointError, match=r"missing\.pkl: no such file"):
        load_edm_pickle(tmp_path / "missing.pkl")
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pkl: empty file"):
        load_edm_pickle(tmp_path / "empty.pkl")


def test_failed_write_leaves_nothing_behind(tmp_path):
    class Broken(EDMLayoutPickler):
        def init_kwargs(self, module):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        dump_edm_layout({"ema": tiny_net()}, tmp_path / "broken.pkl", Broken)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(TypeError, match="extra"):
        write_edm_pickle(tiny_net(), tmp_path / "x.pkl", extra={"dataset_kwargs": object()})
    assert list(tmp_path.iterdir()) == []

