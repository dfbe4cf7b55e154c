"""The report's page, lineage.html (avo.report writes it): the picture inlined, the
parent tree, every version with the figure its commit stood on, per-configuration
figures and every attempt with the commit rule's words."""
from __future__ import annotations

import base64
import html
from datetime import datetime, timezone

from avo import units
from avo.lineage import Version
from avo.report import _delta, report_metrics

_CSS = """*{box-sizing:border-box}body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:100%}
table{border-collapse:collapse;font-size:12px;width:100%}td,th{border:1px solid #ccc;padding:3px 6px;
text-align:right;vertical-align:top;white-space:nowrap}th{white-space:nowrap}td.l,th.l{text-align:left}
td.l{white-space:normal;overflow-wrap:anywhere;min-width:6em}td.l.nowrap{white-space:nowrap;font-size:11px}tr.best{background:#eef7ee}
img{max-width:100%;height:auto}ul.tree{font-size:13px}.muted{color:#777}.scroll{overflow-x:auto;max-width:100%}
.scroll table{width:auto}td.nowrap{white-space:nowrap}p.basis{background:#f3f7fb;border-left:3px solid #1f77b4;
padding:4px 8px}"""


def render_html(versions: list[Version], plotted: list[Version], attempts: list[dict], png: bytes,
                title: str, unit: str, scale: float, basis: dict[int, dict] | None = None) -> str:
    """`basis`: version number -> avo.cost_basis.summary (what its commit stood on)."""
    e = html.escape
    basis = basis or {}
    by_number = {v.number: v for v in versions}
    configs = list(dict.fromkeys(c for v in versions for c in v.result.tflops_by_config()))
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    m = report_metrics(versions, plotted, attempts, basis)
    best = by_number[m["best_version"]]
    interp = best.result.interpreter
    if m["best_modelled_tflops"] is not None:  # CPU: the model decides; timings are informational
        headline = (f"best v{best.number} at {m['best_modelled_tflops']:.1f} modelled H100 TFLOPS"
                    + (f", {m['modelled_speedup_vs_seed']:.3f}× the seed's" if m["modelled_speedup_vs_seed"] else "")
                    + f" (interpreter geomean {units.tflops(best.geomean, interp)} TFLOPS, informational)")
    else:
        headline = (f"best v{best.number} at {units.tflops(best.geomean, interp)} {e(unit)} geomean"
                    f"{_x(m['best_ratio_cudnn'], ' cuDNN')}{_x(m['best_ratio_fa2'], ' FA2')}; {e(_speedup(m))}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width,initial-scale=1'><title>{e(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1>",
             f"<p class='muted'>generated {now}; {len(versions)} versions, {len(attempts)} attempts "
             f"({m['committed_attempts']} committed); {headline}. "
             f"Every candidate, with source and diffs: <a href='tree.html'>tree.html</a>.</p>",
             f"<p class='basis'><b>commits on:</b> {e(m['commits_on'])}. The <i>commit basis</i> column says "
             f"what each version's commit stood on.</p>",
             f"<img alt='lineage plot' src='data:image/png;base64,{base64.b64encode(png).decode()}'>",
             "<h2>Parent tree</h2>", _tree_html(versions, by_number, basis), "<h2>Versions</h2><table><tr>"]
    head = ["version", "parent", "operator", "technique", "expected", "commit basis", "measured vs parent",
            f"geomean {unit}" + (", informational" if interp else ""), "× cuDNN", "× FA2", "device", "created", "note"]
    left = {"operator", "technique", "expected", "commit basis", "measured vs parent", "device", "created", "note"}
    parts.append("".join(f"<th class='{'l' if h in left else ''}'>{e(h)}</th>" for h in head) + "</tr>")
    for v in versions:
        r = v.result
        measured = "<br>".join(f"{e(c)}: {(x - 1) * 100:+.1f}%" for c, x in v.technique.measured.items())
        cells = [(e(f"v{v.number}"), "nowrap"), (e("" if v.parent is None else f"v{v.parent}"), "nowrap"),
                 (e(v.operator), "l"), (e(v.technique.name), "l"), (e(v.technique.expected), "l"),
                 (e((basis.get(v.number) or {}).get("text", "")), "l"), (measured, "l nowrap"), (e(units.tflops(v.geomean, r.interpreter)), "nowrap"),
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


def _tree_html(versions: list[Version], by_number: dict[int, Version], basis: dict[int, dict]) -> str:
    children: dict[int | None, list[Version]] = {}
    for v in versions:
        key = v.parent if v.parent in by_number else None
        children.setdefault(key, []).append(v)

    def node(v: Version) -> str:
        why = f" — <span class='muted'>{html.escape(v.technique.why)}</span>" if v.technique.why else ""
        kids = "".join(node(c) for c in children.get(v.number, []))
        text = (basis.get(v.number) or {}).get("text")
        delta = "" if v.result.interpreter else _delta(v, by_number)  # interpreter deltas are noise
        return (f"<li><b>v{v.number}</b> [{html.escape(v.operator)}] {html.escape(v.technique.name)} "
                f"{delta}" + (f" · <i>{html.escape(text)}</i>" if text else "") + why
                + (f"<ul>{kids}</ul>" if kids else "") + "</li>")

    return "<ul class='tree'>" + "".join(node(v) for v in children.get(None, [])) + "</ul>"


def _ratio(x: float | None) -> str:
    return f"{x:.3f}" if x else ""


def _x(x: float | None, name: str) -> str:
    return f", {x:.2f}×{name}" if x else ""


def _speedup(m: dict) -> str:
    return f"{m['speedup_vs_seed']:.3f}× the seed" if m.get("speedup_vs_seed") else ""
