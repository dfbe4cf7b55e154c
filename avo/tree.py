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

Sources: versions keep theirs (vNNNN/kernel.py). Attempts keep only a sha256; a
heuristic attempt's source is rebuilt from its parent and its knob move when the
rebuilt text has the recorded sha256, otherwise the page says "source not kept".
"""
from __future__ import annotations

import html
import json
from datetime import datetime
from pathlib import Path

from avo.atomic_files import atomic_write
from avo.candidate import source_sha256
from avo.lineage import Lineage, Version, comparable, model_cost, unified_diff
from avo.units import INTERPRETER_NOTE

TREE = "tree.html"
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

    for v in versions:
        nodes.append(_version_node(v, by_number, merged.get(v.number)))
    for i, a in enumerate(attempts):
        if a.get("committed") and merged.get(a.get("version"), {}).get("_index") == i:
            continue  # the version node stands for it
        nodes.append(_attempt_node(i, a, by_number, by_sha))

    ids = {n["id"] for n in nodes}
    for n in nodes:  # a parent that is not in the lineage (lost, or another lineage): a root
        if n["parent"] is not None and n["parent"] not in ids:
            n["note"] = (n.get("note", "") + f" parent {n['parent']} is not in this lineage").strip()
            n["parent"] = None
    nodes.sort(key=lambda n: (n["order"], n["id"]))
    best = lineage.best()
    latest = versions[-1].result if versions else None
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
        "best": {"id": f"v{best.number}", "geomean": best.geomean,
                 "ratio_cudnn": best.result.geomean_ratio_cudnn} if best else None,
        "nodes": nodes, "runs": runs,
    }


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


def _attempt_node(i: int, a: dict, by_number: dict[int, Version], by_sha: dict[str, Version]) -> dict:
    technique = a.get("technique") or {}
    parent_n = a.get("parent")
    parent = by_number.get(parent_n) if parent_n is not None else None
    source, note = _attempt_source(a, parent, by_sha)
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


def _attempt_source(a: dict, parent: Version | None, by_sha: dict[str, Version]) -> tuple[str | None, str]:
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
    return None, "source not kept (the attempts log keeps only its sha256)"


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
    data = {**data, "title": title}
    # inside <script>, "</" would end the element: escape it (JSON allows "\/")
    blob = json.dumps(data, allow_nan=False, default=str).replace("</", "<\\/").replace("<!--", "<\\!--")
    return (_PAGE.replace("%TITLE%", html.escape(title))
            .replace("%CSS%", _CSS).replace("%JS%", _JS).replace("%DATA%", blob))


_CSS = r"""
*{box-sizing:border-box}
body{margin:0;font:13px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;background:#fafafa}
header{padding:12px 18px;background:#fff;border-bottom:1px solid #ddd}
h1{font-size:18px;margin:0 0 4px}h2{font-size:14px;margin:14px 0 6px}
.muted{color:#666}.small{font-size:12px}
main{display:flex;align-items:flex-start;width:100%}
#left{flex:1 1 auto;min-width:0;padding:8px 18px}
#treebox{overflow:auto;background:#fff;border:1px solid #ddd;border-radius:4px;max-height:78vh}
#panel{flex:0 0 46%;max-width:46%;height:100vh;position:sticky;top:0;overflow:auto;background:#fff;
 border-left:1px solid #ccc;padding:10px 14px;display:none}
#panel.open{display:block}
#panel h2{margin-top:10px}
#close{float:right;cursor:pointer;border:1px solid #bbb;background:#f4f4f4;border-radius:3px;padding:1px 8px}
pre{white-space:pre;overflow:auto;background:#f6f8fa;border:1px solid #e1e4e8;padding:6px;font:11px/1.35 ui-monospace,Menlo,Consolas,monospace;max-height:420px;margin:0}
pre .add{background:#e6ffed;display:block}pre .del{background:#ffeef0;display:block}pre .hunk{color:#6f42c1;display:block}
table{border-collapse:collapse;font-size:12px;max-width:100%}
td,th{border:1px solid #ddd;padding:2px 6px;text-align:right;vertical-align:top}
td.l,th.l{text-align:left}
.legend span{display:inline-block;margin-right:12px;white-space:nowrap}
.dot{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:4px;vertical-align:-1px}
g.node{cursor:pointer}g.node:hover circle{stroke:#000;stroke-width:2}
g.node.sel circle{stroke:#1565c0;stroke-width:3}
text.lab,text.ver{paint-order:stroke;stroke:#fff;stroke-width:4px;stroke-linejoin:round}
text.lab{font-size:11px;fill:#333}text.ver{font-size:12px;font-weight:600;fill:#111}
#tip{position:fixed;pointer-events:none;background:#222;color:#fff;padding:5px 8px;border-radius:4px;
 font-size:12px;max-width:420px;display:none;z-index:5}
.runs td{white-space:nowrap}
.wrap{overflow-wrap:anywhere}
"""

_JS = r"""
(function(){
"use strict";
var D = JSON.parse(document.getElementById("avo-tree-data").textContent);
var COLORS = {ok:"#90a4ae", committed:"#2e7d32", incorrect:"#e53935", compile_error:"#fb8c00",
              timeout:"#8e24aa", crashed:"#6d4c41", rejected:"#212121"};
var byId = {}, kids = {};
D.nodes.forEach(function(n){ byId[n.id] = n; kids[n.id] = []; });
var roots = [];
D.nodes.forEach(function(n){ if (n.parent && byId[n.parent]) kids[n.parent].push(n); else roots.push(n); });
function esc(s){ return String(s == null ? "" : s).replace(/[&<>"']/g, function(c){
  return {"&":"&amp;","<":"&lt;",">":"&gt;","\"":"&quot;","'":"&#39;"}[c]; }); }
function tf(x, interp){ if (x == null || x === 0) return x === 0 ? "0" : "-";
  if (interp || Math.abs(x) < 0.01) return Number(x).toPrecision(4);
  return Math.abs(x) >= 100 ? x.toFixed(1) : Number(x).toPrecision(4); }
function pct(x){ return x == null ? "" : (x >= 0 ? "+" : "") + (x * 100).toFixed(1) + "%"; }
function color(n){ return n.committed ? COLORS.committed : (COLORS[n.status] || "#999"); }
function tname(n){ return (n.technique && n.technique.name) || ""; }
function unit(n){ return n.interpreter ? "TFLOPS (interpreter)" : "TFLOPS"; }
function score(n){ return n.status === "ok" ? tf(n.geomean, n.interpreter) + " " + unit(n) : n.status; }

// ---- layout: root on the left, depth to the right, leaves stacked
var DX = 230, DY = 24, PADX = 20, PADY = 24, row = 0, maxDepth = 0;
function place(n, depth){
  n._d = depth; maxDepth = Math.max(maxDepth, depth);
  var ch = kids[n.id];
  if (!ch.length){ n._y = row++; return; }
  ch.forEach(function(c){ place(c, depth + 1); });
  n._y = (ch[0]._y + ch[ch.length - 1]._y) / 2;
}
roots.forEach(function(r){ place(r, 0); row += 0.5; });
var W = PADX * 2 + (maxDepth + 1) * DX + 260, H = PADY * 2 + Math.max(row, 1) * DY;
var NS = "http://www.w3.org/2000/svg";
function el(tag, attrs, parent){ var e = document.createElementNS(NS, tag);
  for (var k in attrs) e.setAttribute(k, attrs[k]); if (parent) parent.appendChild(e); return e; }
var svg = el("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H, id: "tree", role: "img"});
document.getElementById("treebox").appendChild(svg);
function X(n){ return PADX + n._d * DX + 8; } function Y(n){ return PADY + n._y * DY; }
var edges = el("g", {"class": "edges"}, svg), layer = el("g", {"class": "nodes"}, svg);
D.nodes.forEach(function(n){
  if (!n.parent || !byId[n.parent]) return;
  var p = byId[n.parent], mx = X(p) + DX * 0.45;
  el("path", {d: "M" + X(p) + "," + Y(p) + " C" + mx + "," + Y(p) + " " + mx + "," + Y(n) + " " + X(n) + "," + Y(n),
              fill: "none", stroke: n.committed ? "#2e7d32" : "#c5ccd0", "stroke-width": n.committed ? 2 : 1}, edges);
});
var tip = document.getElementById("tip");
D.nodes.forEach(function(n){
  var g = el("g", {"class": "node" + (n.committed ? " committed" : ""), "data-id": n.id, tabindex: 0}, layer);
  var r = n.committed ? 8 : 5;
  el("circle", {cx: X(n), cy: Y(n), r: r, fill: color(n), stroke: n.committed ? "#1b5e20" : "#fff",
                "stroke-width": n.committed ? 2 : 1}, g);
  var label = n.committed ? "" : tname(n);
  if (n.committed){
    var t = el("text", {x: X(n) + 12, y: Y(n) - 6, "class": "ver"}, g);
    t.textContent = n.id + "  " + tf(n.geomean, n.interpreter) + (n.delta != null ? " (" + pct(n.delta) + ")" : "");
    label = tname(n);
  }
  var lt = el("text", {x: X(n) + (n.committed ? 12 : 9), y: Y(n) + (n.committed ? 9 : 4), "class": "lab"}, g);
  var s = label.length > 34 ? label.slice(0, 33) + "…" : label;
  lt.textContent = s + (n.committed ? "" : "  " + (n.status === "ok" ? tf(n.geomean, n.interpreter) : n.status));
  if (n.committed && t.getBBox){  // a card behind a version's label: edges leaving it pass underneath
    var b1 = t.getBBox(), b2 = lt.getBBox(), x0 = Math.min(b1.x, b2.x) - 3, y0 = b1.y - 1;
    var x1 = Math.max(b1.x + b1.width, b2.x + b2.width) + 3, y1 = b2.y + b2.height + 1;
    g.insertBefore(el("rect", {x: x0, y: y0, width: x1 - x0, height: y1 - y0, rx: 3, fill: "#fff",
                               "fill-opacity": 0.9, stroke: "#dfe6e9"}), t);
  }
  g.setAttribute("aria-label", hoverText(n).replace(/\n/g, "; "));  // the tooltip below is drawn by hand
  g.addEventListener("mousemove", function(ev){ tip.style.display = "block"; tip.innerHTML = esc(hoverText(n)).replace(/\n/g, "<br>");
    tip.style.left = Math.min(ev.clientX + 14, window.innerWidth - 430) + "px"; tip.style.top = (ev.clientY + 12) + "px"; });
  g.addEventListener("mouseleave", function(){ tip.style.display = "none"; });
  g.addEventListener("click", function(){ open(n.id); });
  g.addEventListener("keydown", function(ev){ if (ev.key === "Enter") open(n.id); });
});
function hoverText(n){
  return (n.committed ? n.id + " (committed)" : "attempt " + n.id + " (not committed)") + "\n"
    + "status: " + n.status + "  score: " + score(n) + (n.delta != null ? " (" + pct(n.delta) + " vs parent)" : "") + "\n"
    + "technique: " + tname(n) + "\n" + "operator: " + n.operator + ", generation " + n.generation
    + (n.parent ? ", parent " + n.parent : "");
}

// ---- the side panel
var panel = document.getElementById("panel"), body = document.getElementById("panelbody");
document.getElementById("close").addEventListener("click", function(){ panel.className = ""; panel.removeAttribute("data-node"); });
function diffHtml(d){
  return d.split("\n").map(function(l){ var c = l.indexOf("+++") === 0 || l.indexOf("---") === 0 ? "" :
    l[0] === "+" ? "add" : l[0] === "-" ? "del" : l.indexOf("@@") === 0 ? "hunk" : "";
    return c ? "<span class='" + c + "'>" + esc(l) + "</span>" : esc(l) + "\n"; }).join("");
}
function open(id){
  var n = byId[id]; if (!n) return;
  var sel = document.querySelector("g.node.sel"); if (sel) sel.setAttribute("class", sel.getAttribute("class").replace(" sel", ""));
  var g = document.querySelector("g.node[data-id='" + id + "']"); if (g) g.setAttribute("class", g.getAttribute("class") + " sel");
  var t = n.technique || {}, h = [];
  h.push("<h1 class='wrap'>" + esc(n.committed ? n.id : "attempt " + n.id) + " — " + esc(tname(n)) + "</h1>");
  h.push("<p>" + (n.committed ? "<b style='color:#2e7d32'>committed</b>" : "<b>not committed</b>")
    + " · status <b style='color:" + color(n) + "'>" + esc(n.status) + "</b> · score <b>" + esc(score(n)) + "</b>"
    + (n.delta != null ? " (" + pct(n.delta) + " vs " + esc(n.parent) + ")" : "")
    + (n.ratio_cudnn ? " · " + n.ratio_cudnn.toFixed(3) + "× cuDNN" : "") + (n.ratio_fa2 ? " · " + n.ratio_fa2.toFixed(3) + "× FA2" : "") + "</p>");
  h.push("<p class='small muted wrap'>operator " + esc(n.operator) + " · generation " + esc(n.generation) + " · parent "
    + esc(n.parent || "-") + " · " + esc(n.device) + ", suite " + esc(n.suite) + (n.interpreter ? " (" + esc(D.interpreter_note) + ")" : "")
    + " · " + esc(n.time) + (n.wall_s ? " · evaluated in " + n.wall_s.toFixed(1) + " s" : "") + "<br>sha256 " + esc(n.sha256) + "</p>");
  if (n.reason || n.message || n.note) h.push("<p class='wrap'><b>decision:</b> " + esc(n.reason) + (n.message ? "<br><b>message:</b> " + esc(n.message) : "") + (n.note ? "<br>" + esc(n.note) : "") + "</p>");
  if (t.expected) h.push("<p class='wrap'><b>expected:</b> " + esc(t.expected) + "</p>");
  if (t.why) h.push("<p class='wrap'><b>why:</b> " + esc(t.why) + "</p>");
  h.push("<h2>Per configuration</h2>");
  if (n.configs && n.configs.length){
    h.push("<table><tr><th class='l'>config</th><th>" + unit(n) + "</th><th>cuDNN</th><th>FA2</th><th>× cuDNN</th><th>vs parent</th></tr>");
    n.configs.forEach(function(c){ h.push("<tr><td class='l'>" + esc(c.config) + "</td><td>" + tf(c.tflops, n.interpreter) + "</td><td>"
      + tf(c.cudnn) + "</td><td>" + tf(c.fa2) + "</td><td>" + (c.cudnn && c.tflops ? (c.tflops / c.cudnn).toFixed(3) : "") + "</td><td>"
      + (c.vs_parent ? pct(c.vs_parent - 1) : "") + "</td></tr>"); });
    h.push("</table>" + (n.baseline_note ? "<p class='small muted'>" + esc(n.baseline_note) + "</p>" : ""));
  } else h.push("<p class='muted'>no timings (" + esc(n.status) + ")</p>");
  h.push("<h2>Diff against " + esc(n.parent || "nothing (a root)") + "</h2>");
  h.push(n.diff != null ? (n.diff ? "<pre class='diff'>" + diffHtml(n.diff) + "</pre>" : "<p class='muted'>same source as the parent</p>")
    : "<p class='muted nosrc'>" + (n.source == null ? "source not kept, so no diff" : "no parent") + "</p>");
  h.push("<h2>Source</h2>");
  h.push(n.source != null ? "<p class='small muted'>" + esc(n.source_note) + "</p><pre class='src'>" + esc(n.source) + "</pre>"
    : "<p class='muted nosrc'>" + esc(n.source_note || "source not kept") + "</p>");
  h.push("<h2>Harness log (end)</h2>");
  h.push(n.log_tail ? "<pre class='log'>" + esc(n.log_tail) + "</pre>" : "<p class='muted'>no log kept for this candidate</p>");
  body.innerHTML = h.join("");
  panel.className = "open"; panel.setAttribute("data-node", id); panel.scrollTop = 0;
}
window.avoTreeOpen = open;

// ---- #open=ID opens that node's panel (a link to one candidate)
var m = /^#open=(.+)$/.exec(location.hash);
if (m) open(decodeURIComponent(m[1]));

// ---- self-test: #selftest clicks every node and reports what the panel showed
if (location.hash === "#selftest"){
  var res = {nodes: document.querySelectorAll("#tree g.node").length, data_nodes: D.nodes.length,
             committed_marked: document.querySelectorAll("#tree g.node.committed").length,
             opened: 0, with_source: 0, source_not_kept: 0, with_diff: 0, errors: []};
  Array.prototype.forEach.call(document.querySelectorAll("#tree g.node"), function(g){
    var id = g.getAttribute("data-id");
    try {
      g.dispatchEvent(new MouseEvent("click", {bubbles: true}));
      if (panel.getAttribute("data-node") === id && panel.className === "open" && body.querySelector("h1")) res.opened++;
      else res.errors.push("panel did not open for " + id);
      if (body.querySelector("pre.src")) res.with_source++;
      if (body.textContent.indexOf("source not kept") >= 0) res.source_not_kept++;
      if (body.querySelector("pre.diff")) res.with_diff++;
    } catch (e) { res.errors.push(id + ": " + e); }
  });
  res.scroll_width = document.documentElement.scrollWidth; res.inner_width = window.innerWidth;
  var out = document.createElement("pre"); out.id = "selftest-result"; out.textContent = JSON.stringify(res);
  document.body.appendChild(out);
}
})();
"""

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>%TITLE%</title><style>%CSS%</style></head>
<body>
<header><h1>%TITLE%</h1><div id="summary" class="muted"></div></header>
<main>
<div id="left">
<div class="legend small" id="legend"></div>
<div id="treebox"></div>
<h2>Runs and their cost</h2>
<div id="runs"></div>
<p class="small muted">Hover a node for its status, score and technique; click it for the source, the diff against its
parent, per-configuration figures and the harness log. Big ringed nodes are committed versions; small ones are
candidates the commit rule turned down or that failed.</p>
</div>
<aside id="panel"><button id="close" type="button">close ✕</button><div id="panelbody"></div></aside>
</main>
<div id="tip"></div>
<script type="application/json" id="avo-tree-data">%DATA%</script>
<script>
(function(){
var D = JSON.parse(document.getElementById("avo-tree-data").textContent), c = D.counts;
function esc(s){ return String(s == null ? "" : s).replace(/[&<>]/g, function(x){ return {"&":"&amp;","<":"&lt;",">":"&gt;"}[x]; }); }
document.getElementById("summary").innerHTML = esc(D.lineage) + " · " + esc(D.where) + "<br>"
  + c.nodes + " candidates: " + c.committed + " committed versions, " + (c.nodes - c.committed) + " not committed ("
  + c.failed + " failed) · " + c.attempts + " lines in attempts.jsonl · source shown for " + c.source_kept + " of " + c.nodes
  + (D.best ? " · best " + esc(D.best.id) + " at " + (D.best.geomean >= 100 ? D.best.geomean.toFixed(1) : D.best.geomean.toPrecision(4)) + " TFLOPS" + (D.best.ratio_cudnn ? ", " + D.best.ratio_cudnn.toFixed(3) + "× cuDNN" : "") : "")
  + " · generated " + esc(D.generated);
var L = [["committed", "#2e7d32"], ["ok, not committed", "#90a4ae"], ["incorrect", "#e53935"], ["compile_error", "#fb8c00"],
         ["timeout", "#8e24aa"], ["crashed", "#6d4c41"], ["rejected", "#212121"]];
document.getElementById("legend").innerHTML = L.map(function(x){ return "<span><i class='dot' style='background:" + x[1] + "'></i>" + x[0] + "</span>"; }).join("");
function n(x, d){ return x == null ? "not recorded" : Number(x).toFixed(d); }
var h = ["<div style='overflow-x:auto'><table class='runs'><tr><th>run</th><th class='l'>kind</th><th class='l'>first → last record</th><th>generations</th><th>candidates</th>"
  + "<th>committed</th><th>failed</th><th>span min</th><th>GPU-min</th><th>tokens</th><th>dollars</th><th class='l'>journal</th></tr>"];
D.runs.forEach(function(r){
  var j = r.journal ? esc(r.journal.run_id) + ": " + r.journal.generations + " gen, " + r.journal.gpu_min.toFixed(1) + " GPU-min, "
    + r.journal.tokens + " tokens, $" + Number(r.journal.dollars || 0).toFixed(2) : "";
  h.push("<tr><td>" + r.run + "</td><td class='l'>" + esc(r.kind) + "</td><td class='l'>" + esc(r.first.slice(0, 19)) + " → " + esc(r.last.slice(11, 19))
    + "</td><td>" + esc(r.generations) + "</td><td>" + r.candidates + "</td><td>" + r.committed + "</td><td>" + r.failed + "</td><td>" + n(r.span_min, 1)
    + "</td><td>" + (r.gpu_min == null ? "not recorded" : r.gpu_min.toFixed(1) + (r.timed < r.candidates ? " (" + r.timed + " of " + r.candidates + " timed)" : ""))
    + "</td><td>" + (r.tokens == null ? "not recorded" : r.tokens) + "</td><td>" + (r.dollars == null ? "not recorded" : "$" + r.dollars.toFixed(2))
    + "</td><td class='l'>" + j + "</td></tr>");
});
h.push("</table></div><p class='small muted'>Runs are read from the attempts log (consecutive candidates of one kind; a new run after a 15-minute gap). "
  + "GPU-min sums the recorded evaluation times; older attempts logs did not record them. A heuristic or hand-made run uses no model: 0 tokens, $0.</p>");
document.getElementById("runs").innerHTML = h.join("");
})();
</script>
<script>%JS%</script>
</body></html>
"""
