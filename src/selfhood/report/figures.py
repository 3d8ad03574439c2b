"""Plots and diagrams as inline SVG, so report.html needs no network and no files beside it.

Time series (latency of every op, availability per bucket, staleness) are
drawn with matplotlib, fault windows shaded and labelled as Jepsen draws
them. Transaction cycles (Elle) and stuck linearizations (Porcupine) are
small hand-built SVGs: every label passes through `escape`, so a key or a
value can never become markup.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any, Final

from selfhood.report.analysis import Cycle, FaultWindow, OpPoint, Stuck

COLOURS: Final = {"ok": "#2a9d4b", "fail": "#d62728", "info": "#ff9f1c"}
FAULT_COLOURS: Final = {"partition": "#9ecae1", "crash": "#fcbba1", "pause": "#dadaeb",
                        "skew": "#fdd0a2", "rebalance": "#c7e9c0"}
#: above this many points the scatter is rasterized inside the SVG (keeps the page small)
RASTER_OVER: Final = 4000


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["svg.fonttype"] = "none"
    matplotlib.rcParams["svg.hashsalt"] = "selfhood"  # byte-stable output
    return plt


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.2, top=0.88)
    fig.savefig(buf, format="svg", metadata={"Date": None})
    _plt().close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _shade(ax: Any, windows: Sequence[FaultWindow], end_s: float, labels: bool) -> None:
    for w in windows:
        colour = FAULT_COLOURS.get(w.f, "#e0e0e0")
        if w.end_s is None and w.f == "rebalance":
            ax.axvline(w.start_s, color="#41ab5d", lw=1.2, ls="--")
        else:
            ax.axvspan(w.start_s, w.end_s if w.end_s is not None else end_s, color=colour,
                       alpha=0.45, lw=0)
        if labels:
            ax.text(w.start_s, 1.0, " " + w.label, transform=ax.get_xaxis_transform(),
                    fontsize=7, va="top", ha="left", rotation=0, color="#333333", clip_on=True)


def latency_svg(points: Sequence[OpPoint], windows: Sequence[FaultWindow],
                end_s: float, title: str) -> str:
    """Every op's latency against its start time, coloured ok / fail / info."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 3.0))
    _shade(ax, windows, end_s, labels=True)
    raster = len(points) > RASTER_OVER
    for kind in ("ok", "info", "fail"):
        xs = [p.t_s for p in points if p.type == kind]
        ys = [max(p.latency_ms, 0.01) for p in points if p.type == kind]
        if xs:
            ax.scatter(xs, ys, s=5, c=COLOURS[kind], label=f"{kind} ({len(xs)})",
                       linewidths=0, rasterized=raster)
    ax.set_yscale("log")
    ax.minorticks_off()
    ax.set_xlim(0, max(end_s, 1e-3))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(title, fontsize=10, loc="left")
    if points:
        ax.legend(loc="upper right", fontsize=7, markerscale=2)
    return _svg(fig)


def availability_svg(buckets: Sequence[tuple[float, float, int]],
                     windows: Sequence[FaultWindow], end_s: float, title: str) -> str:
    """Share of ops that succeeded, per time bucket."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 2.2))
    _shade(ax, windows, end_s, labels=False)
    if buckets:
        width = buckets[1][0] - buckets[0][0] if len(buckets) > 1 else end_s / 40 or 0.1
        ax.step([b[0] for b in buckets] + [buckets[-1][0] + width],
                [b[1] for b in buckets] + [buckets[-1][1]], where="post", color="#1f77b4")
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlim(0, max(end_s, 1e-3))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("available")
    ax.set_title(title, fontsize=10, loc="left")
    return _svg(fig)


def staleness_svg(samples: Sequence[tuple[int, int, float]], windows: Sequence[FaultWindow],
                  end_s: float, title: str) -> str:
    """Per transcript read: acknowledged turns it missed (k)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 2.2))
    _shade(ax, windows, end_s, labels=False)
    xs = [t / 1e9 for t, _, _ in samples]
    ks = [k for _, k, _ in samples]
    if xs:
        ax.scatter(xs, ks, s=5, c=["#d62728" if k else "#7f7f7f" for k in ks], linewidths=0,
                   rasterized=len(xs) > RASTER_OVER)
    ax.set_xlim(0, max(end_s, 1e-3))
    ax.set_ylim(-0.5, max([1, *ks]) + 0.5)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("missed turns k")
    ax.set_title(title, fontsize=10, loc="left")
    return _svg(fig)


def bars_svg(groups: Sequence[str],
             series: Mapping[str, Sequence[tuple[float, float, float]]],
             ylabel: str, title: str) -> str:
    """Grouped bars with 95 % intervals: series name -> (mean, lo, hi) per group."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 2.8))
    n = max(1, len(series))
    width = 0.8 / n
    for i, (name, vals) in enumerate(series.items()):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        means = [v[0] for v in vals]
        err = [[max(0.0, v[0] - v[1]) for v in vals], [max(0.0, v[2] - v[0]) for v in vals]]
        ax.bar(xs, means, width, yerr=err, capsize=3, label=name)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10, loc="left")
    ax.legend(fontsize=7)
    return _svg(fig)


# --- hand-built diagrams ------------------------------------------------------------------


REL_COLOURS: Final = {"ww": "#1f77b4", "wr": "#2ca02c", "rw": "#d62728",
                      "process": "#7f7f7f", "realtime": "#9467bd"}


def cycle_svg(cycle: Cycle) -> str:
    """The cycle's transactions on a circle, edges labelled with their dependency."""
    nodes = [s["from"] for s in cycle.steps]
    n = len(nodes)
    r = 40 + 28 * n
    w, h = 2 * r + 320, 2 * r + 80
    cx, cy = w / 2, h / 2
    pos = {idx: (cx + r * math.cos(2 * math.pi * k / n - math.pi / 2),
                 cy + r * math.sin(2 * math.pi * k / n - math.pi / 2))
           for k, idx in enumerate(nodes)}
    out = [f'<svg class="cycle" xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" '
           f'height="{h:.0f}" viewBox="0 0 {w:.0f} {h:.0f}" role="img">',
           '<defs><marker id="arr" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
           'fill="#444"/></marker></defs>']
    for s in cycle.steps:
        (x1, y1), (x2, y2) = pos[s["from"]], pos[s["to"]]
        dx, dy = x2 - x1, y2 - y1
        d = math.hypot(dx, dy) or 1.0
        ux, uy = dx / d, dy / d
        sx, sy, ex, ey = x1 + ux * 26, y1 + uy * 26, x2 - ux * 26, y2 - uy * 26
        mx, my = (sx + ex) / 2 - uy * 18, (sy + ey) / 2 + ux * 18
        colour = REL_COLOURS.get(str(s["rel"]), "#444")
        out.append(f'<path d="M{sx:.1f},{sy:.1f} Q{mx:.1f},{my:.1f} {ex:.1f},{ey:.1f}" '
                   f'fill="none" stroke="{colour}" stroke-width="1.6" marker-end="url(#arr)">'
                   f'<title>{escape(str(s.get("why", "")))}</title></path>')
        out.append(f'<text x="{mx:.1f}" y="{my:.1f}" font-size="12" fill="{colour}" '
                   f'text-anchor="middle">{escape(str(s["rel"]))}</text>')
    for idx, (x, y) in pos.items():
        lab = cycle.labels[idx]
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="24" fill="#fff" stroke="#333"/>')
        out.append(f'<text x="{x:.1f}" y="{y + 4:.1f}" font-size="12" text-anchor="middle" '
                   f'font-weight="bold">T{idx}</text>')
        anchor = "start" if x >= cx else "end"
        tx = x + 30 if x >= cx else x - 30
        out.append(f'<text x="{tx:.1f}" y="{y + 4:.1f}" font-size="11" '
                   f'text-anchor="{anchor}">{escape(lab.text)}</text>')
    out.append("</svg>")
    return "".join(out)


def linearization_svg(stuck: Stuck) -> str:
    """Porcupine's picture: each op a bar from invoke to completion, one row per process;
    the longest partial linearization numbered in green, the ops that cannot go next in red."""
    procs = sorted({str(o["process"]) for o in stuck.ops})
    row = {p: k for k, p in enumerate(procs)}
    t0 = min((o["start_s"] for o in stuck.ops), default=0.0)
    t1 = max((o["end_s"] for o in stuck.ops), default=1.0)
    span = max(t1 - t0, 1e-6)
    left, width, rh = 90, 900, 26
    h = 30 + rh * len(procs) + 10

    def sx(t: float) -> float:
        return left + (t - t0) / span * width

    out = [f'<svg class="linearization" xmlns="http://www.w3.org/2000/svg" '
           f'width="{left + width + 20}" height="{h}" role="img">']
    for p, k in row.items():
        out.append(f'<text x="4" y="{30 + k * rh + 15}" font-size="11">process '
                   f'{escape(p)}</text>')
    for o in stuck.ops:
        y = 30 + row[str(o["process"])] * rh
        x1, x2 = sx(o["start_s"]), max(sx(o["end_s"]), sx(o["start_s"]) + 3)
        if o["pending"]:
            fill = "#f4a6a6"
        elif o["order"] is not None:
            fill = "#b7e4c7"
        else:
            fill = "#e5e5e5"
        label = ("" if o["order"] is None else f'{o["order"] + 1}: ') + str(o["desc"])
        out.append(f'<rect x="{x1:.1f}" y="{y}" width="{x2 - x1:.1f}" height="{rh - 6}" '
                   f'fill="{fill}" stroke="#555" stroke-width="0.5"><title>op {o["index"]}: '
                   f'{escape(label)}</title></rect>')
        if x2 - x1 > 40:
            out.append(f'<text x="{x1 + 2:.1f}" y="{y + 14}" font-size="9" '
                       f'clip-path="none">{escape(label[:int((x2 - x1) / 5)])}</text>')
    out.append(f'<text x="{left}" y="16" font-size="11">t = {t0:.3f} s … {t1:.3f} s; '
               f'green: linearized in order ({stuck.linearized} of {stuck.total}); red: cannot '
               f'be placed next</text>')
    out.append("</svg>")
    return "".join(out)
