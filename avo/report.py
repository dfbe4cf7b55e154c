"""`avo report`: the lineage as a picture, a page, and numbers DVC can read.

Outputs (in report.out_dir, default reports/):
    lineage.png          every candidate's geomean in evaluation order (committed versions
                         labelled, the rest faint, failures by status) with cuDNN and FA2
                         lines, TFLOPS per configuration by version, and the parent tree
    lineage.html         one self-contained page: the PNG inlined (base64), the tree, a table
    metrics.json         best / seed geomean, speedup, counts       (`dvc metrics show`)
    lineage_curve.csv    one row per version: geomean and baselines (`dvc plots show`)
    lineage_configs.csv  one row per version: TFLOPS per configuration
    tree.html            the evolution tree: every candidate, source, diff, log (avo.tree)

Only versions measured comparably with the latest one (same device, suite and
GPU; interpreter figures apart) are plotted; all are in the table.
"""
from __future__ import annotations

import base64
import csv
import html
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from avo import units
from avo.atomic_files import atomic_write
from avo.lineage import Lineage, Version, comparable
from avo.records import geomean
from avo.units import INTERPRETER_NOTE

PNG, HTML, METRICS, CURVE, CONFIGS = ("lineage.png", "lineage.html", "metrics.json",
                                      "lineage_curve.csv", "lineage_configs.csv")


@dataclass(frozen=True)
class ReportFiles:
    png: Path
    html: Path
    metrics: Path
    curve: Path
    configs: Path
    tree: Path


def build_report(lineage: Lineage, out_dir: str | Path, title: str = "avo lineage",
                 journals: list[dict] | None = None) -> ReportFiles:
    """Write every report file (and tree.html beside them); raises ValueError when
    the lineage is empty."""
    from avo.tree import TREE, build_tree

    versions = lineage.versions()
    if not versions:
        raise ValueError(f"the lineage at {lineage.root} has no versions yet")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(*(out / n for n in (PNG, HTML, METRICS, CURVE, CONFIGS, TREE)))
    plotted = [v for v in versions if comparable(v.result, versions[-1].result)]
    unit, scale = _unit(plotted)
    attempts = lineage.attempts()

    png = render_png(versions, plotted, title, unit, scale, attempts)
    atomic_write(files.png, png)
    atomic_write(files.html, render_html(versions, plotted, attempts, png, title, unit, scale))
    atomic_write(files.metrics, json.dumps(report_metrics(versions, plotted, attempts), indent=2) + "\n")
    atomic_write(files.curve, _csv(curve_rows(plotted)))
    atomic_write(files.configs, _csv(config_rows(plotted)))
    build_tree(lineage, files.tree, title=f"{title}: evolution tree", journals=journals)
    return files


# ------------------------------------------------------------------- numbers
def baseline_geomeans(v: Version) -> tuple[float | None, float | None]:
    """Geomean TFLOPS of cuDNN and FA2, timed in the same run as the version."""
    cudnn = [t.cudnn_tflops for t in v.result.timings]
    fa2 = [t.fa2_tflops for t in v.result.timings]
    return (geomean(cudnn) if cudnn and all(cudnn) else None,
            geomean(fa2) if fa2 and all(fa2) else None)


def report_metrics(versions: list[Version], plotted: list[Version], attempts: list[dict]) -> dict:
    best = max(plotted, key=lambda v: (v.geomean, -v.number))
    seed = plotted[0]
    return {
        "versions": len(versions),
        "best_version": best.number,
        "best_geomean_tflops": best.geomean,
        "seed_geomean_tflops": seed.geomean,
        "speedup_vs_seed": best.geomean / seed.geomean if seed.geomean else None,
        "best_ratio_cudnn": best.result.geomean_ratio_cudnn,
        "best_ratio_fa2": best.result.geomean_ratio_fa2,
        "attempts": len(attempts),
        "committed_attempts": sum(1 for a in attempts if a.get("committed")),
        "device": best.result.env.get("gpu") or best.result.device,
        "interpreter": best.result.interpreter,
        "suite": best.result.suite,
    }


def curve_rows(plotted: list[Version]) -> list[dict]:
    rows = []
    for v in plotted:
        cudnn, fa2 = baseline_geomeans(v)
        rows.append({"version": v.number, "parent": "" if v.parent is None else v.parent,
                     "operator": v.operator, "technique": v.technique.name,
                     "geomean_tflops": v.geomean, "cudnn_tflops": cudnn or "", "fa2_tflops": fa2 or ""})
    return rows


def config_rows(plotted: list[Version]) -> list[dict]:
    return [{"version": v.number, **v.result.tflops_by_config()} for v in plotted]


def _csv(rows: list[dict]) -> str:
    import io

    buf = io.StringIO()
    fields = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _unit(plotted: list[Version]) -> tuple[str, float]:
    # One unit everywhere (avo.units): TFLOPS; interpreter figures are labelled as such
    # and printed with significant digits, never rounded to 0.0.
    return ("TFLOPS (interpreter)", 1.0) if plotted and plotted[-1].result.interpreter else ("TFLOPS", 1.0)


def _depths(versions: list[Version]) -> dict[int, int]:
    depth: dict[int, int] = {}
    for v in versions:  # parents always have smaller numbers
        depth[v.number] = depth.get(v.parent, -1) + 1 if v.parent is not None else 0
    return depth


def _delta(v: Version, by_number: dict[int, Version]) -> str:
    p = by_number.get(v.parent) if v.parent is not None else None
    if p is None or not p.geomean or not comparable(v.result, p.result):
        return ""
    return f"{(v.geomean / p.geomean - 1) * 100:+.1f}%"


# ----------------------------------------------------------------------- PNG
STATUS_COLOURS = {"incorrect": "#e53935", "compile_error": "#fb8c00", "timeout": "#8e24aa",
                  "crashed": "#6d4c41", "rejected": "#212121"}


def _timeline(versions: list[Version], plotted: list[Version], attempts: list[dict]) -> list[dict]:
    """Every candidate comparable with the latest version, in evaluation order:
    {"x", "geomean", "status", "committed", "version"} (versions at the position
    of the attempt that committed them; a version with no attempt line goes
    where its number says)."""
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
            "geomean": v.geomean, "status": "ok", "committed": True, "version": v.number}))
    for i, a in enumerate(attempts):
        if a.get("committed") and merged.get(a.get("version")) == i:
            continue
        if ((a.get("gpu") or a.get("device")), a.get("suite"), bool(a.get("interpreter"))) != key:
            continue
        items.append((i, {"geomean": a.get("geomean_tflops") or 0.0, "status": a.get("status", "?"),
                          "committed": False, "version": None}))
    items.sort(key=lambda t: t[0])
    return [{**d, "x": k + 1} for k, (_, d) in enumerate(items)]


def _wrap(text: str, width: int = 26, lines: int = 3) -> str:
    import textwrap

    parts = textwrap.wrap(text, width, break_on_hyphens=False) or [""]
    if len(parts) > lines:
        parts = parts[:lines]
        parts[-1] = parts[-1][: width - 1] + "…"
    return "\n".join(parts)


def render_png(versions: list[Version], plotted: list[Version], title: str,
               unit: str, scale: float, attempts: list[dict] | None = None) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")  # headless: CI, DVC stages, ssh sessions
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    attempts = attempts or []
    by_number = {v.number: v for v in versions}
    shown = {v.number for v in plotted}
    fig, (ax_g, ax_c, ax_t) = plt.subplots(
        3, 1, figsize=(12, 15), gridspec_kw={"height_ratios": [4, 3, max(2, len(versions) * 0.4)]})
    fig.suptitle(title, fontsize=14)

    # 1. every comparable candidate in evaluation order; committed versions labelled
    line = _timeline(versions, plotted, attempts)
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
            ax_g.plot([xv[p.number], xv[v.number]], [p.geomean * scale, v.geomean * scale],
                      color="C0", lw=1, alpha=0.5, zorder=2)
    ax_g.scatter([d["x"] for d in ok], [d["geomean"] * scale for d in ok], s=22, color="0.55",
                 alpha=0.6, zorder=3, label="candidate, not committed")
    for status in sorted({d["status"] for d in failed}):
        pts = [d for d in failed if d["status"] == status]
        ax_g.scatter([d["x"] for d in pts], [floor] * len(pts), marker="x", s=30,
                     color=STATUS_COLOURS.get(status, "k"), zorder=3, label=f"failed: {status}")
    ax_g.scatter(list(xv.values()), [by_number[n].geomean * scale for n in xv], s=70, color="C0",
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
        crowded = 0 < k < len(xs_sorted) - 1 and xs_sorted[k + 1][1] - x < max(3, 0.12 * last_x)
        # the rightmost version's label goes on the left: on the right it runs off the axes
        crowded = crowded or (k == len(xs_sorted) - 1 and k > 0 and x > 0.8 * last_x)
        ax_g.annotate(f"v{n}: " + _wrap(v.technique.name), (x, v.geomean * scale), fontsize=8,
                      xytext=(-8 if crowded else 6, -14 if below else 8), textcoords="offset points",
                      va="top" if below else "bottom", ha="right" if crowded else "left",
                      annotation_clip=False,
                      bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.75})
    ax_g.set_xlim(0.5 - 0.02 * last_x, last_x + 0.5 + 0.12 * last_x)  # room for the last label
    ax_g.set_ylim(floor - pad * (0.6 if failed else 1.0), hi + pad * 2.2)
    ax_g.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax_g.set_ylabel(f"geomean {unit}")
    ax_g.set_xlabel("candidate, in evaluation order (attempts.jsonl)" if attempts else "version")
    ax_g.grid(alpha=0.3)
    where = plotted[-1].result
    n_c = sum(1 for d in line if d["committed"])
    ax_g.set_title(f"{where.env.get('gpu') or where.device}, suite {where.suite}"
                   + (f" ({INTERPRETER_NOTE})" if where.interpreter else "")
                   + f" — {len(line)} candidates: {n_c} committed, {len(line) - n_c} not"
                   + f" ({len(failed)} failed)", fontsize=9)
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
    ax_c.set_title("per configuration", fontsize=9)
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
        ax_t.text(depth[v.number] + 0.08, y, f"v{v.number} [{v.operator}] {v.technique.name}"
                  f" {_delta(v, by_number)}{more}", va="center", fontsize=8)
    ax_t.set_xlim(-0.3, max(depth.values()) + 6)
    ax_t.set_ylim(-len(versions) + 0.4, 0.6)
    ax_t.axis("off")
    ax_t.set_title("parent tree (every candidate: tree.html)", fontsize=9)

    fig.tight_layout(rect=(0, 0, 1, 0.985))  # keep the panel titles clear of the figure title
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


# ---------------------------------------------------------------------- HTML
_CSS = """*{box-sizing:border-box}body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:100%}
table{border-collapse:collapse;font-size:12px;width:100%}td,th{border:1px solid #ccc;padding:3px 6px;
text-align:right;vertical-align:top;white-space:nowrap}th{white-space:nowrap}td.l,th.l{text-align:left}
td.l{white-space:normal;overflow-wrap:anywhere;min-width:6em}td.l.nowrap{white-space:nowrap;font-size:11px}tr.best{background:#eef7ee}
img{max-width:100%;height:auto}ul.tree{font-size:13px}.muted{color:#777}.scroll{overflow-x:auto;max-width:100%}
.scroll table{width:auto}td.nowrap{white-space:nowrap}"""


def render_html(versions: list[Version], plotted: list[Version], attempts: list[dict], png: bytes,
                title: str, unit: str, scale: float) -> str:
    e = html.escape
    by_number = {v.number: v for v in versions}
    best = max(plotted, key=lambda v: (v.geomean, -v.number))
    configs = list(dict.fromkeys(c for v in versions for c in v.result.tflops_by_config()))
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    m = report_metrics(versions, plotted, attempts)
    interp = best.result.interpreter
    parts = [f"<!doctype html><html><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width,initial-scale=1'><title>{e(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1>",
             f"<p class='muted'>generated {now}; {len(versions)} versions, {len(attempts)} attempts "
             f"({m['committed_attempts']} committed); best v{best.number} at "
             f"{units.tflops(best.geomean, interp)} {e(unit)} geomean"
             f"{_x(m['best_ratio_cudnn'], ' cuDNN')}{_x(m['best_ratio_fa2'], ' FA2')}; "
             f"{e(_speedup(m))}. Every candidate, with source and diffs: <a href='tree.html'>tree.html</a>.</p>",
             f"<img alt='lineage plot' src='data:image/png;base64,{base64.b64encode(png).decode()}'>",
             "<h2>Parent tree</h2>", _tree_html(versions, by_number), "<h2>Versions</h2><table><tr>"]
    head = ["version", "parent", "operator", "technique", "expected", "measured vs parent",
            f"geomean {unit}", "× cuDNN", "× FA2", "device", "created", "note"]
    left = {"operator", "technique", "expected", "measured vs parent", "device", "created", "note"}
    parts.append("".join(f"<th class='{'l' if h in left else ''}'>{e(h)}</th>" for h in head) + "</tr>")
    for v in versions:
        r = v.result
        measured = "<br>".join(f"{e(c)}: {(x - 1) * 100:+.1f}%" for c, x in v.technique.measured.items())
        cells = [(e(f"v{v.number}"), "nowrap"), (e("" if v.parent is None else f"v{v.parent}"), "nowrap"),
                 (e(v.operator), "l"), (e(v.technique.name), "l"), (e(v.technique.expected), "l"),
                 (measured, "l nowrap"), (e(units.tflops(v.geomean, r.interpreter)), "nowrap"),
                 (e(_ratio(r.geomean_ratio_cudnn)), "nowrap"), (e(_ratio(r.geomean_ratio_fa2)), "nowrap"),
                 (e(f"{r.env.get('gpu') or r.device}, suite {r.suite}"
                    + (" (interpreter)" if r.interpreter else "")
                    + f"; torch {r.env.get('torch', '?')}, triton {r.env.get('triton', '?')}"), "l"),
                 (e(v.created), "l"), (e(v.note), "l")]
        cls = " class='best'" if v is best else ""
        parts.append(f"<tr{cls}>" + "".join(f"<td class='{c}'>{t}</td>" for t, c in cells) + "</tr>")
    parts.append("</table>")
    # per-configuration figures: configurations down, versions across (scrolls inside its box)
    parts.append(f"<h2>{e(unit)} per configuration</h2><div class='scroll'><table><tr><th class='l'>config</th>"
                 + "".join(f"<th>v{v.number}</th>" for v in versions) + "</tr>")
    for c in configs:
        parts.append(f"<tr><td class='l nowrap'>{e(c)}</td>" + "".join(
            f"<td>{e(units.tflops(v.result.tflops_by_config()[c], v.result.interpreter))}</td>"
            if c in v.result.tflops_by_config() else "<td></td>" for v in versions) + "</tr>")
    parts.append("</table></div>")
    parts.append(_attempts_html(attempts))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _attempts_html(attempts: list[dict]) -> str:
    e = html.escape
    rows = ["<h2>Every attempt</h2><table><tr><th>#</th><th>gen</th><th>parent</th><th class='l'>operator</th>"
            "<th class='l'>technique</th><th class='l'>status</th><th>geomean TFLOPS</th><th class='l'>decision</th></tr>"]
    for i, a in enumerate(attempts):
        verdict = f"committed as v{a.get('version')}" if a.get("committed") else "not committed"
        why = a.get("reason") or a.get("message") or ""
        parent = "" if a.get("parent") is None else f"v{a['parent']}"
        rows.append(f"<tr><td>{i}</td><td>{e(str(a.get('generation', '')))}</td><td>{e(parent)}</td>"
                    f"<td class='l'>{e(str(a.get('operator', '')))}</td>"
                    f"<td class='l'>{e(str((a.get('technique') or {}).get('name', '')))}</td>"
                    f"<td class='l'>{e(str(a.get('status', '')))}</td>"
                    f"<td>{e(units.tflops(a.get('geomean_tflops'), bool(a.get('interpreter'))))}</td>"
                    f"<td class='l'>{e(verdict)}{': ' + e(why) if why else ''}</td></tr>")
    return "".join(rows) + "</table>"


def _tree_html(versions: list[Version], by_number: dict[int, Version]) -> str:
    children: dict[int | None, list[Version]] = {}
    for v in versions:
        key = v.parent if v.parent in by_number else None
        children.setdefault(key, []).append(v)

    def node(v: Version) -> str:
        why = f" — <span class='muted'>{html.escape(v.technique.why)}</span>" if v.technique.why else ""
        kids = "".join(node(c) for c in children.get(v.number, []))
        return (f"<li><b>v{v.number}</b> [{html.escape(v.operator)}] {html.escape(v.technique.name)} "
                f"{_delta(v, by_number)}{why}" + (f"<ul>{kids}</ul>" if kids else "") + "</li>")

    return "<ul class='tree'>" + "".join(node(v) for v in children.get(None, [])) + "</ul>"


def _ratio(x: float | None) -> str:
    return f"{x:.3f}" if x else ""


def _x(x: float | None, name: str) -> str:
    return f", {x:.2f}×{name}" if x else ""


def _speedup(m: dict) -> str:
    return f"{m['speedup_vs_seed']:.3f}× the seed" if m.get("speedup_vs_seed") else ""
