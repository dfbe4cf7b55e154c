"""The compiled kernel: TTGIR, PTX and SASS from Triton's cache, ptxas's verdict on
the PTX (registers, spills, warnings such as serialised wgmma), and bounded
excerpts for the model (the hot loop, or the lines around a searched word).

`collect(cache_dir, out_dir)` runs where the candidate ran (inside its sandbox):
it reads the kernels Triton compiled into a fresh cache, re-runs ptxas -v on each
PTX (Triton discards ptxas's log unless asked), disassembles each cubin, and
writes the texts plus an index `asm.json` to out_dir. Everything it writes is
the candidate's to forge, so the reader treats it as untrusted text.

    python -m avo.profiling.asm --compile kernel.py OUT   # no GPU: AOT for sm_90a via avo.compile_stats
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

KINDS = ("ttgir", "ptx", "sass", "ptxas")
MAX_TEXT = 4_000_000  # characters kept per text (a large kernel's SASS is ~1-3 MB)
# What marks the hot loop in each text: the tensor-core ops and the softmax's exponentials.
HOT = {
    "sass": re.compile(r"HGMMA|HMMA|MUFU\.EX2|WARPGROUP"),
    "ptx": re.compile(r"wgmma\.mma_async|mma\.sync|ex2\.approx"),
    "ttgir": re.compile(r"warp_group_dot|tt\.dot|math\.exp2"),
    "ptxas": re.compile(r"warning|Performance Loss|serializ|spill", re.I),
}
WARNING_RE = re.compile(r"warning|Performance Loss|serializ", re.I)


def _tool(name: str) -> str | None:
    """Triton's bundled copy of a CUDA tool, else the one on PATH."""
    try:
        import triton

        bundled = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name
        if bundled.is_file():
            return str(bundled)
    except Exception:  # noqa: BLE001 - no Triton: PATH only
        pass
    return shutil.which(name)


def _ptxas(arch: int) -> str | None:
    try:
        from triton.backends.nvidia.compiler import get_ptxas

        return get_ptxas(arch).path  # the ptxas Triton itself compiles with
    except Exception:  # noqa: BLE001
        return _tool("ptxas")


def _gpu_name(meta: dict) -> tuple[int, str]:
    arch = meta.get("target", {}).get("arch", 90) if isinstance(meta.get("target"), dict) else 90
    arch = int(arch) if str(arch).isdigit() else 90
    return arch, f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"  # what Triton targets (sm_90a on Hopper)


def ptxas_report(log: str) -> dict:
    stats: dict = {"warnings": [" ".join(ln.split()) for ln in log.splitlines() if WARNING_RE.search(ln)][:20]}
    if m := re.search(r"Used (\d+) registers", log):
        stats["registers"] = int(m.group(1))
    if m := re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log):
        stats["spill_stores"], stats["spill_loads"] = int(m.group(1)), int(m.group(2))
    return stats


def collect(cache_dir: Path, out_dir: Path) -> list[dict]:
    """One entry per compiled kernel in a Triton cache (written to out_dir/asm.json)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for meta_path in sorted(Path(cache_dir).glob("*/*.json")):
        if meta_path.name.startswith("__grp__"):
            continue
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        name = meta.get("name")
        if not name or not (meta_path.parent / f"{name}.ptx").is_file():
            continue
        tag = f"{name}-{str(meta.get('hash', meta_path.parent.name))[:8]}"
        arch, gpu = _gpu_name(meta)
        entry = {"name": name, "tag": tag, "arch": gpu, "num_warps": meta.get("num_warps"),
                 "num_stages": meta.get("num_stages"), "shared": meta.get("shared"), "files": {}}
        for kind in ("ttgir", "ptx"):
            src = meta_path.parent / f"{name}.{kind}"
            if src.is_file():
                shutil.copyfile(src, out_dir / f"{tag}.{kind}")
                entry["files"][kind] = f"{tag}.{kind}"
        log = _run([_ptxas(arch), "-v", "-lineinfo", f"--gpu-name={gpu}", str(meta_path.parent / f"{name}.ptx"),
                    "-o", str(out_dir / f"{tag}.cubin")])
        (out_dir / f"{tag}.ptxas").write_text(log)
        entry["files"]["ptxas"] = f"{tag}.ptxas"
        entry.update(ptxas_report(log))
        cubin = meta_path.parent / f"{name}.cubin"
        sass = _run([_tool("cuobjdump"), "-sass", str(cubin)]) if cubin.is_file() else ""
        if sass.strip():
            (out_dir / f"{tag}.sass").write_text(clean_sass(sass))
            entry["files"]["sass"] = f"{tag}.sass"
        (out_dir / f"{tag}.cubin").unlink(missing_ok=True)
        entries.append(entry)
    (out_dir / "asm.json").write_text(json.dumps(entries))
    return entries


_ENCODING = re.compile(r"\s*/\* 0x[0-9a-f]{16} \*/\s*$")


def clean_sass(text: str) -> str:
    """cuobjdump's SASS without the instruction encodings (half its lines, no use to a reader)."""
    rows = (_ENCODING.sub("", ln).rstrip() for ln in text.splitlines())
    return "\n".join(re.sub(r"^\s{8,}", "        ", ln) for ln in rows if ln.strip())


def _run(argv: list) -> str:
    if not argv[0]:
        return "tool not found"
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{Path(argv[0]).name} failed: {type(e).__name__}"
    return p.stdout + p.stderr


# ------------------------------------------------------------------ excerpts
def excerpt(text: str, kind: str, find: str | None = None, lines: int = 80) -> str:
    """At most `lines` numbered lines of `text`: around the first line containing
    `find` (plain text, case-insensitive), else the window with the most
    hot-loop instructions (HOT[kind]), else the start."""
    rows = text.splitlines()
    lines = max(10, min(int(lines), 200))
    if not rows:
        return "(empty)"
    if find:
        hits = [i for i, r in enumerate(rows) if find.lower() in r.lower()]
        if not hits:
            return f"{find!r} does not occur in the {kind} ({len(rows)} lines)"
        start = max(0, hits[0] - lines // 4)
        why = (f"{len(hits)} lines contain {find!r}, first at {hits[0] + 1}"
               + (f"; others at {', '.join(str(h + 1) for h in hits[1:8])}" if len(hits) > 1 else ""))
    else:
        hot = HOT.get(kind)
        marks = [1 if hot and hot.search(r) else 0 for r in rows]
        start, best, run = 0, -1, sum(marks[:lines])
        for i in range(0, max(1, len(rows) - lines + 1)):
            if i:
                run += (marks[i + lines - 1] if i + lines - 1 < len(rows) else 0) - marks[i - 1]
            if run > best:
                start, best = i, run
        why = (f"the densest {lines}-line window of {hot.pattern} ({best} such lines; {sum(marks)} in all)"
               if hot and best > 0 else "the start")
    end = min(len(rows), start + lines)
    body = "\n".join(f"{i + 1:6d}  {rows[i][:200]}" for i in range(start, end))
    return f"lines {start + 1}-{end} of {len(rows)}, {why}:\n{body}"


# ------------------------------------------------------------------ AOT (no GPU)
def _compile_main(kernel: str, out: str) -> int:
    """Compile `kernel` ahead of time (avo.compile_stats, meta tensors, sm_90a)
    into a fresh Triton cache under `out`, then collect. Run inside the sandbox."""
    cache = Path(out) / "triton-cache"
    cache.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TRITON_CACHE_DIR=str(cache))
    proc = subprocess.run([sys.executable, "-s", "-m", "avo.compile_stats", kernel], env=env,
                          capture_output=True, text=True, timeout=300)
    sys.stderr.write(proc.stderr[-4000:])
    entries = collect(cache, Path(out) / "asm")
    print(json.dumps({"kernels": len(entries), "stats": proc.stdout.strip().splitlines()[-1:] or [""]}))
    return 0 if entries else 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--compile":
        sys.exit(_compile_main(sys.argv[2], sys.argv[3]))
    print("usage: python -m avo.profiling.asm --compile KERNEL.py OUT_DIR", file=sys.stderr)
    sys.exit(2)
