"""The clicked point's nearest neighbours where the map was made, "generate from neighbours", and how far to
trust the map (issue 17).

Layout: one box with K (1 to `MAX_K`), the "generate from neighbours" button, the status line, the trust
figure and the gallery (one card per neighbour: thumbnail, seed, class, model, distance; the clicked
point itself first, at distance 0). The lookup is the engine's (`visualizer.inspection.neighbours`,
`AppContext.neighbours`: the run's PCA space loaded once): Euclidean distance in the run's PCA space of
its pooled activations, not on the 2-D map. Callbacks, each `fn(ctx, *inputs)`:

- `gallery(ctx, clicked, k)`: (gallery cards, the `neighbours` store, status, trust figure)
  for the point in the `clicked` store (a point typed with "generate" uses the map's row of that seed and
  class, if there is one);
- `open_neighbour(ctx, pick)`: a card clicked opens that row exactly as a click on the scatter does
  (`scatter.choose`); the page's click on a card (`PICK_JS`, one listener on the gallery) fills the
  `neighbour-pick` store with {row, at};
- `generate(ctx, n, store, model, layer, edits)`: appends to the page's edits a replacement of the edit
  form's model and layer by the mean over the neighbours (each re-traced at its own seed and class by
  that model, at full resolution; the clicked sample itself left out). The edit form's "values from"
  offers the same source ('neighbours', `visualizer.app.edits`).

The trust figure: the run's trustworthiness and mean neighbour agreement at this K with their 95%
bootstrap intervals and a random-map null (computed once per run and K, on at most 2,000 rows), then the
clicked point's own agreement (one sample: descriptive) and a one-line reading.
"""

from __future__ import annotations

import dash
from dash import Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from visualizer.app import scatter
from visualizer.app.context import AppContext, LayoutInfo, bind
from visualizer.app.edits import MAX_EDITS
from visualizer.app.ids import ID
from visualizer.app.panels import canonical_name
from visualizer.app.thumbs import thumb_url
from visualizer.app.ui import BOX, ERROR, SMALL
from visualizer.errors import UserError
from visualizer.inspection.edits import EditSpec
from visualizer.inspection.neighbours import DEFAULT_K, MAX_K, MapTrust, Neighbour, PointAgreement

CARD = {"width": "74px", "textAlign": "center", "fontSize": "10px", "color": "#333", "lineHeight": "1.25",
        "cursor": "pointer"}


# -- what the box shows ---------------------------------------------------------------------------------

def card(n: Neighbour, itself: bool) -> html.Div:
    """One neighbour: thumbnail, seed and class, model, distance in PCA space; its row in `data-row` (PICK_JS)."""
    where = "this point" if itself else f"d {n.distance:.3g}"
    return html.Div([
        html.Img(src=thumb_url(n.image_path), className="thumb",
                 style={"width": "64px", "height": "64px", "imageRendering": "pixelated", "display": "block",
                        "margin": "0 auto", "border": "2px solid #d62728" if itself else "1px solid #ddd"}),
        html.Div(f"seed {n.seed} · {n.class_label}"),
        html.Div(n.model + (f" step {n.step}" if n.step else "")),
        html.Div(where, style={"fontWeight": "600" if itself else "400"}),
    ], title=f"{n.class_name} · {n.model} · seed {n.seed}"
             + ("" if itself else f" · distance {n.distance:.4g} in the run's PCA space (click to open)"),
        className="neighbour-card", style=CARD, role="button", **{"data-row": str(n.row)})


def trust_lines(trust: MapTrust | None, point: PointAgreement | None, why: str | None = None) -> list:
    """The trust figure: the run's scores with interval and null, the point's own agreement, the reading."""
    if trust is None:
        return [html.Div(why or "", style=SMALL)] if why else []
    k = trust.k
    sampled = f"{trust.n:,} rows" + ("" if trust.n == trust.rows else f" sampled of {trust.rows:,}")
    lines = [
        html.Div([html.B("How far to trust the map: "),
                  f"trustworthiness {trust.trustworthiness:.3f} [{trust.low:.3f}, {trust.high:.3f}] at K = {k} "
                  f"(random map {trust.null:.2f}; 1 = every map neighbourhood holds only true neighbours); "
                  f"on average {trust.agreement:.0%} [{trust.agreement_low:.0%}, {trust.agreement_high:.0%}] of a "
                  f"point's {k} nearest on the map are among its {k} nearest in PCA space (random map "
                  f"{trust.agreement_null:.1%}). {sampled}, 95% bootstrap intervals over the points."],
                 style=SMALL, className="neighbour-trust-run"),
    ]
    if point is not None:
        lines.append(html.Div(f"This point: {point.shared} of its {point.k} nearest on the map are among its "
                              f"{point.k} nearest in PCA space (random map: {point.null * point.k:.2f} expected) — "
                              "one sample: descriptive.", style=SMALL, className="neighbour-trust-point"))
    lines.append(html.Div(f"Reading: {reading(trust)}", style={**SMALL, "color": "#1f4f8a"},
                          className="neighbour-trust-reading"))
    return lines


def reading(trust: MapTrust) -> str:
    """One line from both numbers: how far closeness on the map stands for closeness in PCA space."""
    k, a = trust.k, trust.agreement
    if trust.trustworthiness >= 0.9:
        head = "what is close on the map is close in PCA space too"
    elif trust.trustworthiness >= 0.75:
        head = "closeness on the map only roughly follows closeness in PCA space"
    else:
        head = "the map mixes neighbourhoods: do not read closeness off it"
    if a < 0.7:
        tail = (f", but only about {a:.0%} of a point's {k} nearest on the map are its true {k} nearest: take "
                "exact neighbours from this gallery")
    else:
        tail = f", and most ({a:.0%}) of a point's {k} nearest on the map are its true {k} nearest"
    return head + tail + "; distances between far-apart groups on the map mean little (UMAP does not keep them)."


# -- layout ---------------------------------------------------------------------------------------------

def layout(info: LayoutInfo) -> list:
    """The neighbours box (under the selection)."""
    if not info.num_points:
        return []
    return [html.Div([
        html.Div("Nearest neighbours of the clicked point, in the run's PCA space (where the map was made, not "
                 "the 2-D map)", style={**SMALL, "fontWeight": "600"}),
        html.Div([
            html.Span("K", style=SMALL),
            dcc.Input(id=ID.neighbour_k, type="number", value=DEFAULT_K, min=1, max=MAX_K, step=1,
                      style={"width": "60px"}),
            html.Button("generate from neighbours", id=ID.neighbour_generate, n_clicks=0,
                        disabled=not info.has_models,
                        title="adds an edit: the edit form's model and layer take the mean activation of these "
                              "neighbours (each re-traced at its own seed and class; this sample left out)"),
            html.Span(id=ID.neighbour_message, style=ERROR, role="status"),
        ], className="viz-toolbar", style={"marginTop": "6px"}),
        html.Div(id=ID.neighbour_status, style={**SMALL, "marginTop": "4px"},
                 children="Click a point of the map to list its nearest neighbours."),
        html.Div(id=ID.neighbour_trust, style={"marginTop": "4px"}),
        html.Div(id=ID.neighbour_gallery, className="neighbour-gallery",
                 style={"display": "flex", "flexWrap": "wrap", "gap": "4px", "marginTop": "6px",
                        "maxHeight": "380px", "overflowY": "auto"}),
        dcc.Store(id=ID.neighbour_pick, storage_type="memory"),
    ], style=BOX)]


# -- callbacks ------------------------------------------------------------------------------------------

def query_row(c: AppContext, clicked) -> int | None:
    """The map's row of the clicked point: its own row, else (a typed seed) a row of that seed and class."""
    if not clicked or c.frame is None:
        return None
    row = clicked.get("row")
    if c.valid_rows([row]):
        return int(row)
    f = c.frame
    match = f.index[(f["seed"] == clicked.get("seed")) & (f["class_label"] == clicked.get("class_label"))]
    if clicked.get("model") is not None and (f.loc[match, "model"] == clicked["model"]).any():
        match = match[f.loc[match, "model"] == clicked["model"]]
    return int(match[0]) if len(match) else None


def gallery(c: AppContext, clicked, k) -> tuple:
    """(gallery cards, neighbours store, status, trust figure) for the clicked point."""
    if c.neighbours is None or not clicked:
        return [], None, "Click a point of the map to list its nearest neighbours.", []
    row = query_row(c, clicked)
    if row is None:
        return ([], None, f"Seed {clicked.get('seed')}, class {clicked.get('class_label')} is not a point of "
                "this map: neighbours are listed for points of the run.", [])
    try:
        found = c.neighbours.neighbours(row, k)
        k = len(found) - 1
        trust = c.neighbours.trust(k)
        point = c.neighbours.point_agreement(row, k)
    except UserError as e:
        return [], None, html.Span(f"Neighbours: {e}", style={"color": "#b00"}), []
    me = found[0]
    dims = c.neighbours.space().features.shape[1]
    cards = [card(n, i == 0) for i, n in enumerate(found)]
    status = (f"Seed {me.seed} · {me.class_name} · {me.model}: itself and its {k} nearest of the run's "
              f"{len(c.frame):,} rows, by Euclidean distance in its PCA space ({dims} dimensions). Click one to "
              "open it.")
    return cards, {"query": me.row, "rows": [n.row for n in found[1:]]}, status, trust_lines(trust, point)


def open_neighbour(c: AppContext, pick) -> tuple:
    """(clicked store, seed picker, class picker): a neighbour's card opens it as a click on the scatter would."""
    row = (pick or {}).get("row")
    if c.row(row) is None:
        raise PreventUpdate
    return scatter.choose(c, ID.scatter, {"points": [{"customdata": row}]}, None, None, None)


# A click on a card (anywhere in it) puts its row in the pick store; one listener on the document, installed
# when the gallery first fills (cards come and go with every click, the listener stays).
PICK_JS = """
function(_cards) {
    if (!window.__vizNeighbourPick) {
        window.__vizNeighbourPick = true;
        document.addEventListener('click', function(e) {
            const card = e.target.closest && e.target.closest('#neighbour-gallery .neighbour-card');
            if (!card) { return; }
            window.dash_clientside.set_props('neighbour-pick', {data: {row: parseInt(card.dataset.row, 10),
                                                                       at: Date.now() / 1000}});
        });
    }
    return window.dash_clientside.no_update;
}
"""


def generate(c: AppContext, _n, store, model, layer, edits) -> tuple:
    """(edits store, message): one more edit, the edit form's model and layer replaced by the mean over the
    neighbours (each re-traced at its own seed and class by that model; the clicked sample left out)."""
    edits = list(edits or [])
    if not store or c.neighbours is None:
        return no_update, "click a point of the map first: its neighbours are what is averaged"
    if len(edits) >= MAX_EDITS:
        return no_update, f"at most {MAX_EDITS} edits at once: undo or clear some"
    if not model or model not in c.inspector.slots or not layer:
        return no_update, "pick a model and a layer in the edit box"
    try:
        layer = canonical_name(layer, c.inspector.aliases()) or layer
        source = c.neighbours.edit_source(store["query"], store["rows"])
        spec = EditSpec(model=model, layer=layer, op="replace", source=source)
    except UserError as e:
        return no_update, str(e)
    count = source.count(",") + 1
    return [*edits, spec.to_dict()], f"added: {model} {layer} from the mean over {count} neighbours"


def register(app: dash.Dash, c: AppContext) -> None:
    if c.frame is None:
        return
    app.callback(Output(ID.neighbour_gallery, "children"), Output(ID.neighbours, "data"),
                 Output(ID.neighbour_status, "children"),
                 Output(ID.neighbour_trust, "children"),
                 Input(ID.clicked, "data"), Input(ID.neighbour_k, "value"), prevent_initial_call=True)(bind(gallery, c))
    app.callback(Output(ID.clicked, "data", allow_duplicate=True), Output(ID.seed_input, "value", allow_duplicate=True),
                 Output(ID.class_input, "value", allow_duplicate=True),
                 Input(ID.neighbour_pick, "data"), prevent_initial_call=True)(bind(open_neighbour, c))
    app.clientside_callback(PICK_JS, Output(ID.neighbour_pick, "data", allow_duplicate=True),
                            Input(ID.neighbour_gallery, "children"), prevent_initial_call=True)
    if c.inspector.slots:
        app.callback(Output(ID.edits, "data", allow_duplicate=True), Output(ID.neighbour_message, "children"),
                     Input(ID.neighbour_generate, "n_clicks"), State(ID.neighbours, "data"),
                     State(ID.edit_model, "value"), State(ID.edit_layer, "value"), State(ID.edits, "data"),
                     prevent_initial_call=True)(bind(generate, c))
