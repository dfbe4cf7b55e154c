
(function(){
"use strict";
var D = JSON.parse(document.getElementById("avo-tree-data").textContent);
// sources come as runs [first, count] into one table of distinct lines (avo/tree.py pack_sources)
D.nodes.forEach(function(n){
  if (!n.source_runs) return;
  var out = [];
  n.source_runs.forEach(function(r){ for (var i = r[0]; i < r[0] + r[1]; i++) out.push(D.lines[i]); });
  n.source = out.join("\n"); delete n.source_runs;
});
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
// the CPU lineage commits on modelled H100 TFLOPS: its nodes show that figure (timings are informational)
function byModel(n){ return n.interpreter && n.model != null; }
function modelDelta(n){ var p = byId[n.parent]; return p && p.model ? n.model / p.model - 1 : null; }
function figure(n){ return byModel(n) ? "model " + n.model.toFixed(1) : (n.interpreter ? "interp. " : "") + tf(n.geomean, n.interpreter); }

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
    var dl = byModel(n) ? modelDelta(n) : n.delta;
    t.textContent = n.id + "  " + figure(n) + (dl != null ? " (" + pct(dl) + ")" : "");
    label = tname(n);
  }
  var lt = el("text", {x: X(n) + (n.committed ? 12 : 9), y: Y(n) + (n.committed ? 9 : 4), "class": "lab"}, g);
  var s = label.length > 34 ? label.slice(0, 33) + "…" : label;
  lt.textContent = s + (n.committed ? "" : "  " + (n.status === "ok" ? figure(n) : n.status));
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
    + (n.parent ? ", parent " + n.parent : "") + (n.basis ? "\ncommit basis: " + n.basis : "");
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
  if (n.basis) h.push("<p class='wrap'><b>commit basis:</b> " + esc(n.basis) + (n.interpreter ? " <span class='muted'>(interpreter timings are informational)</span>" : "") + "</p>");
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
             opened: 0, with_source: 0, sources: {}, source_not_kept: 0, with_diff: 0, errors: []};
  Array.prototype.forEach.call(document.querySelectorAll("#tree g.node"), function(g){
    var id = g.getAttribute("data-id");
    try {
      g.dispatchEvent(new MouseEvent("click", {bubbles: true}));
      if (panel.getAttribute("data-node") === id && panel.className === "open" && body.querySelector("h1")) res.opened++;
      else res.errors.push("panel did not open for " + id);
      var src = body.querySelector("pre.src");
      if (src) { res.with_source++; res.sources[id] = src.textContent; }
      if (body.textContent.indexOf("source not kept") >= 0) res.source_not_kept++;
      if (body.querySelector("pre.diff")) res.with_diff++;
    } catch (e) { res.errors.push(id + ": " + e); }
  });
  res.scroll_width = document.documentElement.scrollWidth; res.inner_width = window.innerWidth;
  var out = document.createElement("pre"); out.id = "selftest-result"; out.textContent = JSON.stringify(res);
  document.body.appendChild(out);
}
})();
