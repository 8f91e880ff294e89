"""Maps too large to send point by point: the density image, the point behind each cell, points in a box or lasso.

A million points cannot go to the browser as markers (the page needs seconds per 100k of them), so
above a limit the scatter shows an image of the points instead (`visualizer.app.overview`). This
module is that image's engine, without Dash:

- `render`: the points of one view aggregated by datashader (`Canvas.points`: each pixel's count and
  the highest colour code among its points, in one pass), then coloured here from a lookup table:
  a pixel takes the colour of its highest code (so picked classes, given the codes after the grey
  ones, lie on top, as their markers do) and an opacity that grows with the log of its count. For a
  numeric colouring (sigma) the pixel's mean value goes through a colour scale. Encoded as a PNG.
  datashader's own categorical shading (`tf.shade` of `count_cat`) blends every category's colour
  per pixel; with 95 colours it took 3.3 s for 1M points on the 2-core machine, the lookup 0.1 s.
- `cell_points`: the view cut into cells (a few pixels each); per cell, how many points it holds and
  which one lies nearest its centre. The page's invisible heatmap carries those rows, so hovering or
  clicking the overview names a real point of the table, resolved here on the server.
- `in_box` / `in_lasso`: the rows a box or lasso selection encloses, from its geometry (plotly's
  `range` / `lassoPoints`), since the overview has no markers to select. The lasso is exact (even-odd
  ray casting, as plotly's) and linear in the points: a grid of cells decides every point whose cell
  the outline does not cross, and only the points near the outline are tested one by one.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

MIN_ALPHA = 110         # the opacity of a pixel holding one point (of 255): single points stay visible
LASSO_GRID = 256        # cells per side of the rasterised lasso


@dataclass(frozen=True)
class View:
    """A rectangle of the map in data coordinates: x0 < x1, y0 < y1."""

    x0: float
    x1: float
    y0: float
    y1: float

    @classmethod
    def around(cls, x: np.ndarray, y: np.ndarray, pad: float = 0.02) -> View:
        """The points' bounding box, padded by `pad` of its size on each side (at least a tiny span)."""
        if not len(x):
            return cls(-1.0, 1.0, -1.0, 1.0)
        x0, x1, y0, y1 = float(np.min(x)), float(np.max(x)), float(np.min(y)), float(np.max(y))
        dx, dy = max(x1 - x0, 1e-9) * pad, max(y1 - y0, 1e-9) * pad
        return cls(x0 - dx, x1 + dx, y0 - dy, y1 + dy)

    def grown(self, by: float) -> View:
        """This view widened by `by` of its size on each side (points just outside stay drawn when panning)."""
        dx, dy = (self.x1 - self.x0) * by, (self.y1 - self.y0) * by
        return View(self.x0 - dx, self.x1 + dx, self.y0 - dy, self.y1 + dy)

    def holds(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x >= self.x0) & (x <= self.x1) & (y >= self.y0) & (y <= self.y1)


def _canvas(view: View, width: int, height: int):
    import datashader as ds

    return ds.Canvas(plot_width=int(width), plot_height=int(height), x_range=(float(view.x0), float(view.x1)),
                     y_range=(float(view.y0), float(view.y1)))


def _frame(x: np.ndarray, y: np.ndarray, **columns):
    import pandas as pd

    return pd.DataFrame({"x": np.asarray(x, np.float32), "y": np.asarray(y, np.float32), **columns}, copy=False)


def _alpha(count: np.ndarray) -> np.ndarray:
    """uint8 opacity per pixel: 0 where empty, MIN_ALPHA for one point, 255 for the densest pixel (log scale)."""
    top = float(count.max()) if count.size else 0.0
    alpha = np.zeros(count.shape, np.uint8)
    held = count > 0
    if top > 0:
        scale = np.log1p(count[held].astype(np.float32)) / np.float32(np.log1p(top))
        alpha[held] = (MIN_ALPHA + (255 - MIN_ALPHA) * scale).astype(np.uint8)
    return alpha


def hex_rgb(colour: str) -> tuple[int, int, int]:
    """'#rrggbb', '#rgb', 'rgb(r, g, b)' or 'rgba(r, g, b, a)' as an (r, g, b) triple of 0-255."""
    c = colour.strip()
    if c.startswith("#"):
        h = c[1:]
        if len(h) == 3:
            h = "".join(ch * 2 for ch in h)
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    if c.startswith(("rgb(", "rgba(")):
        parts = [p.strip() for p in c[c.index("(") + 1:c.rindex(")")].split(",")]
        return tuple(int(round(float(p))) for p in parts[:3])
    raise ValueError(f"not a colour: {colour!r}")


def _aggregate(x: np.ndarray, y: np.ndarray, view: View, width: int, height: int, code: np.ndarray | None = None,
               value: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count, highest code, mean value) per pixel, [height, width] with row 0 at the view's bottom: datashader's
    `Canvas.points` with one summary of three reductions, whatever the colouring, so that numba compiles the
    aggregation once per process (about 10 s on the 2-core machine; `warm_up` does it at start-up)."""
    import datashader as ds

    n = len(x)
    code = np.zeros(n, np.float32) if code is None else np.asarray(code, np.float32)
    value = np.zeros(n, np.float32) if value is None else np.asarray(value, np.float32)
    agg = _canvas(view, width, height).points(_frame(x, y, code=code, value=value), "x", "y",
                                              ds.summary(n=ds.count(), top=ds.max("code"), mean=ds.mean("value")))
    return np.asarray(agg["n"].values), np.asarray(agg["top"].values), np.asarray(agg["mean"].values)


def render(x: np.ndarray, y: np.ndarray, codes: np.ndarray, colours: list[str], view: View,
           width: int, height: int) -> bytes:
    """PNG (RGBA, `width` x `height`, top row = the view's top) of the points coloured by `codes`
    (int, an index into `colours`; in a pixel the highest code shows)."""
    count, top, _ = _aggregate(x, y, view, width, height, code=codes)
    top = np.nan_to_num(top, nan=0).astype(np.int64)
    lut = np.array([hex_rgb(c) for c in colours] or [(0, 0, 0)], np.uint8)
    rgba = np.zeros((*count.shape, 4), np.uint8)
    rgba[..., :3] = lut[np.clip(top, 0, len(lut) - 1)]
    rgba[..., 3] = _alpha(count)
    return _png(rgba)


def render_values(x: np.ndarray, y: np.ndarray, values: np.ndarray, scale: list[str], low: float, high: float,
                  view: View, width: int, height: int) -> bytes:
    """PNG of the points coloured by the mean of `values` in each pixel, through the colour `scale`
    (a list of colours, evenly spaced from `low` to `high`)."""
    count, _, mean = _aggregate(x, y, view, width, height, value=values)
    mean = np.nan_to_num(mean, nan=low)
    stops = np.array([hex_rgb(c) for c in scale], np.float32)
    t = np.clip((mean - low) / max(high - low, 1e-12), 0, 1) * (len(stops) - 1)
    lo = np.floor(t).astype(int).clip(0, len(stops) - 2) if len(stops) > 1 else np.zeros(t.shape, int)
    frac = (t - lo)[..., None]
    rgb = stops[lo] * (1 - frac) + stops[np.minimum(lo + 1, len(stops) - 1)] * frac
    rgba = np.zeros((*count.shape, 4), np.uint8)
    rgba[..., :3] = rgb.round().astype(np.uint8)
    rgba[..., 3] = _alpha(count)
    return _png(rgba)


def _png(rgba: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba[::-1]), "RGBA").save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def cell_points(x: np.ndarray, y: np.ndarray, rows: np.ndarray, view: View, nx: int, ny: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """(counts int32 [ny, nx], row int64 [ny, nx]: the row nearest each cell's centre, -1 where the cell
    is empty) of the points inside `view`; row 0 of the grid is the view's bottom."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    rows = np.asarray(rows, np.int64)
    inside = view.holds(x, y)
    x, y, rows = x[inside], y[inside], rows[inside]
    fx = (x - view.x0) / max(view.x1 - view.x0, 1e-300) * nx
    fy = (y - view.y0) / max(view.y1 - view.y0, 1e-300) * ny
    ix = np.clip(fx.astype(np.int64), 0, nx - 1)
    iy = np.clip(fy.astype(np.int64), 0, ny - 1)
    cell = iy * nx + ix
    counts = np.bincount(cell, minlength=nx * ny).astype(np.int32)
    rep = np.full(nx * ny, -1, np.int64)
    if len(cell):
        # the nearest to each cell's centre: its least distance per cell, then a point at that distance
        d = np.hypot(fx - ix - 0.5, fy - iy - 0.5)
        least = np.full(nx * ny, np.inf)
        np.minimum.at(least, cell, d)
        at = d == least[cell]
        rep[cell[at]] = rows[at]
    return counts.reshape(ny, nx), rep.reshape(ny, nx)


def in_box(x: np.ndarray, y: np.ndarray, xr: tuple[float, float], yr: tuple[float, float]) -> np.ndarray:
    """Boolean mask of the points inside the box (edges included), whichever way its corners are given."""
    return (x >= min(xr)) & (x <= max(xr)) & (y >= min(yr)) & (y <= max(yr))


def _even_odd(x: np.ndarray, y: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Exact point-in-polygon (even-odd rule, as plotly's lasso), vectorised over the points."""
    inside = np.zeros(len(x), bool)
    j = len(px) - 1
    for i in range(len(px)):
        xi, yi, xj, yj = px[i], py[i], px[j], py[j]
        if yi != yj:
            crosses = (yi > y) != (yj > y)
            at = (xj - xi) * (y - yi) / (yj - yi) + xi
            inside ^= crosses & (x < at)
        j = i
    return inside


def in_lasso(x: np.ndarray, y: np.ndarray, px, py) -> np.ndarray:
    """Boolean mask of the points inside the lasso polygon (vertices px, py; closed implicitly; even-odd rule).

    The lasso's bounding box is cut into LASSO_GRID^2 cells. A cell its outline does not cross is wholly
    inside or outside, like its centre, which is tested exactly; the points of the cells the outline
    crosses (drawn with PIL, a few cells wide to spare rounding) are tested exactly one by one.
    """
    from PIL import Image, ImageDraw

    px = np.asarray(px, np.float64)
    py = np.asarray(py, np.float64)
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    out = np.zeros(len(x), bool)
    if len(px) < 3:
        return out
    cand = np.flatnonzero(in_box(x, y, (px.min(), px.max()), (py.min(), py.max())))
    if not len(cand):
        return out
    n = LASSO_GRID
    x0, y0 = px.min(), py.min()
    sx = max(px.max() - x0, 1e-300) / n
    sy = max(py.max() - y0, 1e-300) / n
    centres = (np.arange(n) + 0.5)
    gx, gy = np.meshgrid(x0 + centres * sx, y0 + centres * sy)
    fill = _even_odd(gx.ravel(), gy.ravel(), px, py).reshape(n, n)
    edge = Image.new("L", (n, n), 0)
    outline = list(zip(((px - x0) / sx).tolist(), ((py - y0) / sy).tolist(), strict=True))
    ImageDraw.Draw(edge).line([*outline, outline[0]], fill=1, width=5)
    cx = np.clip(((x[cand] - x0) / sx).astype(np.int64), 0, n - 1)
    cy = np.clip(((y[cand] - y0) / sy).astype(np.int64), 0, n - 1)
    result = fill[cy, cx]
    exact = np.flatnonzero(np.asarray(edge, bool)[cy, cx])
    if len(exact):
        result[exact] = _even_odd(x[cand][exact], y[cand][exact], px, py)
    out[cand] = result
    return out
