"""`avo tree`: the whole search as one self-contained, browsable HTML page.

Every candidate is a node under its parent: the committed versions (big, ringed)
and every attempt that was not committed (small, coloured by status). Hovering a
node shows its status, score and technique; a click opens a side panel with its
source, the diff against its parent, per-configuration figures, the commit
decision and the harness log's end. A table gives the cost of each run (GPU
minutes, tokens, dollars) where the attempts or the run journal record it.

The page works offline: data, script, style and drawing (SVG) are inline; no
CDN, no fonts, no network. `#selftest` in the URL makes the page click every
node itself and write what it saw into <pre id="selftest-result"> (the browser
test reads it with `chromium --headless --dump-dom`); `#open=v3` opens one node.

Sources: versions keep theirs (vNNNN/kernel.py), attempts theirs by sha256 in the
lineage's sources/ folder. For older attempts (before sources/), a heuristic
attempt's source is rebuilt from its parent and its knob move when the rebuilt
text has the recorded sha256, otherwise the page says "source not kept".
Sources share most of their lines, so the page stores each distinct line once
(`lines`) and each source as runs into that table (`source_runs`); the script
rebuilds the text on load. The 269-candidate H100 lineage's page went from 13.9 MB
to 1.8 MB.
"""
from __future__ import annotations

import html
import json
from datetime import datetime
from pathlib import Path

from avo import cost_basis
from avo.atomic_files import atomic_write
from avo.candidate import source_sha256
from avo.lineage import Lineage, Version, comparable, model_cost, unified_diff
from avo.units import INTERPRETER_NOTE

TREE = "tree.html"
ASSETS = Path(__file__).resolve().parent / "assets"  # the page's template, style and script
RUN_GAP_S = 15 * 60  # attempts further apart than this belong to different runs


# ------------------------------------------------------------------- data
def tree_data(lineage: Lineage, journals: list[dict] | None = None) -> dict:
    """Nodes (versions + uncommitted attempts), runs with their cost, and a summary."""
    versions = lineage.versions()
    attempts = lineage.attempts()
    by_number = {v.number: v for v in versions}
    by_sha = {v.sha256: v for v in versions}
    nodes: list[dict] = []
    merged: dict[int, dict] = {}  # version number -> the attempt that committed it
    for i, a in enumerate(attempts):
        if a.get("committed") and a.get("version") in by_number and a.get("version") not in merged:
            merged[a["version"]] = {**a, "_index": i}

    basis, attempt_models = cost_basis.lineage_basis(lineage, versions, attempts)
    for v in versions:
        nodes.append({**_version_node(v, by_number, merged.get(v.number)), **_basis(basis.get(v.number))})
    for i, a in enumerate(attempts):
        if a.get("committed") and merged.get(a.get("version"), {}).get("_index") == i:
            continue  # the version node stands for it
        model = attempt_models.get(i)
        nodes.append({**_attempt_node(i, a, by_number, by_sha, lineage.source_of),
                      "model": model, "basis": f"model {model:.1f} H100 TFLOPS" if model is not None else ""})

    ids = {n["id"] for n in nodes}
    for n in nodes:  # a parent that is not in the lineage (lost, or another lineage): a root
        if n["parent"] is not None and n["parent"] not in ids:
            n["note"] = (n.get("note", "") + f" parent {n['parent']} is not in this lineage").strip()
            n["parent"] = None
    nodes.sort(key=lambda n: (n["order"], n["id"]))
    latest = versions[-1].result if versions else None
    best = _best(lineage, versions, basis, latest)
    runs = run_costs(nodes, journals or [])
    return {
        "title": "", "lineage": str(lineage.root),
        "generated": datetime.now().astimezone().isoformat(timespec="seconds"),
        "where": _where(latest) if latest else "",
        "interpreter_note": INTERPRETER_NOTE,
        "counts": {"versions": len(versions), "attempts": len(attempts), "nodes": len(nodes),
                   "committed": sum(1 for n in nodes if n["committed"]),
                   "failed": sum(1 for n in nodes if n["status"] != "ok"),
                   "source_kept": sum(1 for n in nodes if n["source"] is not None)},
        "best": {"id": f"v{best.number}", "geomean": best.geomean, "ratio_cudnn": best.result.geomean_ratio_cudnn,
                 "model": (basis.get(best.number) or {}).get("model_tflops")} if best else None,
        "commits_on": _commits_on(latest, basis),
        "nodes": nodes, "runs": runs,
    }


def _basis(b: dict | None) -> dict:
    """A version node's commit basis: its kind, figure text and modelled TFLOPS."""
    b = b or {}
    return {"basis": b.get("text", ""), "basis_kind": b.get("basis", ""), "model": b.get("model_tflops")}


def _best(lineage: Lineage, versions: list[Version], basis: dict[int, dict], latest) -> Version | None:
    """The best version by the lineage's commit basis: on an interpreter lineage the
    highest modelled figure (when there are any), else the highest geomean."""
    if latest is not None and latest.interpreter:
        pool = [v for v in versions if v.result.ok and comparable(v.result, latest)
                and (basis.get(v.number) or {}).get("model_tflops") is not None]
        if pool:
            return max(pool, key=lambda v: (basis[v.number]["model_tflops"], -v.number))
    return lineage.best()


def _commits_on(latest, basis: dict[int, dict]) -> str:
    if latest is None:
        return ""
    if latest.interpreter or latest.device != "cuda":
        modelled = any(b.get("model_tflops") is not None for b in basis.values())
        return cost_basis.CPU_BASIS if modelled else cost_basis.CPU_NO_BASIS
    return cost_basis.GPU_BASIS


def _where(r) -> str:
    gpu = r.env.get("gpu") or r.device
    return f"{gpu}, suite {r.suite or '?'}" + (f" ({INTERPRETER_NOTE})" if r.interpreter else "")


def _configs(tflops: dict, timings=None, measured: dict | None = None) -> list[dict]:
    base = {t.config: t for t in (timings or [])}
    rows = []
    for c, t in tflops.items():
        b = base.get(c)
        rows.append({"config": c, "tflops": t,
                     "cudnn": b.cudnn_tflops if b else None, "fa2": b.fa2_tflops if b else None,
                     "vs_parent": (measured or {}).get(c)})
    return rows


def _version_node(v: Version, by_number: dict[int, Version], attempt: dict | None) -> dict:
    r = v.result
    parent = by_number.get(v.parent) if v.parent is not None else None
    delta = (v.geomean / parent.geomean - 1) if parent and parent.geomean and comparable(r, parent.result) else None
    return {
        "id": f"v{v.number}", "kind": "version", "version": v.number,
        "parent": None if v.parent is None else f"v{v.parent}",
        "order": attempt["_index"] if attempt else -1 + v.number * 1e-3,
        "time": (attempt or {}).get("time") or v.created, "generation": v.generation,
        "operator": v.operator, "technique": v.technique.to_dict(), "status": r.status,
        "committed": True, "geomean": v.geomean, "delta": delta,
        "ratio_cudnn": r.geomean_ratio_cudnn, "ratio_fa2": r.geomean_ratio_fa2,
        "interpreter": r.interpreter, "suite": r.suite, "device": r.env.get("gpu") or r.device,
        "reason": (attempt or {}).get("reason", "") or v.note, "message": r.message,
        "sha256": v.sha256, "configs": _configs(r.tflops_by_config(), r.timings, v.technique.measured),
        "source": v.source, "source_note": f"v{v.number}/kernel.py",
        "diff": unified_diff(parent.source, v.source, f"v{parent.number}/kernel.py", f"v{v.number}/kernel.py")
        if parent else None,
        "log_tail": r.log_tail or (attempt or {}).get("log_tail") or "", "wall_s": r.wall_s or None,
        **{k: (attempt or {}).get(k) if (attempt or {}).get(k) is not None else c
           for k, c in model_cost(v.meta).items()},
    }


def _attempt_node(i: int, a: dict, by_number: dict[int, Version], by_sha: dict[str, Version],
                  source_of=lambda sha: None) -> dict:
    technique = a.get("technique") or {}
    parent_n = a.get("parent")
    parent = by_number.get(parent_n) if parent_n is not None else None
    source, note = _attempt_source(a, parent, by_sha, source_of)
    geomean = a.get("geomean_tflops") or 0.0
    delta = None
    if parent and parent.geomean and geomean and a.get("suite") == parent.result.suite \
            and a.get("device") == parent.result.device and a.get("interpreter") == parent.result.interpreter:
        delta = geomean / parent.geomean - 1
    parent_timings = parent.result.timings if parent else None
    return {
        "id": f"a{i}", "kind": "attempt", "version": None,
        "parent": None if parent_n is None else f"v{parent_n}", "order": i,
        "time": a.get("time", ""), "generation": a.get("generation", 0),
        "operator": a.get("operator", "?"), "technique": technique, "status": a.get("status", "?"),
        "committed": False, "geomean": geomean, "delta": delta,
        "ratio_cudnn": None, "ratio_fa2": None, "interpreter": bool(a.get("interpreter")),
        "suite": a.get("suite", ""), "device": a.get("gpu") or a.get("device", ""),
        "reason": a.get("reason", ""), "message": a.get("message", ""), "sha256": a.get("source_sha256", ""),
        "configs": _configs(a.get("tflops") or {}, parent_timings if delta is not None else None,
                            technique.get("measured")) if a.get("status") == "ok" else [],  # failed: no figures
        "source": source, "source_note": note,
        "diff": unified_diff(parent.source, source, f"v{parent.number}/kernel.py", f"attempt a{i}")
        if source is not None and parent else None,
        "log_tail": a.get("log_tail") or "", "wall_s": a.get("wall_s"),
        "tokens": a.get("tokens"), "dollars": a.get("dollars"),
        "baseline_note": "cuDNN / FA2 columns: the parent's run" if delta is not None else "",
    }


def _attempt_source(a: dict, parent: Version | None, by_sha: dict[str, Version],
                    source_of=lambda sha: None) -> tuple[str | None, str]:
    sha = a.get("source_sha256", "")
    if a.get("source"):  # a newer attempts log may keep it
        return a["source"], "kept in attempts.jsonl"
    if sha in by_sha:
        return by_sha[sha].source, f"same source as v{by_sha[sha].number} (sha256 match)"
    if parent is not None and a.get("operator") == "heuristic":
        from avo.operators.heuristic import parse_move, set_knobs

        move = parse_move((a.get("technique") or {}).get("name", ""))
        if move:
            try:
                rebuilt = set_knobs(parent.source, dict(move))
            except ValueError:
                rebuilt = None
            if rebuilt is not None and source_sha256(rebuilt) == sha:
                return rebuilt, f"rebuilt from v{parent.number} + the knob move (sha256 verified)"
    kept = source_of(sha) if sha else None
    if kept is not None:
        return kept, "kept by its sha256 beside the lineage (sources/)"
    return None, "source not kept (this attempt predates sources/: only its sha256 was recorded)"


def run_costs(nodes: list[dict], journals: list[dict]) -> list[dict]:
    """Runs as the attempts log shows them: consecutive candidates of one kind
    (an `avo evolve` run, or hand-made `avo lineage add` steps); a new run where
    the generation goes back or more than 15 minutes pass. Cost: GPU minutes
    from the recorded evaluation times, tokens and dollars where recorded (a
    heuristic-only run uses no model: 0 tokens, $0), and a journal's totals
    when one covers the run's time."""
    runs: list[dict] = []
    last_t = None
    for n in sorted(nodes, key=lambda n: n["order"]):
        kind = "hand-made (avo lineage add)" if n["operator"] in ("human", "seed") else "avo evolve"
        if n["operator"] == "seed":
            kind = "seed (avo lineage init / first evolve)"
        t = _time(n["time"])
        cur = runs[-1] if runs else None
        new = (cur is None or cur["kind"] != kind
               or (t is not None and last_t is not None and (t - last_t).total_seconds() > RUN_GAP_S)
               or (kind == "avo evolve" and n["generation"] < cur["last_generation"]))
        if new:
            cur = {"kind": kind, "nodes": [], "operators": set(), "first": n["time"], "last": n["time"],
                   "first_generation": n["generation"], "last_generation": n["generation"]}
            runs.append(cur)
        cur["nodes"].append(n)
        cur["operators"].add(n["operator"])
        cur["last"], cur["last_generation"] = n["time"], n["generation"]
        last_t = t or last_t
    out = []
    for k, r in enumerate(runs, 1):
        ns = r["nodes"]
        timed = [n["wall_s"] for n in ns if isinstance(n.get("wall_s"), (int, float))]
        tokens = [n["tokens"] for n in ns if isinstance(n.get("tokens"), (int, float))]
        dollars = [n["dollars"] for n in ns if isinstance(n.get("dollars"), (int, float))]
        no_model = r["operators"] <= {"heuristic", "seed", "human"}
        row = {
            "run": k, "kind": r["kind"], "operators": sorted(r["operators"]),
            "first": r["first"], "last": r["last"],
            "generations": f"{r['first_generation']}–{r['last_generation']}" if r["kind"] == "avo evolve" else "",
            "candidates": len(ns), "committed": sum(1 for n in ns if n["committed"]),
            "failed": sum(1 for n in ns if n["status"] != "ok"),
            "span_min": _span_min(r["first"], r["last"]),
            "gpu_min": sum(timed) / 60 if timed else None, "timed": len(timed),
            "tokens": sum(tokens) if tokens else (0 if no_model else None),
            "dollars": sum(dollars) if dollars else (0.0 if no_model else None),
            "cost_note": "no model (heuristic/hand-made): 0 tokens" if no_model and not tokens else "",
            "journal": None,
        }
        for j in journals:
            if _overlaps(j, r["first"], r["last"]):
                spent = j.get("spent", {})
                row["journal"] = {"run_id": j.get("run_id"), "status": j.get("status"),
                                  "generations": spent.get("generations"),
                                  "wall_min": (spent.get("wall_s") or 0) / 60,
                                  "gpu_min": (spent.get("gpu_s") or 0) / 60,
                                  "tokens": spent.get("tokens"), "dollars": spent.get("dollars")}
        out.append(row)
    return out


def _time(text: str):
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None


def _span_min(a: str, b: str) -> float | None:
    ta, tb = _time(a), _time(b)
    return (tb - ta).total_seconds() / 60 if ta and tb else None


def _overlaps(journal: dict, first: str, last: str) -> bool:
    js, je, rf, rl = (_time(journal.get("started", "")), _time(journal.get("updated", "")),
                      _time(first), _time(last))
    return bool(js and je and rf and rl and js <= rl and rf <= je)


def load_journals(paths: list[Path]) -> list[dict]:
    out = []
    for p in paths:
        try:
            j = json.loads(Path(p).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(j, dict):
            out.append(j)
    return out


# ------------------------------------------------------------------- page
def build_tree(lineage: Lineage, out_file: str | Path, title: str = "avo evolution tree",
               journals: list[dict] | None = None) -> Path:
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, render_tree_html(tree_data(lineage, journals), title))
    return out


def render_tree_html(data: dict, title: str) -> str:
    """The page: avo/assets/tree.html with its style, script and the data inlined."""
    data = {**pack_sources(data["nodes"]), **{k: v for k, v in data.items() if k != "nodes"}, "title": title}
    # inside <script>, "</" would end the element: escape it (JSON allows "\/")
    blob = json.dumps(data, allow_nan=False, default=str).replace("</", "<\\/").replace("<!--", "<\\!--")
    page, css, js = ((ASSETS / name).read_text(encoding="utf-8") for name in ("tree.html", "tree.css", "tree.js"))
    return (page.replace("%TITLE%", html.escape(title))
            .replace("%CSS%", css).replace("%JS%", js).replace("%DATA%", blob))


def pack_sources(nodes: list[dict]) -> dict:
    """{"lines": the distinct source lines, "nodes": the nodes with `source` replaced
    by `source_runs`, [[first, count], ...] into `lines`}. A line is keyed by its text
    and which repeat of that text it is within its source, so a source whose lines all
    came before in the same order is one run, and a one-line edit of it is three."""
    index: dict[tuple[str, int], int] = {}
    lines: list[str] = []
    packed = []
    for n in nodes:
        if n.get("source") is None:
            packed.append(n)
            continue
        seen: dict[str, int] = {}
        runs: list[list[int]] = []
        for line in n["source"].split("\n"):
            seen[line] = seen.get(line, 0) + 1
            key = (line, seen[line])
            if key not in index:
                index[key] = len(lines)
                lines.append(line)
            i = index[key]
            if runs and runs[-1][0] + runs[-1][1] == i:
                runs[-1][1] += 1
            else:
                runs.append([i, 1])
        packed.append({**{k: v for k, v in n.items() if k != "source"}, "source": None, "source_runs": runs})
    return {"lines": lines, "nodes": packed}


def unpack_source(lines: list[str], runs: list[list[int]]) -> str:
    """The text pack_sources packed (the page's script does the same on load)."""
    return "\n".join(lines[i] for first, count in runs for i in range(first, first + count))
