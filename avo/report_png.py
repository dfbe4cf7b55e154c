"""The report's picture, lineage.png (avo.report writes it): every candidate in
evaluation order by its commit basis, the per-configuration figures by version,
and the parent tree with each version's basis figure.

The first panel plots what decided the commits: on a GPU the suite geomean (with
the cuDNN and FA2 lines timed beside each version); on the CPU lineage the modelled
H100 TFLOPS (avo/cost_basis.py), since interpreter timings are informational (the
second panel still shows them, labelled so).
"""
from __future__ import annotations

from typing import Callable

from avo.lineage import Version
from avo.report import _delta, _depths, baseline_geomeans
from avo.units import INTERPRETER_NOTE

STATUS_COLOURS = {"incorrect": "#e53935", "compile_error": "#fb8c00", "timeout": "#8e24aa",
                  "crashed": "#6d4c41", "rejected": "#212121"}


def _timeline(versions: list[Version], plotted: list[Version], attempts: list[dict],
              model_of: Callable[[Version | int], float | None] | None = None) -> list[dict]:
    """Every candidate comparable with the latest version, in evaluation order:
    {"x", "geomean", "status", "committed", "version"} (versions at the position
    of the attempt that committed them; a version with no attempt line goes
    where its number says). With `model_of` (a version, or an attempt's index ->
    its modelled TFLOPS), "geomean" holds the modelled figure instead: the CPU basis."""
    latest = plotted[-1].result
    key = ((latest.env.get("gpu") or latest.device), latest.suite, latest.interpreter)
    shown = {v.number for v in plotted}
    merged: dict[int, int] = {}
    for i, a in enumerate(attempts):
        if a.get("committed") and a.get("version") in shown:
            merged.setdefault(a["version"], i)
    items = []
    for v in plotted:
        items.append((merged.get(v.number, -1 + v.number * 1e-3), {
            "geomean": model_of(v) if model_of else v.geomean, "status": "ok", "committed": True,
            "version": v.number}))
    for i, a in enumerate(attempts):
        if a.get("committed") and merged.get(a.get("version")) == i:
            continue
        if ((a.get("gpu") or a.get("device")), a.get("suite"), bool(a.get("interpreter"))) != key:
            continue
        y = (model_of(i) if model_of else a.get("geomean_tflops")) or 0.0
        items.append((i, {"geomean": y, "status": a.get("status", "?"), "committed": False, "version": None}))
    items.sort(key=lambda t: t[0])
    return [{**d, "x": k + 1} for k, (_, d) in enumerate(items)]


def _wrap(text: str, width: int = 26, lines: int = 3) -> str:
    import textwrap

    parts = textwrap.wrap(text, width, break_on_hyphens=False) or [""]
    if len(parts) > lines:
        parts = parts[:lines]
        parts[-1] = parts[-1][: width - 1] + "…"
    return "\n".join(parts)


def render_png(versions: list[Version], plotted: list[Version], title: str, unit: str, scale: float,
               attempts: list[dict] | None = None, basis: dict[int, dict] | None = None,
               attempt_models: dict[int, float] | None = None) -> bytes:
    """`basis`: version number -> avo.cost_basis.summary; `attempt_models`: an attempt's
    index -> its modelled TFLOPS. With modelled figures on an interpreter lineage, the
    first panel plots them (the CPU commit basis) instead of interpreter geomeans."""
    import io

    import matplotlib

    matplotlib.use("Agg")  # headless: CI, DVC stages, ssh sessions
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    attempts, basis, attempt_models = attempts or [], basis or {}, attempt_models or {}
    by_number = {v.number: v for v in versions}
    shown = {v.number for v in plotted}
    where = plotted[-1].result
    by_model = where.interpreter and any((basis.get(v.number) or {}).get("model_tflops") for v in plotted)

    def model_of(x: Version | int) -> float | None:
        return (basis.get(x.number) or {}).get("model_tflops") if isinstance(x, Version) else attempt_models.get(x)

    def yv(v: Version) -> float:  # a committed version's height in the first panel
        return (model_of(v) or 0.0) if by_model else v.geomean * scale
    fig, (ax_g, ax_c, ax_t) = plt.subplots(
        3, 1, figsize=(12, 15), gridspec_kw={"height_ratios": [4, 3, max(2, len(versions) * 0.4)]})
    fig.suptitle(title, fontsize=14)

    # 1. every comparable candidate in evaluation order; committed versions labelled
    line = _timeline(versions, plotted, attempts, model_of if by_model else None)
    xv = {d["version"]: d["x"] for d in line if d["committed"]}
    ok = [d for d in line if not d["committed"] and d["status"] == "ok" and d["geomean"]]
    failed = [d for d in line if d["status"] != "ok"]
    tops = [d["geomean"] * scale for d in line if d["geomean"]]
    ys_all = tops + [y * scale for v in plotted for y in baseline_geomeans(v) if y]
    lo, hi = (min(ys_all), max(ys_all)) if ys_all else (0.0, 1.0)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.1 or 1.0
    floor = lo - pad * 1.6 if failed else lo  # failed candidates sit on this line
    for v in plotted:
        p = by_number.get(v.parent) if v.parent is not None else None
        if p is not None and p.number in shown:
            ax_g.plot([xv[p.number], xv[v.number]], [yv(p), yv(v)],
                      color="C0", lw=1, alpha=0.5, zorder=2)
    ax_g.scatter([d["x"] for d in ok], [d["geomean"] * scale for d in ok], s=22, color="0.55",
                 alpha=0.6, zorder=3, label="candidate, not committed")
    for status in sorted({d["status"] for d in failed}):
        pts = [d for d in failed if d["status"] == status]
        ax_g.scatter([d["x"] for d in pts], [floor] * len(pts), marker="x", s=30,
                     color=STATUS_COLOURS.get(status, "k"), zorder=3, label=f"failed: {status}")
    ax_g.scatter(list(xv.values()), [yv(by_number[n]) for n in xv], s=70, color="C0",
                 edgecolor="k", zorder=4, label="committed version")
    xs_sorted = sorted(xv.items(), key=lambda t: t[1])
    last_x = max((d["x"] for d in line), default=1)
    for idx, (name, style) in enumerate((("cuDNN", "--"), ("FA2", ":"))):
        pts = [(x, baseline_geomeans(by_number[n])[idx]) for n, x in xs_sorted]
        pts = [(x, y * scale) for x, y in pts if y]
        if pts:
            ax_g.step([x for x, _ in pts] + [last_x], [y for _, y in pts] + [pts[-1][1]], style,
                      where="post", color=f"C{idx + 1}", lw=1.5, label=f"{name} (timed with each version)")
    for k, (n, x) in enumerate(xs_sorted):
        v = by_number[n]
        below = k % 2 == 1 and len(xs_sorted) > 1
        # a label would run over the next version's point when that one is close: put it on the left
        # (not near the left edge, where a label on the left runs over the axis)
        crowded = 0 < k < len(xs_sorted) - 1 and xs_sorted[k + 1][1] - x < max(3, 0.12 * last_x) \
            and x > 0.3 * last_x
        # the rightmost version's label goes on the left: on the right it runs off the axes
        crowded = crowded or (k == len(xs_sorted) - 1 and k > 0 and x > 0.8 * last_x)
        ax_g.annotate(f"v{n}: " + _wrap(v.technique.name), (x, yv(v)), fontsize=8,
                      xytext=(-8 if crowded else 6, -14 if below else 8), textcoords="offset points",
                      va="top" if below else "bottom", ha="right" if crowded else "left",
                      annotation_clip=False,
                      bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.75})
    ax_g.set_xlim(0.5 - 0.02 * last_x, last_x + 0.5 + 0.12 * last_x)  # room for the last label
    ax_g.set_ylim(floor - pad * (0.6 if failed else 1.0), hi + pad * 2.2)
    ax_g.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax_g.set_ylabel("modelled H100 TFLOPS (the commit basis)" if by_model else f"geomean {unit}")
    ax_g.set_xlabel("candidate, in evaluation order (attempts.jsonl)" if attempts else "version")
    ax_g.grid(alpha=0.3)
    n_c = sum(1 for d in line if d["committed"])
    unmodelled = sum(1 for d in line if by_model and d["status"] == "ok" and not d["geomean"])
    ax_g.set_title(f"{where.env.get('gpu') or where.device}, suite {where.suite}"
                   + (f" ({INTERPRETER_NOTE})" if where.interpreter else "")
                   + f" — {len(line)} candidates: {n_c} committed, {len(line) - n_c} not"
                   + f" ({len(failed)} failed)"
                   + ("\ncommits on modelled H100 TFLOPS (the problem's cost model of the knobs); "
                      "interpreter timings are informational" if by_model else "")
                   + (f"\n{unmodelled} correct candidates not plotted: source not kept, so not modelled"
                      if unmodelled else ""), fontsize=9)
    handles, labels = ax_g.get_legend_handles_labels()
    ax_g.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0)

    # 2. per-configuration figures by version
    configs = list(dict.fromkeys(c for v in plotted for c in v.result.tflops_by_config()))
    xs = [v.number for v in plotted]
    for i, c in enumerate(configs):
        ys = [v.result.tflops_by_config().get(c, float("nan")) * scale for v in plotted]
        colour = f"C{i}" if len(configs) <= 10 else plt.cm.tab20(i % 20)  # no two lines alike
        ax_c.plot(xs, ys, "-o", ms=3, lw=1, color=colour, label=c)
    ax_c.set_ylabel(unit)
    ax_c.set_xlabel("version")
    ax_c.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
    ax_c.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax_c.grid(alpha=0.3)
    ax_c.set_title("per configuration" + (": interpreter timings (informational)" if where.interpreter else ""),
                   fontsize=9)
    if configs and len(configs) <= 12:
        ax_c.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    elif configs:  # many configurations: a legend beside the plot would squeeze it; put it below
        ax_c.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.14), borderaxespad=0)

    # 3. the parent tree with each version's technique and what was tried from it
    depth = _depths(versions)
    tried = {}
    for a in attempts:
        if a.get("parent") is not None and not a.get("committed"):
            tried[a["parent"]] = tried.get(a["parent"], 0) + 1
    for v in versions:
        y = -v.number
        if v.parent is not None and v.parent in depth:
            ax_t.plot([depth[v.parent], depth[v.parent], depth[v.number]], [-v.parent, y, y],
                      color="0.6", lw=1)
        ax_t.plot(depth[v.number], y, "o", color="C0" if v.number in shown else "0.7", ms=6)
        more = f"  · {tried[v.number]} uncommitted candidates from here" if tried.get(v.number) else ""
        text = (basis.get(v.number) or {}).get("text")
        mine, theirs = model_of(v), model_of(by_number[v.parent]) if v.parent in by_number else None
        delta = (f"{(mine / theirs - 1) * 100:+.1f}% modelled" if by_model and mine and theirs
                 else "" if by_model else _delta(v, by_number))  # interpreter deltas are noise
        ax_t.text(depth[v.number] + 0.08, y, f"v{v.number} [{v.operator}] {v.technique.name} {delta}"
                  + (f"  · {text}" if text else "") + more, va="center", fontsize=8)
    ax_t.set_xlim(-0.3, max(depth.values()) + 6)
    ax_t.set_ylim(-len(versions) + 0.4, 0.6)
    ax_t.axis("off")
    ax_t.set_title("parent tree (every candidate: tree.html)", fontsize=9)

    fig.tight_layout(rect=(0, 0, 1, 0.985))  # keep the panel titles clear of the figure title
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()

