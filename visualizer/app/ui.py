"""The look every feature shares: box and text styles, a row of radio buttons, the placeholder figure of an
empty view, and the checks of what users type that more than one feature reads (`parse_seed`, `parse_seeds`)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import plotly.graph_objects as go
from dash import dcc

from visualizer.errors import UserError

HIDDEN = {"display": "none"}
BOX = {"border": "1px solid #e2e2e2", "borderRadius": "6px", "padding": "10px", "margin": "0 0 10px 0",
       "background": "white"}
SMALL = {"fontSize": "12px", "color": "#555"}
ERROR = {"fontSize": "12px", "color": "#b00"}
MAX_SEED = 2**32 - 1     # seeds are drawn modulo 2^32 (visualizer.models.seeding): larger ones would repeat
MAX_ADDRESS = 16_384     # characters of the page's address hash (visualizer.app.urlstate reads, inputs bounds)


def radio(ident: str, labels: Mapping[str, str], value: str) -> dcc.RadioItems:
    """One row of radio buttons in the page's small type; `labels` maps each value to what the button says."""
    return dcc.RadioItems(id=ident, options=[{"label": v, "value": k} for k, v in labels.items()], value=value,
                          inline=True, inputStyle={"marginRight": "4px"},
                          labelStyle={"marginRight": "10px", "fontSize": "12px"})


def empty_figure(message: str, height: int = 240) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(height=height, xaxis=dict(visible=False), yaxis=dict(visible=False), plot_bgcolor="white",
                      margin=dict(l=10, r=10, t=10, b=10),
                      annotations=[dict(text=message, showarrow=False, font=dict(size=13, color="#666"))])
    return fig


def parse_seed(value) -> tuple[int | None, str]:
    """(seed, "") for a typed seed (a whole number in 0 .. 2^32 - 1, as a number or text), else (None, why)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, "type a seed"
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None, "a seed is a whole number"
    text = value.strip() if isinstance(value, str) else None
    if text is not None and re.fullmatch(r"[+-]?\d{1,30}", text):
        number: int | float = int(text)
    elif text is not None:
        try:
            number = float(text)
        except ValueError:
            return None, f"{text[:20]!r} is not a number"
    else:
        number = value
    if isinstance(number, float) and not math.isfinite(number):
        return None, "a seed is a whole number"
    if number < 0:
        return None, "seeds are not negative (0 .. 4294967295)"
    if number != int(number):
        return None, f"{number:g} is not a whole number"
    if int(number) > MAX_SEED:
        return None, f"seeds stop at {MAX_SEED} (they are drawn modulo 2^32)"
    return int(number), ""


def parse_seeds(text, limit: int) -> list[int]:
    """A seed list typed in the page: '0-7' or '1,5,9' -> seeds (each 0 .. 2^32 - 1), at most `limit`;
    no range longer than `limit` is ever expanded."""
    seeds: list[int] = []
    for part in str(text or "").replace(" ", "").split(","):
        if not part:
            continue
        m = re.fullmatch(r"(\d{1,10})(?:-(\d{1,10}))?", part)
        if not m:
            raise UserError(f"seeds: {part!r} is not a seed or a range like 0-199")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if b < a or b - a >= limit:
            raise UserError(f"seeds: {part!r} is not a range of at most {limit} seeds")
        seeds += range(a, b + 1)
    seeds = list(dict.fromkeys(seeds))
    if len(seeds) > limit:
        raise UserError(f"seeds: at most {limit}")
    if any(parse_seed(s)[0] is None for s in seeds):
        raise UserError("seeds: each in 0 .. 4294967295")
    return seeds
