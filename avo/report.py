"""`avo report`: the lineage as a picture, a page, and numbers DVC can read.

Outputs (in report.out_dir, default reports/):
    lineage.png          geomean by version with cuDNN and FA2 lines, TFLOPS per
                         configuration by version, and the parent tree with techniques
    lineage.html         one self-contained page: the PNG inlined (base64), the tree, a table
    metrics.json         best / seed geomean, speedup, counts       (`dvc metrics show`)
    lineage_curve.csv    one row per version: geomean and baselines (`dvc plots show`)
    lineage_configs.csv  one row per version: TFLOPS per configuration

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

from avo.atomic_files import atomic_write
from avo.lineage import Lineage, Version, comparable
from avo.records import geomean

PNG, HTML, METRICS, CURVE, CONFIGS = ("lineage.png", "lineage.html", "metrics.json",
                                      "lineage_curve.csv", "lineage_configs.csv")


@dataclass(frozen=True)
class ReportFiles:
    png: Path
    html: Path
    metrics: Path
    curve: Path
    configs: Path


def build_report(lineage: Lineage, out_dir: str | Path, title: str = "avo lineage") -> ReportFiles:
    """Write every report file; raises ValueError when the lineage is empty."""
    versions = lineage.versions()
    if not versions:
        raise ValueError(f"the lineage at {lineage.root} has no versions yet")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(*(out / n for n in (PNG, HTML, METRICS, CURVE, CONFIGS)))
    plotted = [v for v in versions if comparable(v.result, versions[-1].result)]
    unit, scale = _unit(plotted)

    png = render_png(versions, plotted, title, unit, scale)
    atomic_write(files.png, png)
    atomic_write(files.html, render_html(versions, plotted, lineage.attempts(), png, title, unit, scale))
    atomic_write(files.metrics, json.dumps(report_metrics(versions, plotted, lineage.attempts()),
                                           indent=2) + "\n")
    atomic_write(files.curve, _csv(curve_rows(plotted)))
    atomic_write(files.configs, _csv(config_rows(plotted)))
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
    # Interpreter runs reach GFLOP/s at best; TFLOPS would print as zeros.
    return ("GFLOP/s", 1e3) if plotted and plotted[-1].result.interpreter else ("TFLOPS", 1.0)


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
def render_png(versions: list[Version], plotted: list[Version], title: str,
               unit: str, scale: float) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")  # headless: CI, DVC stages, ssh sessions
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    by_number = {v.number: v for v in versions}
    shown = {v.number for v in plotted}
    fig, (ax_g, ax_c, ax_t) = plt.subplots(
        3, 1, figsize=(11, 13), gridspec_kw={"height_ratios": [3, 3, max(2, len(versions) * 0.35)]})
    fig.suptitle(title, fontsize=14)
    xs = [v.number for v in plotted]

    # geomean with parent -> child edges, and the baselines of the same runs
    for v in plotted:
        p = by_number.get(v.parent) if v.parent is not None else None
        if p is not None and p.number in shown:
            ax_g.plot([p.number, v.number], [p.geomean * scale, v.geomean * scale], color="0.6", lw=1)
    ax_g.plot(xs, [v.geomean * scale for v in plotted], "o", color="C0", label="lineage geomean")
    for v in plotted:
        ax_g.annotate(v.technique.name[:28], (v.number, v.geomean * scale), fontsize=7,
                      rotation=30, xytext=(3, 4), textcoords="offset points")
    for idx, (name, style) in enumerate((("cuDNN", "--"), ("FA2", ":"))):
        ys = [baseline_geomeans(v)[idx] for v in plotted]
        if any(ys):
            ax_g.plot(xs, [y * scale if y else float("nan") for y in ys], style,
                      color=f"C{idx + 1}", label=f"{name} (same run)")
    ax_g.set_ylabel(f"geomean {unit}")
    ax_g.set_xlabel("version")
    ax_g.xaxis.set_major_locator(MaxNLocator(integer=True))  # versions are whole numbers
    ax_g.legend(loc="lower right", fontsize=8)
    ax_g.grid(alpha=0.3)
    where = plotted[-1].result
    ax_g.set_title(f"{where.env.get('gpu') or where.device}, suite {where.suite}"
                   + (" (Triton interpreter: not GPU speed)" if where.interpreter else ""), fontsize=9)

    # per-configuration TFLOPS
    configs = list(dict.fromkeys(c for v in plotted for c in v.result.tflops_by_config()))
    for i, c in enumerate(configs):
        ys = [v.result.tflops_by_config().get(c, float("nan")) * scale for v in plotted]
        ax_c.plot(xs, ys, "-o", ms=3, lw=1, color=f"C{i % 10}", label=c)
    ax_c.set_ylabel(unit)
    ax_c.set_xlabel("version")
    ax_c.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_c.grid(alpha=0.3)
    if configs:
        ax_c.legend(fontsize=6, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))

    # the parent tree with each version's technique
    depth = _depths(versions)
    for v in versions:
        y = -v.number
        if v.parent is not None and v.parent in depth:
            ax_t.plot([depth[v.parent], depth[v.parent], depth[v.number]], [-v.parent, y, y],
                      color="0.6", lw=1)
        ax_t.plot(depth[v.number], y, "o", color="C0" if v.number in shown else "0.7", ms=5)
        ax_t.text(depth[v.number] + 0.08, y, f"v{v.number} [{v.operator}] {v.technique.name}"
                  f" {_delta(v, by_number)}", va="center", fontsize=8)
    ax_t.set_xlim(-0.3, max(depth.values()) + 4)
    ax_t.set_ylim(-len(versions) + 0.3, 0.7) if len(versions) > 1 else None
    ax_t.axis("off")
    ax_t.set_title("parent tree", fontsize=9)

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


# ---------------------------------------------------------------------- HTML
_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
td.l,th.l{text-align:left}tr.best{background:#eef7ee}img{max-width:100%}ul.tree{font-size:13px}
.muted{color:#777}"""


def render_html(versions: list[Version], plotted: list[Version], attempts: list[dict], png: bytes,
                title: str, unit: str, scale: float) -> str:
    e = html.escape
    by_number = {v.number: v for v in versions}
    best = max(plotted, key=lambda v: (v.geomean, -v.number))
    configs = list(dict.fromkeys(c for v in versions for c in v.result.tflops_by_config()))
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    m = report_metrics(versions, plotted, attempts)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1>",
             f"<p class='muted'>generated {now}; {len(versions)} versions, {len(attempts)} attempts; "
             f"best v{best.number} at {best.geomean * scale:.4g} {unit} geomean"
             f"{_x(m['best_ratio_cudnn'], ' cuDNN')}{_x(m['best_ratio_fa2'], ' FA2')}; "
             f"{e(_speedup(m))}</p>",
             f"<img alt='lineage plot' src='data:image/png;base64,{base64.b64encode(png).decode()}'>",
             "<h2>Parent tree</h2>", _tree_html(versions, by_number), "<h2>Versions</h2><table><tr>"]
    head = ["version", "parent", "operator", "technique", "expected", "measured", f"geomean {unit}",
            "× cuDNN", "× FA2", *configs, "device", "torch", "triton", "created", "note"]
    left = {"operator", "technique", "expected", "measured", "device", "created", "note"}
    parts.append("".join(f"<th class='{'l' if h in left else ''}'>{e(h)}</th>" for h in head) + "</tr>")
    for v in versions:
        r = v.result
        tf = r.tflops_by_config()
        measured = ", ".join(f"{(x - 1) * 100:+.1f}%" for x in v.technique.measured.values())
        cells = [(f"v{v.number}", ""), ("" if v.parent is None else f"v{v.parent}", ""),
                 (v.operator, "l"), (v.technique.name, "l"), (v.technique.expected, "l"),
                 (measured, "l"), (f"{v.geomean * scale:.4g}", ""),
                 (_ratio(r.geomean_ratio_cudnn), ""), (_ratio(r.geomean_ratio_fa2), ""),
                 *[(f"{tf[c] * scale:.4g}" if c in tf else "", "") for c in configs],
                 ((r.env.get("gpu") or r.device) + (" (interpreter)" if r.interpreter else ""), "l"),
                 (str(r.env.get("torch", "")), ""), (str(r.env.get("triton", "")), ""),
                 (v.created, "l"), (v.note, "l")]
        cls = " class='best'" if v is best else ""
        parts.append(f"<tr{cls}>" + "".join(f"<td class='{c}'>{e(str(t))}</td>" for t, c in cells) + "</tr>")
    parts.append("</table></body></html>\n")
    return "\n".join(parts)


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
