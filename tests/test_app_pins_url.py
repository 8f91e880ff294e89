"""Pins, history, the address and the keyboard (visualizer.app.pins, .urlstate, .selection's pages; issue 19),
called without a browser on tiny real-format models: a pin holds seed, class, step and edits and shows each
model's image from the engine's cache; the address round-trips the view and refuses hostile values field by
field; keys walk the selection or the class and the slider; the gallery pages."""

import json
import urllib.parse

import pytest
from app_files import pair_models, write_pair, write_synthetic_embeddings
from dash import no_update
from dash.exceptions import PreventUpdate

from visualizer.app import panels, pins, scatter, selection, urlstate
from visualizer.app.config import AppConfig, load
from visualizer.app.context import build_context
from visualizer.app.ids import ID

STEPS = 3
LAYERS = ["encoder_bottleneck", "midblock"]
ZERO = {"model": "student", "layer": "midblock", "op": "zero", "channels": None, "region": None, "sigma": None,
        "factor": 1.0, "source": None}


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pins")
    pkl, student = write_pair(folder / "ckpt")
    models = pair_models(pkl, student)
    csv = write_synthetic_embeddings(folder / "run-a", 260, models=models)
    return load(AppConfig(embeddings=csv, device="cpu", num_steps=STEPS))


@pytest.fixture()
def ctx(state):
    return build_context(state)


def _first(ctx, seed=3, label=3, layers=LAYERS):
    clicked = scatter.choose(ctx, ID.generate, None, 1, seed, label)[0]
    return panels.first_look(ctx, clicked, layers, "l2", None)[0]


# -- pins and history ------------------------------------------------------------------------------------

def test_pin_the_same_seed_at_two_steps_and_with_an_edit_then_unpin_and_clear(ctx):
    first = _first(ctx)
    one, msg = pins.pin_list(ctx, ID.pin_add, 1, 0, 0, [], first, 1, [])
    assert msg == "" and one == [{"seed": 3, "class_label": 3, "layers": LAYERS, "reduction": "l2", "step": 1,
                                  "edits": []}]
    assert pins.pin_list(ctx, ID.pin_add, 2, 0, 0, one, first, 1, []) == (no_update, "already pinned")
    two, _ = pins.pin_list(ctx, ID.pin_add, 2, 0, 0, one, first, STEPS, [])          # the same seed, last step
    three, _ = pins.pin_list(ctx, ID.pin_add, 3, 0, 0, two, first, STEPS, [ZERO])     # ... and its edit
    assert [(p["step"], len(p["edits"])) for p in three] == [(1, 0), (STEPS, 0), (STEPS, 1)]
    assert pins.pin_list(ctx, ID.pin_remove, 3, 1, 0, three, first, STEPS, [])[0] == [three[0], three[2]]
    assert pins.pin_list(ctx, ID.pin_remove, 3, 1, 0, [], first, 1, []) == (no_update, "this sample is not pinned")
    assert pins.pin_list(ctx, ID.pin_clear, 3, 1, 1, three, first, 1, []) == ([], "")
    assert pins.pin_list(ctx, ID.pin_add, 1, 0, 0, [], None, 1, []) == (no_update, "click a sample first")
    full = [dict(one[0], seed=100 + s) for s in range(pins.MAX_PINS)]
    assert pins.pin_list(ctx, ID.pin_add, 9, 0, 0, full, first, 1, [])[1].startswith("at most 8 pins")


def test_the_strip_shows_each_models_image_and_outlines_the_current_sample(ctx):
    first = _first(ctx)
    a = pins.pin_list(ctx, ID.pin_add, 1, 0, 0, [], first, 1, [])[0]
    other = _first(ctx, seed=5, label=3)
    both = pins.pin_list(ctx, ID.pin_add, 2, 0, 0, a, other, 1, [ZERO])[0]
    options = pins.strip(ctx, both, first, [])
    assert [o["value"] for o in options] == [0, 1]
    cards = [o["label"] for o in options]
    assert "pin-current" in cards[0].className and "pin-current" not in cards[1].className
    figures = cards[0].children[0].children
    assert [f.children[1].children for f in figures] == ["teacher · first step", "student"]
    assert all(f.children[0].src.startswith("data:image/png;base64,") for f in figures)
    text = " ".join(line.children for line in cards[1].children[1:])
    assert "seed 5 · class 3" in text and f"{STEPS} steps" in text and "1 edit: student midblock: zero" in text
    # the edited pin's student image is the edited one, not the original
    assert figures[1].children[0].src != cards[1].children[0].children[1].children[0].src

    # once the teacher's run is cached, a pin at step k shows the teacher at step k
    panels.teacher_run(ctx, lambda *_: None, first)
    later = pins.pin_list(ctx, ID.pin_add, 3, 0, 0, [], first, STEPS, [])[0]
    card = pins.strip(ctx, later, first, [])[0]["label"]
    assert card.children[0].children[0].children[1].children == f"teacher · step {STEPS}/{STEPS}"


def test_picking_a_pin_or_a_history_entry_makes_it_current(ctx):
    first = _first(ctx)
    pinned = [pins.pin_of(first, 2, []), {**pins.pin_of(_first(ctx, 7, 7), 3, [ZERO])}]
    # the same sample as the panels: the slider moves at once, nothing is recomputed
    clicked, seed, label, edits, slider, pending, value = pins.choose_pin(ctx, 0, pinned, first, 1)
    assert (clicked, seed, label, edits, slider, pending, value) == (no_update, 3, 3, [], 2, no_update, None)
    # another sample: clicked, its edits, and its step waits for its run (url-step)
    clicked, seed, label, edits, slider, pending, value = pins.choose_pin(ctx, 1, pinned, first, 1)
    assert (clicked["seed"], clicked["class_label"], edits, slider) == (7, 7, [ZERO], no_update)
    assert pending == {"step": 3, "seed": 7, "class_label": 7}
    for bad in (None, 2, 7):
        with pytest.raises(PreventUpdate):
            pins.choose_pin(ctx, bad, pinned, first, 1)

    history, options = pins.remember(ctx, clicked, [])
    history, options = pins.remember(ctx, {"seed": 4, "class_label": 4, "model": "student", "row": 4}, history)
    history, options = pins.remember(ctx, {**clicked, "clicked_at": 1.0}, history)        # once each, newest first
    assert [(h["seed"], h["class_label"]) for h in history] == [(7, 7), (4, 4)]
    assert options[1] == {"label": "seed 4 · class 4 (class 4) · student point", "value": 1}
    picked = pins.pick_history(ctx, 1, history)
    assert picked[0]["row"] == 4 and picked[1:] == (4, 4, None)
    many = [{"seed": s, "class_label": 0} for s in range(pins.MAX_HISTORY)]
    assert len(pins.remember(ctx, {"seed": 999, "class_label": 0}, many)[0]) == pins.MAX_HISTORY


# -- the keyboard --------------------------------------------------------------------------------------

def test_keys_walk_the_class_of_the_clicked_point_or_the_selection_and_the_slider(ctx):
    frame = ctx.frame
    row = int(frame.index[(frame["model"] == "student") & (frame["class_label"] == 2)][0])
    clicked = {**frame.iloc[row][["seed", "class_label", "sample_id", "model"]].to_dict(), "row": row}
    nxt = pins.key_point(ctx, {"action": "next-point", "at": 1.0}, clicked, [])[0]
    same = frame[(frame["class_label"] == 2) & (frame["model"] == "student")].sort_values("seed")
    assert (nxt["row"], nxt["model"], nxt["class_label"]) == (int(same.index[1]), "student", 2)
    prev = pins.key_point(ctx, {"action": "prev-point", "at": 2.0}, clicked, [])[0]
    assert prev["row"] == int(same.index[-1])                      # wraps around
    # a typed seed (no row, no model) starts from its point of the first model; a selection goes in row order
    first_model = frame[(frame["class_label"] == 2) & (frame["model"] == ctx.model_order[0])].sort_values("seed")
    typed = {"seed": int(first_model["seed"].iloc[2]), "class_label": 2, "sample_id": None, "model": None}
    assert pins.key_point(ctx, {"action": "next-point", "at": 3.0}, typed, [])[0]["row"] == \
        int(first_model.index[3])
    walked = pins.key_point(ctx, {"action": "next-point", "at": 4.0}, {**clicked, "row": 40}, [9, 40, 41])[0]
    assert walked["row"] == 41
    for key in (None, {"action": "next-step", "at": 1.0}, "j"):
        with pytest.raises(PreventUpdate):
            pins.key_point(ctx, key, clicked, [])

    step = {"action": "next-step", "at": 1.0}
    assert pins.key_step(ctx, step, 2, 3, False) == 3
    assert pins.key_step(ctx, {"action": "prev-step", "at": 1.0}, 2, 3, False) == 1
    for value, top, disabled in ((3, 3, False), (1, 3, True)):
        with pytest.raises(PreventUpdate):
            pins.key_step(ctx, step, value, top, disabled)


# -- the gallery's pages ---------------------------------------------------------------------------------

def test_the_gallery_says_which_model_and_pages_beyond_its_first_120(ctx):
    rows = list(range(300))
    cards, at, pager, prev_off, next_off = selection.page(ctx, ID.selection, rows)
    assert (len(cards), at, pager, prev_off, next_off) == (120, 0, "1-120 of 300", True, False)
    assert cards[0].children[2].children == ctx.frame.iloc[0]["model"]
    cards, at, pager, prev_off, next_off = selection.page(ctx, ID.gallery_next, rows, 0, 1, 0)
    assert (at, pager, prev_off, next_off) == (1, "121-240 of 300", False, False)
    cards, at, pager, _, next_off = selection.page(ctx, ID.gallery_next, rows, 0, 2, 1)
    assert (len(cards), at, pager, next_off) == (60, 2, "241-300 of 300", True)
    assert selection.page(ctx, ID.gallery_next, rows, 0, 3, 2)[1] == 2           # no page beyond the last
    assert selection.page(ctx, ID.gallery_prev, rows, 1, 3, 2)[1] == 1
    assert selection.page(ctx, ID.selection, [1, 2], 1, 3, 2)[1:] == (0, "", True, True)   # a new selection
    assert selection.page(ctx, ID.selection, [])[0] == []
    assert selection.select(ctx, {"points": []})[2] == "Nothing selected."


# -- the address -----------------------------------------------------------------------------------------

def _view(ctx, first, step=2, pinned=(), edits=()):
    clicked = {"seed": first["seed"], "class_label": first["class_label"]}
    return urlstate.view_of(ctx, clicked, "channel", 5, step, list(pinned), list(edits),
                            {"layers": first["layers"], "map": "main"})


def test_the_address_round_trips_the_view(ctx):
    first = _first(ctx)
    pinned = [pins.pin_of(first, 1, []), pins.pin_of(first, STEPS, [ZERO])]
    view = _view(ctx, first, pinned=pinned, edits=[ZERO])
    text = urlstate.encode(view)
    assert text.startswith("run=run-a&map=main&seed=3&class=3&layers=encoder_bottleneck,midblock&reduction=channel:5&"
                           "step=2&")
    got, problems = urlstate.parse(ctx, "#" + text)
    assert problems == [] and got == view
    # and as the browser gives it back (its own escaping of the fragment)
    assert urlstate.parse(ctx, urllib.parse.quote(text, safe="=&,:[]{}%"))[0] == view


def test_apply_sets_what_the_address_says_and_leaves_the_rest(ctx):
    first = _first(ctx)
    pinned = [pins.pin_of(first, 1, [])]
    text = urlstate.encode(_view(ctx, {**first, "seed": 8, "class_label": 8}, step=STEPS, pinned=pinned,
                                 edits=[ZERO]))
    outputs, message = urlstate.apply(ctx, {"hash": text, "at": 1.0}, None, "l2", None, 1, [], [],
                                      {"layers": ["midblock"], "map": "main"})
    clicked, seed, label, reduction, arg, slider, new_pins, edits, pending, pending_arg, out, layers, map_ = outputs
    assert message is None
    assert (clicked["seed"], clicked["class_label"], seed, label) == (8, 8, 8, 8)
    assert (reduction, arg, pending_arg) == ("channel", no_update, 5)       # the argument after the reset
    assert (slider, pending) == (no_update, {"step": STEPS, "seed": 8, "class_label": 8})   # after its run
    assert layers == LAYERS and edits == [ZERO] and map_ is no_update      # the map named is the one shown
    assert new_pins == [{**pinned[0], "reduction": "channel:5"}]
    assert out == {"hash": text, "key": text.replace(f"&step={STEPS}", ""), "replace": True}

    # the same sample: only the step moves, at once; nothing else is written
    same = {"seed": 8, "class_label": 8, "sample_id": None, "model": None}
    outputs, _ = urlstate.apply(ctx, {"hash": text, "at": 2.0}, same, "channel", 5, 1, new_pins, [ZERO],
                                {"layers": LAYERS, "map": "main"})
    assert outputs[5] == STEPS and all(o is no_update for i, o in enumerate(outputs[:10]) if i != 5)

    # the step waits: restore_step sets it once the slider shows this sample's run
    auto = {"run": panels._run_key({"seed": 8, "class_label": 8, "layers": LAYERS, "reduction": "channel:5"}),
            "step": 1}
    assert urlstate.restore_step(ctx, auto, pending) == (STEPS, None)
    with pytest.raises(PreventUpdate):           # another sample's run ending first
        urlstate.restore_step(ctx, {**auto, "run": auto["run"].replace('"seed": 8', '"seed": 9')}, pending)
    assert urlstate.restore_arg(ctx, False, 5) == (5, None)


def test_to_url_pushes_a_new_view_replaces_a_new_step_and_waits_for_the_address(ctx):
    first = _first(ctx)
    clicked = {"seed": 3, "class_label": 3}
    args = (clicked, "l2", None, 1, [], [], {"layers": LAYERS})
    with pytest.raises(PreventUpdate):           # nothing is written before the address was read
        urlstate.to_url(ctx, *args, None)
    start = urlstate.to_url(ctx, *args, {"hash": "", "key": "", "replace": True})
    assert start["hash"] == "run=run-a&seed=3&class=3&layers=encoder_bottleneck,midblock&reduction=l2&step=1"
    assert start["replace"] is False
    with pytest.raises(PreventUpdate):           # the same view: nothing to write
        urlstate.to_url(ctx, *args, start)
    stepped = urlstate.to_url(ctx, clicked, "l2", None, 3, [], [], {"layers": LAYERS}, start)
    assert stepped["replace"] is True and stepped["hash"].endswith("&step=3")
    other = urlstate.to_url(ctx, {"seed": 4, "class_label": 4}, "l2", None, 3, [], [], {"layers": LAYERS}, stepped)
    assert other["replace"] is False
    # a step and argument still waiting from the address are what the address keeps meanwhile
    waiting = urlstate.to_url(ctx, clicked, "channel", 0, 1, [], [], {"layers": LAYERS}, start,
                              {"step": 3, "seed": 3, "class_label": 3}, 7)
    assert "reduction=channel:7&step=3" in waiting["hash"]
    assert first


HOSTILE = [
    ("run=..%2F..%2Fetc%2Fpasswd&seed=1&class=1", "run"), ("map=nope", "map"), ("map=..%2Fmaps%2Fx.npy", "map"),
    ("run=%2Fhome%2Fuser%2Fdata%2Fruns%2Fx", "run"),
    ("seed=-1&class=1", "seed"), ("seed=1e400&class=1", "seed"), ("seed=nan&class=1", "seed"),
    ("seed=4294967296&class=1", "seed"), ("seed=1.5&class=1", "seed"), ("seed=%00&class=1", "seed"),
    ("seed=1&class=99", "class"), ("seed=1&class=-3", "class"), ("seed=1&class=1.0", "class"),
    ("seed=1&class=" + "9" * 5000, "class"), ("seed=1", "class"), ("class=1", "seed"),
    ("seed=1&seed=2&class=1", "seed"),
    ("layers=", "layers"), ("layers=nope", "layers"), ("layers=" + ",".join(["midblock"] * 500), "layers"),
    ("layers=__class__", "layers"),
    ("reduction=eval", "reduction"), ("reduction=l2:3", "reduction"), ("reduction=channel:-1", "reduction"),
    ("reduction=topk:99999999999", "reduction"), ("reduction=channel:x", "reduction"),
    ("seed=1&class=1&step=0", "step"), ("seed=1&class=1&step=99", "step"), ("seed=1&class=1&step=inf", "step"),
    ("edits=" + "[" * 20000, "address"), ("edits=" + "[" * 5000, "edits"), ("edits={}", "edits"),
    ("edits=[1]", "edits"), ('edits=[{"model":"nobody","layer":"midblock","op":"zero"}]', "edits"),
    ('edits=[{"model":"student","layer":"midblock","op":"function"}]', "edits"),
    ('edits=[{"model":"student","layer":"midblock","op":"zero","x":1}]', "edits"),
    ("edits=" + json.dumps([{"model": "student", "layer": "midblock", "op": "zero"}] * 9), "edits"),
    ("pins=" + json.dumps([{"seed": 1, "class": 1}] * 9), "pins"), ('pins=[{"seed":"1","class":1}]', "pins"),
    ('pins=[{"seed":1,"class":1,"step":1e9}]', "pins"), ('pins=[{"seed":true,"class":1}]', "pins"),
    ('pins=[{"seed":1,"class":1,"edits":[{"op":"zero"}]}]', "pins"), ("pins=NaN", "pins"),
    ("token=abc", "'token'"), ("%ZZ=1", "'%ZZ'"), ("&".join(f"f{i}=1" for i in range(40)), "address"),
]


@pytest.mark.parametrize(("text", "field"), HOSTILE)
def test_hostile_addresses_are_refused_naming_the_field(ctx, text, field):
    got, problems = urlstate.parse(ctx, text)
    assert problems and any(p.startswith(field) for p in problems), problems
    assert "seed" not in got or "class" in got
    outputs, message = urlstate.apply(ctx, {"hash": text, "at": 1.0}, None, "l2", None, 1, [], [],
                                      {"layers": LAYERS})
    assert message.startswith("The page's address was not applied in full: ") and field in message


def test_an_address_for_another_run_applies_nothing_but_good_fields_beside_a_bad_one_apply(ctx):
    got, problems = urlstate.parse(ctx, "run=other&seed=1&class=1&layers=midblock")
    assert got == {} and problems[-1] == "nothing else was applied"
    got, problems = urlstate.parse(ctx, "seed=1&class=1&layers=nope&reduction=mean_abs")
    assert got == {"seed": 1, "class": 1, "reduction": ("mean_abs", None)} and len(problems) == 1
    assert urlstate.parse(ctx, "") == ({}, []) and urlstate.parse(ctx, None) == ({}, [])
    for bad in (None, {}, {"hash": 5}):
        with pytest.raises(PreventUpdate):
            urlstate.apply(ctx, bad, None, "l2", None, 1, [], [], {"layers": LAYERS})
