"""The run's figure as a small hand-written SVG: accuracy, loss and participation per round.

Three panels side by side, one polyline per series, axes with a few ticks. No plotting library:
the coordinator's host need not carry matplotlib for a line chart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from .results import RoundRecord

__all__ = ["rounds_svg"]

_W, _H = 300, 220  # one panel
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 46, 12, 30, 34
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c")


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    step = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * step:
            step *= m
            break
    first = math.ceil(lo / step) * step
    out, v = [], first
    while v <= hi + 1e-12:
        out.append(round(v, 10))
        v += step
    return out


def _panel(
    x0: float, title: str, xs: Sequence[int], series: Sequence[tuple[str, Sequence[float | None]]]
) -> list[str]:
    values = [v for _, ys in series for v in ys if v is not None and math.isfinite(v)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    margin = (hi - lo) * 0.05
    lo, hi = lo - margin, hi + margin
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0, 1)
    x_hi = max(x_hi, x_lo + 1)
    pw, ph = _W - _PAD_L - _PAD_R, _H - _PAD_T - _PAD_B

    def px(x: float) -> float:
        return x0 + _PAD_L + (x - x_lo) / (x_hi - x_lo) * pw

    def py(y: float) -> float:
        return _PAD_T + (1 - (y - lo) / (hi - lo)) * ph

    out = [
        f'<text x="{x0 + _W / 2:.1f}" y="18" text-anchor="middle" font-size="13">'
        f"{escape(title)}</text>",
        f'<rect x="{x0 + _PAD_L}" y="{_PAD_T}" width="{pw}" height="{ph}" fill="none" '
        'stroke="#999"/>',
    ]
    for t in _ticks(lo, hi):
        out.append(
            f'<text x="{x0 + _PAD_L - 4}" y="{py(t) + 4:.1f}" text-anchor="end" '
            f'font-size="10">{t:g}</text>'
        )
        out.append(
            f'<line x1="{x0 + _PAD_L}" x2="{x0 + _PAD_L + pw}" y1="{py(t):.1f}" '
            f'y2="{py(t):.1f}" stroke="#eee"/>'
        )
    out.extend(
        f'<text x="{px(t):.1f}" y="{_PAD_T + ph + 14}" text-anchor="middle" '
        f'font-size="10">{int(t)}</text>'
        for t in _ticks(x_lo, x_hi)
        if float(t).is_integer()
    )
    out.append(
        f'<text x="{x0 + _PAD_L + pw / 2:.1f}" y="{_H - 4}" text-anchor="middle" '
        'font-size="11">round</text>'
    )
    for k, (name, ys) in enumerate(series):
        colour = _COLOURS[k % len(_COLOURS)]
        pts = [
            f"{px(x):.1f},{py(y):.1f}"
            for x, y in zip(xs, ys, strict=True)
            if y is not None and math.isfinite(y)
        ]
        if pts:
            out.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="1.8" '
                f'points="{" ".join(pts)}"/>'
            )
        out.append(
            f'<text x="{x0 + _PAD_L + 6}" y="{_PAD_T + 14 + 13 * k}" font-size="10" '
            f'fill="{colour}">{escape(name)}</text>'
        )
    return out


def rounds_svg(records: Sequence[RoundRecord], *, title: str = "") -> str:
    """The SVG document for ``records`` (completed rounds numbered 1, 2, ... on the x axis)."""
    done = [r for r in records if r.status == "completed"]
    xs = list(range(1, len(done) + 1))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{3 * _W}" height="{_H + 24}" '
        f'viewBox="0 0 {3 * _W} {_H + 24}" font-family="sans-serif">',
        f'<rect width="{3 * _W}" height="{_H + 24}" fill="white"/>',
        '<g transform="translate(0,24)">',
    ]
    parts += _panel(0, "test accuracy", xs, [("held-out users", [r.accuracy for r in done])])
    parts += _panel(
        _W,
        "loss",
        xs,
        [
            ("held-out users", [r.loss for r in done]),
            ("workers (local)", [r.train_loss for r in done]),
        ],
    )
    parts += _panel(
        2 * _W,
        "participation",
        xs,
        [("reported / assigned", [r.participation for r in done])],
    )
    parts.append("</g>")
    if title:
        parts.append(
            f'<text x="{1.5 * _W:.0f}" y="16" text-anchor="middle" font-size="14" '
            f'font-weight="bold">{escape(title)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
