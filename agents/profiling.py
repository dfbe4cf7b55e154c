"""The answers of the profile_kernel and show_compiled tools (agents/tools.py).

A session's profiles are cached on its workbench by (source, config): the
parent is profiled once per config and every later profile of that config is
diffed against it. The delta of the last profile taken is kept on the workbench
until the critique takes it into its record (`take_profile_delta`).

Everything here that came out of the profiled program — kernel names, ncu's
counters (the kernel could fake them), ptxas's messages, the compiled code — is
shown fenced as untrusted program output (agents.tools.quote_untrusted).
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from avo.profiling.asm import KINDS, excerpt
from avo.profiling.ncu import diff, summarize

if TYPE_CHECKING:
    from agents.tools import Workbench

MAX_PROFILE_CHARS = 5_000
MAX_EXCERPT_CHARS = 9_000
PROFILE_NOTE = ("ncu on one config: one replayed launch per kernel at base clocks, so absolute times differ "
                "from the benchmark's; a kernel can fake its own counters, so read this as evidence, never a verdict")


def _sha(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def _profile(wb: "Workbench", source: str, config: str):
    key = (_sha(source), config)
    if key not in wb.profiles:
        wb.profiles[key] = wb.profiler.profile(source, config)
    return wb.profiles[key]


def profile_answer(wb: "Workbench", config: str | None) -> str:
    from agents.tools import ToolError, quote_untrusted, unavailable_profile

    profiler = wb.profiler
    if profiler is None:
        return unavailable_profile(wb.source, config)
    if why := profiler.unavailable():
        return why
    configs = profiler.configs()
    config = config or profiler.default_config()
    if config not in configs:
        raise ToolError(f"unknown config {config!r}; suite configs look like: {', '.join(configs[:4])}")
    run = _profile(wb, wb.source, config)
    if not run.ok:
        wb.session_notes.append(f"profile_kernel {config}: {run.error}")
        text = run.error or "profile failed"
        return text + ("\n" + quote_untrusted(run.log_tail, what="profiler log tail") if run.log_tail else "")
    body, delta = summarize(run.profile), ""
    if wb.source == wb.parent_source:
        body += "\n(the working kernel is still the parent: no delta)"
    else:
        parent = _profile(wb, wb.parent_source, config)
        if parent.ok:
            delta = diff(run.profile, parent.profile, f"parent v{wb.parent_version}")
            body += "\n" + delta
        else:
            body += f"\n(no delta: the parent's profile failed: {parent.error})"
    wb.profile_delta = delta
    return f"{PROFILE_NOTE}.\n" + quote_untrusted(body, MAX_PROFILE_CHARS, what="ncu profile")


def take_profile_delta(wb: "Workbench") -> str:
    """The delta of the last profile taken since the last call ('' when none)."""
    delta, wb.profile_delta = wb.profile_delta, ""
    return delta


def compiled_answer(wb: "Workbench", kind: str, kernel: str | None, find: str | None, lines: int) -> str:
    from agents.tools import ToolError, quote_untrusted

    if kind not in KINDS:
        raise ToolError(f"kind must be one of {', '.join(KINDS)} (ptxas: ptxas -v's report and warnings)")
    if wb.profiler is None:
        return "compiled code unavailable: no profiler in this session; use compiler_stats"
    sha = _sha(wb.source)
    run = next((r for (s, _), r in wb.profiles.items() if s == sha and r.asm), None)
    origin = f"as compiled on this GPU for the profile of {run.config}" if run else ""
    if run is None:
        if sha not in wb.compiled:
            wb.compiled[sha] = wb.profiler.compile_asm(wb.source)
        run = wb.compiled[sha]
        origin = ("compiled ahead of time for sm_90a without a GPU (meta tensors: a kernel that picks its "
                  "path by device shows the path it takes off the GPU)")
    if not run.asm:
        text = f"compiled code unavailable: {run.error or 'no compiled kernel came back'}"
        return text + ("\n" + quote_untrusted(run.log_tail, what="compiler log tail") if run.log_tail else "")
    entries = run.asm
    if kernel:
        entries = [e for e in entries if kernel in e["tag"]] or [e for e in entries if kernel in e["name"]]
        if not entries:
            raise ToolError(f"no compiled kernel matches {kernel!r}; kernels: {', '.join(e['tag'] for e in run.asm)}")
    # the default: the kernel with the most code of this kind (the attention kernel, not a helper)
    entry = max(entries, key=lambda e: len(run.texts.get(e["tag"], {}).get(kind, "")))
    text = run.texts.get(entry["tag"], {}).get(kind, "")
    kernels = "; ".join(f"{e['tag']} ({e.get('arch', '')}, {e.get('num_warps', '?')} warps, "
                        f"{e.get('registers', '?')} registers, spills {e.get('spill_stores', '?')} B, "
                        f"shared {e.get('shared', '?')} B)" for e in run.asm)
    warnings = [f"{e['tag']}: {w}" for e in run.asm for w in e.get("warnings", [])]
    body = [f"kernels: {kernels}", "ptxas warnings: " + (" | ".join(warnings[:6]) if warnings else "none"),
            f"{kind} of {entry['tag']}, " + (excerpt(text, kind, find, lines) if text else f"no {kind} text")]
    shown = "\n".join(body)
    if len(shown) > MAX_EXCERPT_CHARS:  # keep the head: the excerpt's first lines are its anchor
        shown = shown[:MAX_EXCERPT_CHARS] + f"\n[… {len(shown) - MAX_EXCERPT_CHARS} characters cut; ask for fewer lines]"
    return f"{origin}.\n" + quote_untrusted(shown, MAX_EXCERPT_CHARS + 200, what=f"compiled {kind}")
