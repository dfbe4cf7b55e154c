"""`avo report`: the lineage as a picture, a page, and numbers DVC can read.

Outputs (in report.out_dir, default reports/):
    lineage.png          every candidate by its commit basis in evaluation order (committed
                         versions labelled, the rest faint, failures by status) with cuDNN
                         and FA2 lines, TFLOPS per configuration by version, and the parent
                         tree (avo.report_png)
    lineage.html         one self-contained page: the PNG inlined (base64), the tree, a table
                         with each version's commit basis (avo.report_html)
    metrics.json         best / seed geomean, speedup, counts, commit basis (`dvc metrics show`)
    lineage_curve.csv    one row per version: geomean, baselines, basis figures (`dvc plots show`)
    lineage_configs.csv  one row per version: TFLOPS per configuration
    tree.html            the evolution tree: every candidate, source, diff, log (avo.tree)

Only versions measured comparably with the latest one (same device, suite and
GPU; interpreter figures apart) are plotted; all are in the table. What a commit
stood on (avo.commit_rule): on a GPU the suite geomean and the interleaved
confirmation; on the CPU lineage the problem's cost model (modelled H100 TFLOPS),
interpreter timings being informational. Versions recorded before their modelled
figure was are modelled from their source (parsed, never run).
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from avo import cost_basis
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
    tree: Path


def build_report(lineage: Lineage, out_dir: str | Path, title: str = "avo lineage",
                 journals: list[dict] | None = None) -> ReportFiles:
    """Write every report file (and tree.html beside them); raises ValueError when
    the lineage is empty."""
    from avo.report_html import render_html
    from avo.report_png import render_png
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
    basis, attempt_models = cost_basis.lineage_basis(lineage, versions, attempts)

    png = render_png(versions, plotted, title, unit, scale, attempts, basis, attempt_models)
    atomic_write(files.png, png)
    atomic_write(files.html, render_html(versions, plotted, attempts, png, title, unit, scale, basis))
    atomic_write(files.metrics, json.dumps(report_metrics(versions, plotted, attempts, basis), indent=2) + "\n")
    atomic_write(files.curve, _csv(curve_rows(plotted, basis)))
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


def report_metrics(versions: list[Version], plotted: list[Version], attempts: list[dict],
                   basis: dict[int, dict] | None = None) -> dict:
    """The numbers DVC reads. The best version is the best by the lineage's commit basis:
    the highest modelled figure on an interpreter lineage that has them, else the
    highest geomean."""
    basis = basis or {}
    modelled = {v.number: (basis.get(v.number) or {}).get("model_tflops") for v in plotted}
    by_model = plotted[-1].result.interpreter and any(modelled.values())
    if by_model:
        best = max(plotted, key=lambda v: (modelled[v.number] or 0.0, -v.number))
    else:
        best = max(plotted, key=lambda v: (v.geomean, -v.number))
    seed = plotted[0]
    seed_model = modelled[seed.number] if by_model else None
    latest = plotted[-1].result
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
        "commit_basis": "model" if by_model else cost_basis.basis_of(best.result),
        "commits_on": _commits_on(latest, by_model),
        "best_modelled_tflops": modelled[best.number] if by_model else None,
        "seed_modelled_tflops": seed_model,
        "modelled_speedup_vs_seed": modelled[best.number] / seed_model if by_model and seed_model else None,
    }


def _commits_on(latest, by_model: bool) -> str:
    if latest.interpreter or latest.device != "cuda":
        return cost_basis.CPU_BASIS if by_model else cost_basis.CPU_NO_BASIS
    return cost_basis.GPU_BASIS


def curve_rows(plotted: list[Version], basis: dict[int, dict] | None = None) -> list[dict]:
    rows = []
    for v in plotted:
        cudnn, fa2 = baseline_geomeans(v)
        b = (basis or {}).get(v.number) or {}
        rows.append({"version": v.number, "parent": "" if v.parent is None else v.parent,
                     "operator": v.operator, "technique": v.technique.name,
                     "geomean_tflops": v.geomean, "cudnn_tflops": cudnn or "", "fa2_tflops": fa2 or "",
                     "commit_basis": b.get("basis", ""), "modelled_tflops": b.get("model_tflops") or "",
                     "confirm_ratio": b.get("confirm_ratio") or ""})
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

