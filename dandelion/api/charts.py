"""Small server-side SVG charts for the dashboard: no JavaScript chart library, no CDN.

Values that are ``None`` (withheld: fewer than k) leave gaps; a chart says so in its corner.
Everything written into the SVG is escaped.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from html import escape

__all__ = ["bar_chart", "line_chart", "nice_ticks"]

_W, _H = 560, 190
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 52, 14, 30, 30
_COLOURS = ("#2c6e49", "#d68c45", "#4c6085", "#9b2226", "#6a4c93", "#1d7874", "#b08836")


def _el(tag: str, text: str | None = None, **attrs: object) -> str:
    """One SVG element; attribute names use ``_`` for ``-`` (``text_anchor``), ``cls`` for
    ``class``; values and text are escaped."""
    parts = []
    for key, value in attrs.items():
        name = "class" if key == "cls" else key.replace("_", "-")
        shown = f"{value:.1f}" if isinstance(value, float) else str(value)
        parts.append(f'{name}="{escape(shown)}"')
    head = f"<{tag} {' '.join(parts)}"
    return f"{head}/>" if text is None else f"{head}>{escape(text)}</{tag}>"


def nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0, 1.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks, t = [], first
    while t <= high + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < high:
        ticks.append(round(t, 12))
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.0f}"
    return f"{v:.3g}"


def _frame(
    title: str, ticks: list[float], y: object, note: str, width: int = _W, height: int = _H
) -> list[str]:
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(title)}" class="chart">',
        f'<text x="{_PAD_L}" y="18" class="chart-title">{escape(title)}</text>',
    ]
    if note:
        out.append(_el("text", note, x=width - _PAD_R, y=18, text_anchor="end", cls="chart-note"))
    for t in ticks:
        yy = y(t)  # type: ignore[operator]
        out.append(_el("line", x1=_PAD_L, x2=width - _PAD_R, y1=yy, y2=yy, cls="grid"))
        out.append(_el("text", _fmt(t), x=_PAD_L - 6, y=yy + 4, text_anchor="end", cls="tick"))
    return out


def _clock(t: float) -> str:
    return time.strftime("%H:%M", time.gmtime(t))


def line_chart(
    title: str,
    x: Sequence[float],
    series: dict[str, Sequence[float | None]],
    *,
    times: bool = False,
    note: str = "",
    y_min: float | None = 0.0,
    width: int = _W,
    height: int = _H,
) -> str:
    """Lines over ``x`` (epoch seconds shown as UTC HH:MM with ``times``), one per series."""
    values = [v for vs in series.values() for v in vs if v is not None and math.isfinite(v)]
    low = min(values, default=0.0) if y_min is None else min(y_min, min(values, default=y_min))
    high = max(values, default=1.0)
    ticks = nice_ticks(low, high)
    lo, hi = ticks[0], ticks[-1]
    x0, x1 = (x[0], x[-1]) if len(x) > 1 else (0.0, 1.0)
    span = (x1 - x0) or 1.0

    def px(v: float) -> float:
        return _PAD_L + (v - x0) / span * (width - _PAD_L - _PAD_R)

    def py(v: float) -> float:
        return height - _PAD_B - (v - lo) / ((hi - lo) or 1.0) * (height - _PAD_T - _PAD_B)

    out = _frame(title, ticks, py, note, width, height)
    for i, (name, vs) in enumerate(series.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        runs: list[list[str]] = [[]]
        for xv, v in zip(x, vs, strict=True):
            if v is None or not math.isfinite(v):
                if runs[-1]:
                    runs.append([])
                continue
            runs[-1].append(f"{px(xv):.1f},{py(v):.1f}")
        for run in runs:
            if len(run) == 1:
                cx, cy = run[0].split(",")
                out.append(f'<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>')
            elif run:
                points = " ".join(run)
                out.append(
                    _el("polyline", points=points, fill="none", stroke=colour, stroke_width=2)
                )
        lx = _PAD_L + 8 + i * 110
        out.append(f'<rect x="{lx}" y="{height - 14}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{lx + 14}" y="{height - 5}" class="legend">{escape(name)}</text>')
    if len(x) > 1:
        for xv in (x[0], x[len(x) // 2], x[-1]):
            label = _clock(xv) if times else _fmt(xv)
            y = height - _PAD_B + 14
            out.append(_el("text", label, x=px(xv), y=y, text_anchor="middle", cls="tick"))
    out.append("</svg>")
    return "".join(out)


def bar_chart(
    title: str,
    labels: Sequence[str],
    values: Sequence[float | None],
    *,
    target: Sequence[float | None] | None = None,
    note: str = "",
) -> str:
    """Bars (``None``: a hatched stub, withheld) with an optional target tick per bar."""
    finite = [v for v in [*values, *(target or [])] if v is not None and math.isfinite(v)]
    ticks = nice_ticks(0.0, max(finite, default=1.0))
    hi = ticks[-1] or 1.0
    n = max(len(values), 1)
    slot = (_W - _PAD_L - _PAD_R) / n

    def py(v: float) -> float:
        return _H - _PAD_B - v / hi * (_H - _PAD_T - _PAD_B)

    out = _frame(title, ticks, py, note)
    out.append(
        '<defs><pattern id="withheld" width="4" height="4" patternUnits="userSpaceOnUse">'
        '<path d="M0,4 l4,-4" stroke="#999" stroke-width="1"/></pattern></defs>'
    )
    for i, v in enumerate(values):
        x = _PAD_L + i * slot + slot * 0.15
        w = max(slot * 0.7, 1.0)
        if v is None:
            top = py(hi * 0.06)
            bar = _el("rect", x=x, y=top, width=w, height=py(0) - top, fill="url(#withheld)")
            out.append(bar.replace("/>", "><title>withheld</title></rect>"))
        else:
            bar = _el("rect", x=x, y=py(v), width=w, height=py(0) - py(v), fill=_COLOURS[0])
            out.append(bar.replace("/>", f"><title>{_fmt(v)}</title></rect>"))
        goal = target[i] if target is not None and i < len(target) else None
        if goal is not None:
            yy = py(goal)
            out.append(_el("line", x1=x - 1, x2=x + w + 1, y1=yy, y2=yy, cls="target"))
    step = max(1, n // 8)
    for i in range(0, len(labels), step):
        x = _PAD_L + i * slot + slot / 2
        y = _H - _PAD_B + 14
        out.append(_el("text", labels[i], x=x, y=y, text_anchor="middle", cls="tick"))
    out.append("</svg>")
    return "".join(out)
