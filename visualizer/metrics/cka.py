"""Linear CKA over many samples, debiased, layer against layer: the matrix, its intervals and its null.

X [n, p] and Y [n, q] hold the same n samples (rows) seen by two layers (columns: the pooled or
flattened activations). With K = X X^T and L = Y Y^T, their diagonals set to 0 (K~, L~), the
unbiased HSIC of Song et al. (2012) is

    HSIC_1(K, L) = [tr(K~ L~) + (1'K~1)(1'L~1) / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))

and debiased CKA = HSIC_1(K, L) / sqrt(HSIC_1(K, K) HSIC_1(L, L)) (Kornblith et al. 2019; arXiv
2405.01012). Independent data scores about 0 (slightly negative at times); a matrix against an
orthogonally rotated, rescaled copy of itself scores 1. The biased form (`biased_cka`) is inflated
when features outnumber samples; it is here only to show that.

Uncertainty (`Resampling`): the samples are dealt at random into G blocks (default 100), and each
resample keeps a random half of the blocks: subsampling without replacement, so no sample is ever
paired with a copy of itself (a plain bootstrap would repeat rows, and the U-statistic would read a
row and its copy as two samples). Every resample is the exact debiased CKA of its half; since
Var(half - full) ~ Var(full) for these statistics, the interval is the full estimate plus the
quantiles of (half - full), scaled by sqrt(m / (n - m)) for a half of m samples (1 for an exact
half). Blocks make this cheap: each pair of layers needs only its G x G block sums of K~ o L~, one
batched matrix product over all layer pairs, instead of one n x n product per resample.

Null: the student's rows are shifted cyclically against the teacher's in the random sample order
(pairs of different samples, every shift s = 1..n-1 a derangement), at the full n; it centres on 0
and its spread is what shuffled pairs score. All n - 1 shifts cost about one: the shifted trace
terms are circular cross-correlations, computed with FFTs along the diagonals of the Gram matrices.
Every matrix carries the interval and the null beside its estimate.

Cost: one Gram matrix per layer (n^2 p), the block sums (n^2 per layer pair, as one bmm), then per
resample O(G^2) per pair and O(n) per layer, and for the null n^2 log n per layer plus n^2 per
layer pair. Gram matrices are float32 unless `dtype` says otherwise (scores then
agree with float64 to about 1e-5); every sum built from them is float64.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from visualizer.errors import UserError

MIN_SAMPLES = 8            # a half must keep >= 4 samples, the least HSIC_1 is defined for
Features = torch.Tensor | np.ndarray


# -- the estimators, written out (reference and small cases) ------------------------------------------

def _centred(x: Features, dtype=torch.float64) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).to(dtype)
    x = x.reshape(x.shape[0], -1)
    return x - x.mean(0, keepdim=True)


def hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Song et al.'s unbiased HSIC of two n x n Gram matrices (their diagonals are ignored), n >= 4."""
    n = k.shape[0]
    if n < 4:
        raise UserError(f"unbiased HSIC needs at least 4 samples, got {n}")
    k, l = k.double().clone(), l.double().clone()
    k.fill_diagonal_(0)
    l.fill_diagonal_(0)
    one = torch.ones(n, dtype=torch.float64, device=k.device)
    return ((k * l).sum() + k.sum() * l.sum() / ((n - 1) * (n - 2)) - 2 / (n - 2) * (one @ k @ l @ one)) / (n * (n - 3))


def debiased_cka(x: Features, y: Features) -> float:
    """Debiased linear CKA of two [n, features] matrices (same n samples as rows), in float64."""
    x, y = _centred(x), _centred(y)
    k, l = x @ x.T, y @ y.T
    return float(hsic_unbiased(k, l) / torch.sqrt(hsic_unbiased(k, k) * hsic_unbiased(l, l)))


def biased_cka(x: Features, y: Features) -> float:
    """Kornblith et al.'s biased linear CKA ||Y'X||_F^2 / (||X'X||_F ||Y'Y||_F): inflated for few samples."""
    x, y = _centred(x), _centred(y)
    return float(torch.linalg.norm(y.T @ x) ** 2 / (torch.linalg.norm(x.T @ x) * torch.linalg.norm(y.T @ y)))


# -- resampling and null ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Resampling:
    """Which samples each resample keeps and how the null shuffles them; drawn once, shared by every cell.

    The samples are dealt at random into G blocks of at most `width` samples: block a holds
    order[starts[a]:starts[a] + sizes[a]]. `keep[b]` marks the blocks resample b keeps (half of
    them). Null draw j pairs the k-th sample of `order` in the first set with the (k + shifts[j])-th
    (mod n) in the second: a derangement of the randomly ordered samples, so every pair is two
    different samples.
    """

    n: int
    order: np.ndarray          # int64 [n]
    sizes: np.ndarray          # int64 [G]
    keep: np.ndarray           # bool [B, G]
    shifts: np.ndarray         # int64 [P], distinct, in 1..n-1
    seed: int

    @classmethod
    def draw(cls, n: int, resamples: int = 200, null: int = 1000, blocks: int = 100, seed: int = 0) -> Resampling:
        if n < MIN_SAMPLES:
            raise UserError(f"CKA over samples needs at least {MIN_SAMPLES} samples, got {n}")
        if resamples < 0 or null < 0 or blocks < 2:
            raise UserError(f"resamples and null must be >= 0 and blocks >= 2, got {resamples}, {null}, {blocks}")
        g = torch.Generator().manual_seed(int(seed))
        groups = min(int(blocks), n // 2)
        sizes = np.array([len(a) for a in np.array_split(np.arange(n), groups)], dtype=np.int64)
        order = torch.randperm(n, generator=g).numpy().astype(np.int64)
        keep = np.zeros((resamples, groups), dtype=bool)
        for b in range(resamples):
            keep[b, torch.randperm(groups, generator=g)[: groups // 2].numpy()] = True
        shifts = np.sort(1 + torch.randperm(n - 1, generator=g)[:null].numpy()).astype(np.int64)
        return cls(n, order, sizes, keep, shifts, int(seed))

    @property
    def blocks(self) -> int:
        return len(self.sizes)

    @property
    def width(self) -> int:
        return int(self.sizes.max())

    def positions(self) -> np.ndarray:
        """Where each sample of `order` sits in the padded layout (G blocks of `width` rows, unused rows 0)."""
        return np.concatenate([a * self.width + np.arange(size) for a, size in enumerate(self.sizes)])

    def subset(self, b: int) -> np.ndarray:
        """The samples (indices into the original rows) resample b keeps."""
        starts = np.concatenate([[0], np.cumsum(self.sizes)])
        return np.concatenate([self.order[starts[a]:starts[a + 1]] for a in np.flatnonzero(self.keep[b])])

    def describe(self) -> dict:
        return {"interval": "subsampling without replacement: each resample keeps a random half of "
                            f"{self.blocks} random blocks of samples; interval = estimate + quantiles of "
                            "(half - full) * sqrt(m / (n - m))",
                "resamples": int(self.keep.shape[0]), "blocks": self.blocks,
                "null": "shuffled pairs at the full n: the randomly ordered rows of the second set shifted "
                        "cyclically against the first's, so no sample meets itself",
                "null_draws": int(len(self.shifts)), "seed": self.seed}


# -- the matrix ------------------------------------------------------------------------------------

@dataclass
class CKAMatrix:
    """Debiased CKA of every row set against every column set over the same n samples.

    Arrays are [rows, cols] (float64; NaN where a layer is constant over the samples); `resampled`
    [B, rows, cols] and `null` [P, rows, cols] (float32) hold the draws behind the interval and the null.
    """

    rows: list[str]
    cols: list[str]
    n: int
    estimate: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    se: np.ndarray                         # standard error from the resamples (scaled like the interval)
    null_mean: np.ndarray
    null_lo: np.ndarray
    null_hi: np.ndarray
    p_null: np.ndarray                     # (1 + null draws >= estimate) / (1 + draws)
    resampled: np.ndarray
    null: np.ndarray
    confidence: float
    method: dict
    per_class: dict[int, CKAMatrix] = field(default_factory=dict)
    context: dict = field(default_factory=dict)   # where the rows came from, which models and steps

    def cell(self, row: str | int, col: str | int) -> dict:
        i = self.rows.index(row) if isinstance(row, str) else row
        j = self.cols.index(col) if isinstance(col, str) else col
        return {"row": self.rows[i], "col": self.cols[j], "cka": _num(self.estimate[i, j]),
                "lo": _num(self.lo[i, j]), "hi": _num(self.hi[i, j]), "se": _num(self.se[i, j]),
                "null_mean": _num(self.null_mean[i, j]), "null_lo": _num(self.null_lo[i, j]),
                "null_hi": _num(self.null_hi[i, j]), "p_null": _num(self.p_null[i, j]), "n": self.n}

    def diagonal(self) -> list[dict]:
        """The matched cells (a row and a column of the same name), in row order: the chart beside the heatmap."""
        return [self.cell(name, name) for name in self.rows if name in self.cols]

    def cells(self) -> list[dict]:
        return [self.cell(i, j) for i in range(len(self.rows)) for j in range(len(self.cols))]

    def to_dict(self) -> dict:
        table = {k: _nums(getattr(self, k)) for k in ("estimate", "lo", "hi", "se", "null_mean", "null_lo",
                                                        "null_hi", "p_null")}
        out = {**self.context, "rows": self.rows, "cols": self.cols, "n": self.n, "confidence": self.confidence,
               "method": self.method, **table, "diagonal": self.diagonal()}
        if self.per_class:
            out["per_class"] = {str(c): m.to_dict() for c, m in self.per_class.items()}
        return out


def _num(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _nums(a: np.ndarray) -> list:
    return [[_num(v) for v in row] for row in np.asarray(a)]


def default_dtype(device: torch.device) -> torch.dtype:
    """float32 Gram matrices (TF32 off on CUDA); every sum built from them is float64."""
    return torch.float32


def gram_stack(features: Sequence[Features], rs: Resampling, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[L, N, N] Gram matrices of the centred features in the padded block layout (N = blocks x width):
    sample order[k] at row positions()[k], unused rows all 0; diagonals zeroed."""
    where = rs.positions()
    padded = len(where) != rs.blocks * rs.width
    size = rs.blocks * rs.width
    out = torch.empty((len(features), size, size), device=device, dtype=dtype)
    for i, x in enumerate(features):
        if x.shape[0] != rs.n:
            raise UserError(f"feature set {i} has {x.shape[0]} rows, expected {rs.n}")
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x.reshape(rs.n, -1)[rs.order]))
        else:
            x = x.reshape(rs.n, -1)[torch.as_tensor(rs.order, device=x.device)]
        x = x.to(device=device, dtype=dtype)
        x -= x.mean(0, keepdim=True)
        if padded:
            x_pad = torch.zeros((size, x.shape[1]), device=device, dtype=dtype)
            x_pad[torch.as_tensor(where, device=device)] = x
            x = x_pad
        torch.mm(x, x.T, out=out[i])
        out[i].fill_diagonal_(0)
    return out


class _Side:
    """One stack of Gram matrices [L, N, N] in the padded block layout, with its row and block sums (float64)."""

    def __init__(self, k: torch.Tensor, g: int, w: int):
        self.k, self.g, self.w = k, g, w
        layers, size = k.shape[0], k.shape[1]
        self.row = torch.empty((layers, size), dtype=torch.float64, device=k.device)           # [L, N]
        self.rows = torch.empty((layers, g, size), dtype=torch.float64, device=k.device)       # [L, G, N]
        self.squares = torch.empty((layers, g, g), dtype=torch.float64, device=k.device)       # [L, G, G]
        for i in range(layers):                      # one layer at a time: no float64 copy of the whole stack
            self.rows[i] = k[i].view(g, w, size).sum(1, dtype=torch.float64)
            self.row[i] = self.rows[i].sum(0)
            self.squares[i] = k[i].pow(2).view(g, w, g, w).sum((1, 3), dtype=torch.float64)
        self.blocks = self.rows.view(layers, g, g, w).sum(3)                                   # [L, G, G]


def block_sums(x: _Side, y: _Side, max_elements: int = 1 << 25) -> torch.Tensor:
    """T[r, c, a, b] = sum over i in block a, j in block b of Kx[r, i, j] Ky[c, i, j] (float64 [R, C, G, G]).

    One batched product per chunk of block rows: each block pair is a dot product of length width^2.
    """
    r_, c_, g, w = x.k.shape[0], y.k.shape[0], x.g, x.w
    t = torch.empty((r_, c_, g, g), dtype=torch.float64, device=x.k.device)
    step = max(1, max_elements // max(1, max(r_, c_) * w * g * w))
    for a0 in range(0, g, step):
        a1 = min(g, a0 + step)
        px, py = (k.view(k.shape[0], g, w, g, w)[:, a0:a1].permute(1, 3, 0, 2, 4).reshape((a1 - a0) * g, k.shape[0],
                                                                                            w * w) for k in (x.k, y.k))
        prod = torch.bmm(px, py.transpose(1, 2)).double()                                      # [blocks, R, C]
        t[:, :, a0:a1] = prod.view(a1 - a0, g, r_, c_).permute(2, 3, 0, 1)
    return t


def _hsic(tr, sum_k, sum_l, cross, m):
    return (tr + sum_k * sum_l / ((m - 1) * (m - 2)) - 2 * cross / (m - 2)) / (m * (m - 3))


def _ratio(num, den_x, den_y):
    den = den_x * den_y
    return torch.where(den > 0, num / torch.sqrt(den.clamp_min(1e-300)), torch.full_like(num, math.nan))


def _resampled(x: _Side, y: _Side, t: torch.Tensor, w: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Debiased CKA [B, R, C] of each resample: w [B, G] is 1 for the blocks kept, 0 for the others."""
    m = w @ sizes                                                                              # [B]
    v = w.repeat_interleave(x.w, dim=1)                                                        # [B, N] sample mask
    ux, uy = (w @ x.rows).transpose(0, 1), (w @ y.rows).transpose(0, 1)                        # [B, L, N] = K~ v
    cross = torch.bmm(ux * v[:, None], uy.transpose(1, 2))                                     # [B, R, C]
    cross_x, cross_y = (ux.pow(2) * v[:, None]).sum(-1), (uy.pow(2) * v[:, None]).sum(-1)     # [B, R], [B, C]
    sum_x = ((w @ x.blocks) * w).sum(-1).T                                                     # [B, R]
    sum_y = ((w @ y.blocks) * w).sum(-1).T
    ww = (w[:, :, None] * w[:, None, :]).reshape(w.shape[0], -1)                               # [B, G*G]
    tr = (ww @ t.reshape(t.shape[0] * t.shape[1], -1).T).view(w.shape[0], t.shape[0], t.shape[1])
    tr_x, tr_y = ww @ x.squares.reshape(x.squares.shape[0], -1).T, ww @ y.squares.reshape(y.squares.shape[0], -1).T
    hx = _hsic(tr_x, sum_x, sum_x, cross_x, m[:, None])
    hy = _hsic(tr_y, sum_y, sum_y, cross_y, m[:, None])
    num = _hsic(tr, sum_x[:, :, None], sum_y[:, None, :], cross, m[:, None, None])
    return _ratio(num, hx[:, :, None], hy[:, None, :])


def _null(x: _Side, y: _Side, rs: Resampling, sum_x, sum_y, hx, hy, max_elements: int = 1 << 27) -> torch.Tensor:
    """Debiased CKA [P, R, C] of shuffled pairs: the second set's rows shifted cyclically by each of rs.shifts.

    Only tr(K~ L~) and 1'K~L~1 change under a shift s; for every s at once they are circular
    cross-correlations. With d = j - i (mod n), tr_s = sum_ij Kx[i, j] Ky[i+s, j+s] =
    sum_d (a_d * b_d)[s], where a_d[i] = Kx[i, i+d] and b_d[i] = Ky[i, i+d]: one FFT per diagonal
    and one product per frequency, O(n^2 (R + C) log n + n^2 R C) for all n - 1 shifts, instead of
    one n x n product per layer pair and draw. Diagonals are taken in chunks that fit `max_elements`.
    """
    r_, c_, n, device = x.k.shape[0], y.k.shape[0], rs.n, x.k.device
    if not len(rs.shifts):
        return torch.zeros((0, r_, c_), dtype=torch.float64, device=device)
    where = torch.as_tensor(rs.positions(), device=device)               # sample k of `order` -> padded row
    freqs = n // 2 + 1
    spectrum = torch.zeros((freqs, r_, c_), dtype=torch.complex128, device=device)
    step = max(1, max_elements // (4 * n * (r_ + c_)))
    i = torch.arange(n, device=device)
    for d0 in range(0, n, step):
        d = torch.arange(d0, min(n, d0 + step), device=device)
        rows, cols = where[i][None, :], where[(i[None, :] + d[:, None]) % n]                # [1, n], [D, n]
        a, b = (torch.fft.rfft(k[:, rows, cols], dim=-1).permute(0, 2, 1) for k in (x.k, y.k))   # [L, n(f), D]
        spectrum += torch.bmm(a.conj().permute(1, 0, 2), b.permute(1, 2, 0)).to(torch.complex128)   # [f, R, C]
    tr = torch.fft.irfft(spectrum, n=n, dim=0)[torch.as_tensor(rs.shifts, device=device)]      # [P, R, C]
    fx = torch.fft.rfft(x.row[:, where], dim=-1)                                            # row sums, in order
    fy = torch.fft.rfft(y.row[:, where], dim=-1)
    cross = torch.fft.irfft(fx.conj()[:, None, :] * fy[None, :, :], n=n, dim=-1)            # [R, C, n(s)]
    cross = cross[:, :, torch.as_tensor(rs.shifts, device=device)].permute(2, 0, 1)
    return _ratio(_hsic(tr, sum_x[:, None], sum_y[None, :], cross, n), hx[:, None], hy[None, :])


def _cka_from_grams(kx: torch.Tensor, ky: torch.Tensor, rs: Resampling, room: int = 1 << 27,
                    chunk: int = 50) -> dict[str, torch.Tensor]:
    """Estimate [R, C], resamples [B, R, C] and null draws [P, R, C] from Gram stacks in the padded layout."""
    device, n, g, width = kx.device, rs.n, rs.blocks, rs.width
    x, y = _Side(kx, g, width), _Side(ky, g, width)
    t = block_sums(x, y)
    # The full sample: every block kept.
    sum_x, sum_y = x.blocks.sum((1, 2)), y.blocks.sum((1, 2))
    cross, cross_x, cross_y = x.row @ y.row.T, x.row.pow(2).sum(1), y.row.pow(2).sum(1)
    hx = _hsic(x.squares.sum((1, 2)), sum_x, sum_x, cross_x, n)
    hy = _hsic(y.squares.sum((1, 2)), sum_y, sum_y, cross_y, n)
    estimate = _ratio(_hsic(t.sum((2, 3)), sum_x[:, None], sum_y[None, :], cross, n), hx[:, None], hy[None, :])
    keep = torch.as_tensor(rs.keep, device=device, dtype=torch.float64)
    sizes = torch.as_tensor(rs.sizes, dtype=torch.float64, device=device)
    draws = [_resampled(x, y, t, keep[b:b + chunk], sizes) for b in range(0, len(keep), chunk)]
    resampled = torch.cat(draws) if draws else torch.zeros((0, *estimate.shape), dtype=torch.float64, device=device)
    null = _null(x, y, rs, sum_x, sum_y, hx, hy, max_elements=room)
    return {"estimate": estimate, "resampled": resampled, "null": null, "kept": keep @ sizes}


def _summarise(rows, cols, n, parts: dict, confidence: float, method: dict) -> CKAMatrix:
    est = parts["estimate"].cpu().numpy()
    res = parts["resampled"].cpu().numpy()
    null = parts["null"].cpu().numpy()
    m = parts["kept"].cpu().numpy()[:, None, None]
    alpha = (1 - confidence) / 2
    dev = (res - est[None]) * np.sqrt(m / np.maximum(n - m, 1))
    q = _quantiles(dev, (alpha, 1 - alpha))
    null_lo, null_hi = _quantiles(null, (alpha, 1 - alpha))
    if null.shape[0]:
        p_null = np.where(np.isfinite(est), (1 + np.sum(null >= est[None], axis=0)) / (1 + null.shape[0]), np.nan)
    else:
        p_null = np.full(est.shape, np.nan)
    return CKAMatrix(list(rows), list(cols), n, est, est + q[0], est + q[1], _reduce(dev, np.nanstd),
                     _reduce(null, np.nanmean), null_lo, null_hi, p_null, res.astype(np.float32),
                     null.astype(np.float32), confidence, method)


def _reduce(a: np.ndarray, fn) -> np.ndarray:
    """fn over the draws (axis 0); NaN where there are none. All-NaN cells are left out rather than warned about
    under `warnings.catch_warnings`, which swaps a process-wide filter list (not safe from the app's threads)."""
    if a.shape[0] == 0:
        return np.full(a.shape[1:], np.nan)
    none = np.isnan(a).all(axis=0)
    out = fn(np.where(none, a.dtype.type(0), a), axis=0)     # zeros where all-NaN: no warning
    out[none] = np.nan
    return out


def _quantiles(a: np.ndarray, qs) -> np.ndarray:
    if a.shape[0] == 0:
        return np.full((len(qs), *a.shape[1:]), np.nan)
    none = np.isnan(a).all(axis=0)
    out = np.nanquantile(np.where(none, a.dtype.type(0), a), qs, axis=0)
    out[:, none] = np.nan
    return out


def cka_matrix(
    xs: Mapping[str, Features],
    ys: Mapping[str, Features],
    *,
    resamples: int = 200,
    null: int = 1000,
    blocks: int = 100,
    seed: int = 0,
    confidence: float = 0.95,
    labels: Sequence[int] | np.ndarray | None = None,
    classes: Sequence[int] | str | None = None,
    resampling: Resampling | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    max_bytes: int | None = None,
) -> CKAMatrix:
    """Debiased linear CKA of every set in `xs` (rows) against every set in `ys` (columns).

    Each value is an [n, ...] array or tensor with one row per sample, in the same sample order in
    every set. `resamples` half-sample draws give the interval at `confidence`; `null` shuffled-pair
    draws give the null (at most n - 1, every cyclic shift; all cost what one costs); `blocks` is the
    number of blocks the halves are made of. `classes` ('all' or a list, with `labels` [n]) adds one
    matrix per class in `per_class`, over that class's samples with its own draws (seed + 1 + class).
    `max_bytes` bounds the Gram matrices held at once (default: 60% of the free memory on CUDA, 2 GiB
    elsewhere); the row sets are then taken in chunks.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    dtype = dtype or default_dtype(device)
    xs, ys = dict(xs), dict(ys)
    if not xs or not ys:
        raise UserError("cka_matrix needs at least one feature set on each side")
    n = _rows(xs, ys)
    rs = resampling or Resampling.draw(n, resamples, null, blocks, seed)
    if rs.n != n:
        raise UserError(f"the resampling was drawn for {rs.n} samples, the features have {n}")
    method = {"estimator": "debiased linear CKA (unbiased HSIC, Song et al. 2012), samples as rows",
              **rs.describe(), "confidence": confidence, "dtype": str(dtype).replace("torch.", ""),
              "device": device.type}
    out = _summarise(list(xs), list(ys), n, _run(list(xs.values()), list(ys.values()), rs, device, dtype, max_bytes),
                     confidence, method)
    if classes is None:
        return out
    if labels is None or len(labels) != n:
        raise UserError("per-class matrices need the class label of every sample (labels=)")
    labels = np.asarray(labels)
    for c in sorted(set(labels.tolist())) if classes == "all" else [int(c) for c in classes]:
        idx = np.flatnonzero(labels == c)
        if len(idx) < MIN_SAMPLES:
            continue
        sub = Resampling.draw(len(idx), rs.keep.shape[0], len(rs.shifts), blocks, seed + 1 + int(c))
        parts = _run([_take(v, idx) for v in xs.values()], [_take(v, idx) for v in ys.values()], sub, device, dtype,
                     max_bytes)
        out.per_class[int(c)] = _summarise(list(xs), list(ys), len(idx), parts, confidence,
                                           {**method, **sub.describe(), "class": int(c)})
    return out


def _take(x: Features, idx: np.ndarray) -> Features:
    return x[idx] if isinstance(x, np.ndarray) else x[torch.as_tensor(idx, device=x.device)]


def _rows(*sets: Mapping[str, Features]) -> int:
    counts = {name: int(v.shape[0]) for s in sets for name, v in s.items()}
    if len(set(counts.values())) != 1:
        raise UserError(f"every feature set needs the same samples (rows); got {counts}")
    return next(iter(counts.values()))


def _budget(device: torch.device, max_bytes: int | None) -> int:
    if max_bytes is not None:
        return int(max_bytes)
    if device.type == "cuda":      # free memory, counting what PyTorch's cache holds but does not use
        free = torch.cuda.mem_get_info(device)[0] + torch.cuda.memory_reserved(device) \
            - torch.cuda.memory_allocated(device)
        return int(free * 0.6)
    return 2 << 30


# TF32 is a process-wide switch: a run turns it off and puts back what it found. Two runs at once (the app's
# matrix and alignment jobs are threads) could interleave so that the later one puts back the earlier one's
# "off" for good, so runs take turns.
_TF32_SWITCH = threading.Lock()


def _run(xs: list, ys: list, rs: Resampling, device, dtype, max_bytes) -> dict[str, torch.Tensor]:
    """Gram matrices of every column set once; the row sets in chunks that fit the memory budget."""
    with _TF32_SWITCH:
        return _run_tf32_off(xs, ys, rs, device, dtype, max_bytes)


def _run_tf32_off(xs: list, ys: list, rs: Resampling, device, dtype, max_bytes) -> dict[str, torch.Tensor]:
    size = rs.blocks * rs.width
    itemsize = torch.tensor([], dtype=dtype).element_size()
    per_gram = size * size * itemsize
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        ky = gram_stack(ys, rs, device, dtype)
        budget = _budget(device, max_bytes)
        room = max(1, budget // per_gram - len(ys))          # row sets per chunk
        parts = []
        for start in range(0, len(xs), room):
            kx = gram_stack(xs[start:start + room], rs, device, dtype)
            # what is left of the budget holds the null's shuffled copies of column Grams (two per set)
            spare = max(budget - (len(ys) + kx.shape[0]) * per_gram, 2 * per_gram)
            parts.append(_cka_from_grams(kx, ky, rs, room=spare // (2 * itemsize)))
            del kx
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return {"estimate": torch.cat([p["estimate"] for p in parts], 0),
            "resampled": torch.cat([p["resampled"] for p in parts], 1),
            "null": torch.cat([p["null"] for p in parts], 1), "kept": parts[0]["kept"]}


# -- which teacher step each student layer resembles ------------------------------------------------

@dataclass
class SigmaAlignment:
    """For each student layer, debiased CKA against the teacher's same layer at every recorded step.

    Arrays are [layers, steps]; `ridge_step[i]` is the step where layer i peaks, and
    `ridge_lo`/`ridge_hi` the range of peak sigmas over the resamples (at `confidence`).
    """

    layers: list[str]
    steps: list[int]
    sigmas: list[float]
    n: int
    estimate: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    null_lo: np.ndarray
    null_hi: np.ndarray
    ridge_step: list[int | None]
    ridge_sigma: list[float | None]
    ridge_lo: list[float | None]          # sigma interval of the peak over resamples
    ridge_hi: list[float | None]
    ridge_share: list[float | None]       # share of resamples that peak at ridge_step
    confidence: float
    method: dict
    context: dict = field(default_factory=dict)

    def ridge(self) -> list[dict]:
        return [{"layer": name, "step": self.ridge_step[i], "sigma": self.ridge_sigma[i],
                 "sigma_lo": self.ridge_lo[i], "sigma_hi": self.ridge_hi[i], "share": self.ridge_share[i],
                 "cka": _num(self.estimate[i, self.steps.index(self.ridge_step[i])])
                 if self.ridge_step[i] is not None else None}
                for i, name in enumerate(self.layers)]

    def to_dict(self) -> dict:
        return {**self.context, "layers": self.layers, "steps": self.steps, "sigmas": self.sigmas, "n": self.n,
                "confidence": self.confidence, "method": self.method,
                **{k: _nums(getattr(self, k)) for k in ("estimate", "lo", "hi", "null_lo", "null_hi")},
                "ridge": self.ridge()}


def sigma_alignment(
    teacher: Mapping[tuple[str, int], Features],
    student: Mapping[str, Features],
    sigmas: Mapping[int, float],
    *,
    resamples: int = 200,
    null: int = 1000,
    blocks: int = 100,
    seed: int = 0,
    confidence: float = 0.95,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    max_bytes: int | None = None,
) -> SigmaAlignment:
    """Debiased CKA of each student layer (`student[layer]`, [n, ...]) against the teacher's same layer
    at every step (`teacher[(layer, step)]`), with one shared set of resamples, so the ridge (the
    step of the peak) has an interval too. `sigmas[step]` labels the steps."""
    layers = [name for name in student if any(key[0] == name for key in teacher)]
    if not layers:
        raise UserError("sigma alignment needs the same layers from the teacher (at its steps) and the student")
    steps = sorted({s for (name, s) in teacher if name in layers})
    n = _rows({f"{name} step {s}": v for (name, s), v in teacher.items()}, student)
    rs = Resampling.draw(n, resamples, null, blocks, seed)
    shape = (len(layers), len(steps))
    est, lo, hi, nlo, nhi = (np.full(shape, np.nan) for _ in range(5))
    draws = np.full((rs.keep.shape[0], *shape), np.nan)
    method = None
    for i, name in enumerate(layers):
        have = [s for s in steps if (name, s) in teacher]
        m = cka_matrix({str(s): teacher[(name, s)] for s in have}, {name: student[name]}, resampling=rs,
                       confidence=confidence, device=device, dtype=dtype, max_bytes=max_bytes)
        cols = [steps.index(s) for s in have]
        est[i, cols], lo[i, cols], hi[i, cols] = m.estimate[:, 0], m.lo[:, 0], m.hi[:, 0]
        nlo[i, cols], nhi[i, cols] = m.null_lo[:, 0], m.null_hi[:, 0]
        draws[:, i, cols] = m.resampled[:, :, 0]
        method = m.method
    sig = [float(sigmas[s]) for s in steps]
    ridge_step, ridge_sigma, ridge_lo, ridge_hi, share = [], [], [], [], []
    alpha = (1 - confidence) / 2
    for i in range(len(layers)):
        row = est[i]
        if not np.isfinite(row).any():
            ridge_step.append(None), ridge_sigma.append(None), ridge_lo.append(None), ridge_hi.append(None)
            share.append(None)
            continue
        k = int(np.nanargmax(row))
        ridge_step.append(steps[k])
        ridge_sigma.append(sig[k])
        finite = draws[:, i][np.isfinite(draws[:, i]).any(1)]
        if len(finite):
            peaks = np.array([sig[j] for j in np.nanargmax(finite, axis=1)])
            ridge_lo.append(float(np.quantile(peaks, alpha)))
            ridge_hi.append(float(np.quantile(peaks, 1 - alpha)))
            share.append(float(np.mean(peaks == sig[k])))
        else:
            ridge_lo.append(None), ridge_hi.append(None), share.append(None)
    return SigmaAlignment(layers, steps, sig, n, est, lo, hi, nlo, nhi, ridge_step, ridge_sigma, ridge_lo,
                          ridge_hi, share, confidence, method or {})
