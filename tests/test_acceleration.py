"""The fast paths (models.acceleration): hook-free body with taps, hook replay, CUDA graphs, torch.compile.

The CPU tests run the FastBody's direct path (no graphs, no compile): the same hook replay and
fallback logic the CUDA paths use. The CUDA tests compare every fast mode and precision with the
float32 eager path: relative error near 1e-5 for float32, near 1e-2 for fp16/bf16.
"""

from __future__ import annotations

import pytest
import torch
from nets import tiny_net

from visualizer.adapters.edm import EDMAdapter
from visualizer.models.acceleration import RECOMPILE_LIMIT, FastBody, accelerate
from visualizer.models.seeding import one_hot
from visualizer.trace.capture import capture

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
LAYERS = ["enc.16x16_conv", "enc.8x8_block0", "dec.8x8_in0", "dec.16x16_block1"]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def inputs(device="cpu", batch=2):
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(batch, 3, 16, 16, generator=g) * 10).to(device)
    return x, torch.full((batch,), 3.0), one_hot(torch.arange(batch) % 10, 10).to(device)


def test_taps_keep_block_outputs_without_running_hooks():
    """The fast path owns its taps (the U-Net's forward is the plain EDM forward since the trace API)."""
    net = tiny_net()
    x, sigma, labels = inputs()
    noise = (sigma.log() / 4).float()
    seen = []
    handle = net.model.enc["8x8_block0"].register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        plain = net.model(x, noise, labels)
        taps = ("enc.8x8_block0", "dec.16x16_block1")
        out, kept = FastBody(net.model, graphs=False)._body(x, noise, labels, taps=taps)
    finally:
        handle.remove()
    assert len(seen) == 1 and torch.equal(out, plain)
    assert list(kept) == ["enc.8x8_block0", "dec.16x16_block1"] and torch.equal(kept["enc.8x8_block0"], seen[0])
    assert net.model.block_names()[0] == "enc.16x16_conv" and len(net.model.block_names()) == len(
        list(net.model.enc) + list(net.model.dec))


def test_fast_body_replays_hooks_with_the_same_outputs():
    net = tiny_net()
    x, sigma, labels = inputs()
    with torch.no_grad(), capture(net, LAYERS) as eager:
        ref = net(x, sigma, labels)
    net.body = FastBody(net.model, graphs=False)
    with torch.no_grad(), capture(net, LAYERS) as fast:
        out = net(x, sigma, labels)
    assert torch.equal(out, ref) and net.body.counts["direct"] == 1 and net.body.counts["eager"] == 0
    for name in LAYERS:
        assert torch.equal(fast.tensor(name, 0), eager.tensor(name, 0))
        assert fast[name][0].sigma == eager[name][0].sigma == 3.0


def test_fast_body_falls_back_to_eager_when_it_cannot_honour_a_hook():
    net = tiny_net()
    body = net.body = FastBody(net.model, graphs=False)
    x, sigma, labels = inputs()
    inner = net.model.enc["8x8_block0"].conv0.register_forward_hook(lambda m, i, o: None)
    with torch.no_grad():
        net(x, sigma, labels)
    inner.remove()
    pre = net.model.dec["8x8_in0"].register_forward_pre_hook(lambda m, i: None)
    with torch.no_grad():
        net(x, sigma, labels)
    pre.remove()
    net(x, sigma, labels)                       # autograd on: eager
    assert body.counts == {"eager": 3}
    with torch.no_grad():
        net(x, sigma, labels)
    assert body.counts["direct"] == 1


def test_a_hook_that_replaces_the_output_is_refused():
    net = tiny_net()
    net.body = FastBody(net.model, graphs=False)
    x, sigma, labels = inputs()
    handle = net.model.enc["8x8_block0"].register_forward_hook(lambda m, i, o: o * 2)
    try:
        with torch.no_grad(), pytest.raises(RuntimeError, match="enc.8x8_block0 returned a new output"):
            net(x, sigma, labels)
    finally:
        handle.remove()


def test_samples_through_the_fast_body_are_identical_on_cpu():
    net = tiny_net()
    eager = EDMAdapter(net, device="cpu")
    ref = eager.sample(seeds=[3, 4], class_label=[1, 2], preset="deterministic", num_steps=4)
    net.body = FastBody(net.model, graphs=False)
    fast = eager.sample(seeds=[3, 4], class_label=[1, 2], preset="deterministic", num_steps=4)
    assert torch.equal(fast.denoised, ref.denoised) and net.body.counts["direct"] == 7


def test_heatmaps_reduced_in_the_body_match_those_reduced_after_it():
    """A trace whose layers all use a graph-safe reduction gets the maps from the body itself (one copy of a
    map, not of the activation); mixed with full layers, each keeps what it asked for; bit-identical on the CPU."""
    from visualizer.trace.reductions import IN_GRAPH, channel_l2

    net = tiny_net()
    eager = EDMAdapter(net, device="cpu")
    kw = dict(preset="fid", num_steps=3, steps="all")
    mixed = {LAYERS[0]: "l2", LAYERS[1]: None, LAYERS[2]: "mean_abs", LAYERS[3]: "pca_rgb"}
    runs = lambda: (eager.trace([3, 4], [1, 2], LAYERS, reduce="l2", **kw),  # noqa: E731
                    eager.trace([3, 4], [1, 2], LAYERS, reduce=mixed, **kw))
    ref = runs()
    body = net.body = FastBody(net.model, graphs=False)
    kept = []
    fn = body.fn
    body.fn = lambda *a, taps, **k: kept.append(dict(taps)) or fn(*a, taps=taps, **k)
    fast = runs()
    for a, b in zip(ref, fast, strict=True):
        assert a.activations.keys() == b.activations.keys()
        assert all(torch.equal(a[k], b[k]) for k in a.activations) and torch.equal(a.final, b.final)
    assert channel_l2 in IN_GRAPH and body.counts["eager"] == 0 and body.counts["direct"] == 10
    assert set(kept[0].values()) == {channel_l2}                      # every map made inside the body
    assert [kept[-1][n] is None for n in LAYERS] == [False, True, False, True]   # full where the reduction can't be


def test_compile_falls_back_to_eager_off_cuda():
    net = tiny_net()
    assert accelerate(net, torch.device("cpu"), "full") == "off" and net.body is None
    with pytest.warns(UserWarning, match="compile 'full' needs CUDA; edm-imagenet-64 runs eagerly on cpu"):
        adapter = EDMAdapter(tiny_net(), device="cpu", compile=True)
    assert adapter.compile == "off" and adapter.describe()["compile"] == "off"
    with pytest.raises(ValueError, match="compile 'fast' is not one of off, graphs, full"):
        EDMAdapter(tiny_net(), device="cpu", compile="fast")


# -- CUDA ------------------------------------------------------------------------------------------

def _pair(mode: str, precision: str):
    ref = EDMAdapter(tiny_net(), device="cuda", precision="fp32")
    fast = EDMAdapter(tiny_net(), device="cuda", precision=precision, compile=mode)
    return ref, fast


@cuda
@pytest.mark.parametrize("mode", ["graphs", "full"])
@pytest.mark.parametrize(("precision", "bound"), [("fp32", 1e-5), ("fp16", 1e-2), ("bf16", 3e-2)])
def test_fast_paths_match_float32_eager_on_cuda(mode, precision, bound):
    ref, fast = _pair(mode, precision)
    assert fast.compile == mode and fast.precision == precision
    x, sigma, labels = inputs("cuda", batch=1)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        a = ref.forward(x, 3.0, [4])
        for _ in range(3):      # warm-up + capture, then replays
            b = fast.forward(x, 3.0, [4])
        with capture(ref.net, LAYERS) as ce:
            ref.forward(x * 0.5, 7.0, [2])
        with capture(fast.net, LAYERS) as cf:
            fast.forward(x * 0.5, 7.0, [2])
    assert rel(b, a) < bound
    assert fast.net.body.counts["replay"] >= 4 and fast.net.body.counts["eager"] == 0
    for name in LAYERS:
        assert rel(cf.tensor(name, 0).float(), ce.tensor(name, 0).float()) < bound * 5


@cuda
@pytest.mark.parametrize("mode", ["graphs", "full"])
def test_fast_sampler_matches_eager_on_cuda(mode):
    ref, fast = _pair(mode, "fp32")
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        a = ref.sample(seeds=[5], class_label=3, preset="fid", num_steps=8)
        b = fast.sample(seeds=[5], class_label=3, preset="fid", num_steps=8)
        c = fast.sample(seeds=[5, 6, 7], class_label=3, preset="fid", num_steps=8)
    assert rel(b.denoised, a.denoised) < 1e-5 and rel(c.denoised[:1], a.denoised) < 1e-4
    assert fast.net.body.counts["capture"] == 2


@cuda
def test_graphs_are_bounded_and_large_batches_run_direct():
    net = tiny_net().cuda()
    body = net.body = FastBody(net.model, graphs=True, graph_max_batch=4, max_graphs=2)
    with torch.no_grad():
        for batch in (1, 2, 3, 1, 8):
            x, sigma, labels = inputs("cuda", batch)
            net(x, sigma, labels)
    assert len(body._graphs) == 2 and body.counts["capture"] == 4 and body.counts["direct"] == 1
    body.release()
    assert not body._graphs


def test_command_line_choices_match_the_model_code():
    from visualizer import cli_args
    from visualizer.models.acceleration import COMPILE_MODES
    from visualizer.models.networks import PRECISIONS

    assert cli_args.COMPILE_MODES == COMPILE_MODES and tuple(PRECISIONS) == cli_args.PRECISIONS


def test_warm_up_is_a_no_op_when_eager():
    assert EDMAdapter(tiny_net(), device="cpu").warm_up() == 0.0
    net = tiny_net()
    net.body = FastBody(net.model, graphs=False)
    net.body.warm_up(2)
    assert net.body.counts == {}


@cuda
def test_warm_up_captures_the_graph_a_click_replays():
    """Warm-up captures the graph that keeps every block's output and, given a reduction, the one that keeps
    that reduction of every block (what a capture with reduce='l2' replays): the clicks capture nothing."""
    from visualizer.trace.reductions import channel_l2

    adapter = EDMAdapter(tiny_net(), device="cuda", precision="bf16", compile="graphs")
    assert adapter.warm_up(reduce=channel_l2) > 0 and adapter.net.body.counts["capture"] == 2
    x, _, _ = inputs("cuda", batch=1)
    with capture(adapter.net, LAYERS, reduce="l2"):
        adapter.forward(x, 3.0, [4])
    with capture(adapter.net, LAYERS):
        adapter.forward(x, 3.0, [4])
    assert adapter.net.body.counts["capture"] == 2 and adapter.net.body.counts["replay"] == 2


@cuda
def test_a_teacher_warmed_up_for_in_graph_heatmaps_captures_nothing_at_its_first_click():
    from visualizer.inspection import Inspector, ModelSlot, Request

    adapter = EDMAdapter(tiny_net(), device="cuda", precision="bf16", compile="graphs")
    inspector = Inspector([ModelSlot("t", adapter, {"preset": "fid", "num_steps": 4})])
    inspector.map_pools = {"encoder_bottleneck": "mean"}
    assert inspector.warm_up("t") > 0 and adapter.net.body.counts["capture"] == 2
    inspector.trajectory("t", Request.make(5, 3, LAYERS))
    inspector.trajectory("t", Request.make(6, 2, LAYERS[:2]))         # another choice of layers: the same graph
    assert adapter.net.body.counts["capture"] == 2 and adapter.net.body.counts["replay"] == 14


@cuda
@pytest.mark.parametrize("mode", ["graphs", "full"])
def test_teacher_click_through_the_fast_path_matches_eager_on_cuda(mode):
    from visualizer.inspection import Inspector, ModelSlot, Request

    ref, fast = _pair(mode, "fp32")
    req = Request.make(5, 3, LAYERS)
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        a = Inspector([ModelSlot("t", ref, {"preset": "fid", "num_steps": 4})]).trajectory("t", req)
        b = Inspector([ModelSlot("t", fast, {"preset": "fid", "num_steps": 4})]).trajectory("t", req)
    assert [s.sigma for s in b.steps] == [s.sigma for s in a.steps] and len(b.steps) == 4
    for sa, sb in zip(a.steps, b.steps, strict=True):
        for name in LAYERS:
            assert rel(torch.from_numpy(sb.maps[name]).float(), torch.from_numpy(sa.maps[name]).float()) < 1e-3
    assert abs(b.final.astype(int) - a.final.astype(int)).max() <= 1
    assert fast.net.body.counts["eager"] == 0 and fast.net.body.counts["replay"] == 7


def test_copies_and_pickles_of_a_net_run_eagerly():
    import copy
    import io

    net = tiny_net()
    net.body = FastBody(net.model, graphs=False)
    assert copy.deepcopy(net).body is None
    buffer = io.BytesIO()
    torch.save(net, buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=False).body is None


def test_compiled_bodies_may_keep_more_variants_than_dynamos_default():
    """Every FastBody shares dynamo's recompile budget (one code object); a GPU run exhausted the default 8,
    after which new graph variants (editable, reduced) ran uncompiled without a word."""
    import torch._dynamo.config as dynamo

    before = dynamo.recompile_limit
    try:
        dynamo.recompile_limit = 8
        FastBody(tiny_net().model, compile=True, graphs=False)
        assert dynamo.recompile_limit == RECOMPILE_LIMIT >= 32
    finally:
        dynamo.recompile_limit = before


@cuda
@pytest.mark.parametrize("mode", ["graphs", "full"])
def test_edits_on_the_fast_path_on_cuda(mode):
    """Edits are inputs of the captured graph: replacing a layer with its own value changes no bit (in 'full'
    mode, where the edited graph is compiled with other fusions, nothing beyond the fp32 fast path's bound), an edited
    run matches the edited eager run within the fast path's bounds, and an edited click replays one graph."""
    from visualizer.trace import Edit, SigmaRange

    ref, fast = _pair(mode, "fp32")
    kw = dict(preset="fid", num_steps=4, steps="all")
    layer = "enc.8x8_block0"
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        plain = fast.trace([5], 3, [layer], **kw)
        itself = Edit.replace(layer, {s: plain[(layer, s)] for s in plain.steps})
        same = fast.trace([5], 3, [layer], **kw, edits=[itself])
        edit = [Edit.zero(layer, channels=range(16), steps=SigmaRange(0, 1.0)), Edit.scale("dec.16x16_block1", 1.5)]
        eager = ref.trace([5], 3, [layer], **kw, edits=edit)
        before = dict(fast.net.body.counts)
        edited = fast.trace([5], 3, [layer], **kw, edits=edit)
        again = fast.trace([6], 3, [layer], **kw, edits=edit)
    if mode == "graphs":
        assert torch.equal(same.final, plain.final)
    assert rel(same.final, plain.final) < 1e-5, rel(same.final, plain.final)   # 'full' measured 2.1e-6 (H200)
    assert rel(edited.final, eager.final) < 1e-5, rel(edited.final, eager.final)
    assert rel(edited.layer(layer), eager.layer(layer)) < 1e-5, rel(edited.layer(layer), eager.layer(layer))
    counts = fast.net.body.counts
    assert counts["eager"] == 0 and counts["eager_edit"] == 0, counts
    assert counts["capture"] - before.get("capture", 0) <= 1, counts    # one editable graph for any set of edits
    assert counts["replay"] - before["replay"] == 14 and again.final.shape == edited.final.shape, counts


@cuda
@pytest.mark.parametrize("mode", ["graphs", "full"])
def test_edited_batches_larger_than_a_graph_replay_it_in_chunks_on_cuda(mode):
    """A 20-row edited batch (graphs hold 16) replays the editable graph twice, per-row values sliced with their
    rows (the patch sweep's case): the same result as eager, no uncompiled fallback."""
    from visualizer.trace import Edit

    ref, fast = _pair(mode, "fp32")
    layer, seeds = "enc.8x8_block0", list(range(20))
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        act = ref.trace(seeds[::-1], 3, [layer], forward_only=True, to_cpu=False)[(layer, 0)]
        edits = [Edit.replace(layer, act), Edit.zero("dec.16x16_block1", channels=range(8))]
        eager = ref.trace(seeds, 3, [layer], forward_only=True, edits=edits)
        before = fast.net.body.counts["replay"]
        got = fast.trace(seeds, 3, [layer], forward_only=True, edits=edits)
    assert rel(got.final, eager.final) < 1e-5, rel(got.final, eager.final)
    assert rel(got.layer(layer), eager.layer(layer)) < 1e-5
    assert torch.equal(got[(layer, 0)].float(), act.cpu().float())      # replaced rows land on their own rows
    counts = fast.net.body.counts
    assert counts["replay"] - before == 2 and counts["direct_edit"] == 0 and counts["eager"] == 0, counts
