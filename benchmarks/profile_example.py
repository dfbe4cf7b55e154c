"""The profile example (issue 17 item 2): ncu on the CUDA lineage's best kernel and its parent.

    bash benchmarks/gpu_profile.sh            # on the GPU machine; writes to $OUT
    python benchmarks/profile_example.py --out DIR [--config NAME] [--timeout S]

Profiles kernel_src/attention/lineage/cuda/v0004 (the Gluon warp-specialised
kernel) and its parent v0003 on one AVO-suite config with the same code the
agent's profile_kernel tool runs (avo.profiling), and writes at most 8 flat files:

    v0004.ncu.csv, v0003.ncu.csv          ncu's raw CSV (--csv --page raw --print-units base)
    v0004.profile.json, v0003.profile.json  the parsed Profile records
    v0004.asm.txt, v0003.asm.txt          ptxas -v report and warnings, TTGIR/PTX/SASS hot-loop excerpts
    summary.txt                            both summaries, the delta, and the tool's answer as the agent reads it
    run.log                                versions, timings, sandbox level, each run's log tail

Each kernel is profiled first in the harness's sandbox, as the agent's tool does;
if that fails (e.g. ERR_NVGPUCTRPERM: the driver restricts counters to admin
users and the box runs as uid 65534) it is profiled again outside the box, which
is fine here only because both kernels are committed lineage versions, and
run.log says so. One kernel failing still leaves the other's files.
"""
from __future__ import annotations

import argparse
import hashlib
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from avo.profiling import Profiler, diff, find_ncu, summarize, unavailable  # noqa: E402
from avo.profiling.asm import excerpt  # noqa: E402

LINEAGE = REPO / "kernel_src" / "attention" / "lineage" / "cuda"
KERNELS = (("v0004", LINEAGE / "v0004" / "kernel.py"), ("v0003", LINEAGE / "v0003" / "kernel.py"))
CONFIG = "mha b4 s8192 d128 causal bf16"
EXCERPT_LINES = {"ttgir": 60, "ptx": 60, "sass": 80}


class Log:
    def __init__(self, path: Path):
        self.path, self.lines, self.t0 = path, [], time.time()

    def __call__(self, text: str) -> None:
        line = f"[{time.time() - self.t0:6.1f} s] {text}"
        print(line, flush=True)
        self.lines.append(line)
        self.path.write_text("\n".join(self.lines) + "\n")


def versions(log: Log) -> None:
    ncu = find_ncu()
    log(f"python {platform.python_version()}, ncu at {ncu}")
    for argv in ([ncu, "--version"] if ncu else None,
                 ["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm", "--format=csv,noheader"]):
        if argv:
            try:
                out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
                log(f"{Path(argv[0]).name}: {out.splitlines()[-1] if out else '(no output)'}")
            except (OSError, subprocess.TimeoutExpired) as e:
                log(f"{argv[0]}: {type(e).__name__}")
    try:
        import torch
        import triton

        log(f"torch {torch.__version__}, triton {triton.__version__}, "
            f"GPU {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}")
    except Exception as e:  # noqa: BLE001
        log(f"torch/triton: {type(e).__name__}: {e}")
    from avo.harness import sandbox

    box = sandbox.detect()
    log(f"sandbox level {box.level}" + (f" ({box.reason})" if box.reason else ""))


def profile_one(label: str, source: str, config: str, timeout: float, state: dict, log: Log):
    """The run of one kernel: in the sandbox first (unless an earlier kernel showed
    it cannot work here), then outside it for these trusted kernels. Each run's
    limit is cut to what is left of the script's deadline."""
    def limit() -> float:
        return max(20.0, min(timeout, state["deadline"] - time.time() - 15.0))

    run = None
    if state["sandboxed"]:
        t = time.time()
        run = Profiler(timeout_s=limit()).profile(source, config)
        log(f"{label}: sandboxed ({run.box}) profile {'ok' if run.ok else 'FAILED: ' + run.error} "
            f"in {time.time() - t:.0f} s")
        if not run.ok:
            log(f"{label}: sandboxed log tail:\n{run.log_tail[-2500:]}")
            state["sandboxed"] = False
            state["why"] = run.error
    if run is None or not run.ok:
        t = time.time()
        run = Profiler(timeout_s=limit(), sandboxed=False).profile(source, config)
        log(f"{label}: unsandboxed profile (trusted lineage kernel) {'ok' if run.ok else 'FAILED: ' + run.error} "
            f"in {time.time() - t:.0f} s")
        if not run.ok:
            log(f"{label}: log tail:\n{run.log_tail[-2500:]}")
    return run


def asm_text(label: str, run) -> str:
    if not run.asm:
        return f"{label}: no compiled kernel came back\n"
    parts = []
    for entry in run.asm:
        texts = run.texts.get(entry["tag"], {})
        parts.append(f"== {entry['tag']} ({entry.get('arch')}, {entry.get('num_warps')} warps, "
                     f"{entry.get('registers', '?')} registers, spills {entry.get('spill_stores', '?')} B stored / "
                     f"{entry.get('spill_loads', '?')} B loaded, shared {entry.get('shared', '?')} B)")
        parts.append("ptxas warnings: " + (" | ".join(entry.get("warnings", [])) or "none"))
        parts.append("-- ptxas -v\n" + texts.get("ptxas", "(none)").strip())
        for kind, n in EXCERPT_LINES.items():
            if texts.get(kind):
                parts.append(f"-- {kind}, " + excerpt(texts[kind], kind, lines=n))
    return "\n".join(parts) + "\n"


def agent_view(runs: dict, sources: dict, config: str) -> str:
    """profile_kernel's answer as the agent reads it (v0004 working, v0003 its parent),
    from the runs above: nothing is profiled again."""
    try:
        from agents.profiling import profile_answer
        from agents.tools import Workbench
    except Exception as e:  # noqa: BLE001 - the GPU image may lack langchain
        return f"(the agent's view needs agents/ and langchain: {type(e).__name__}: {e})"

    class Cached:  # the two runs above stand in for the profiler
        def unavailable(self):
            return None

        def configs(self):
            return [config]

        def default_config(self):
            return config

    wb = Workbench(source=sources["v0004"], parent_version=3, parent_source=sources["v0003"], parent_result=None,
                   lineage=None, knowledge=None, check=None, bench=None, compiler_stats=None, profiler=Cached())
    for label in ("v0004", "v0003"):
        wb.profiles[(hashlib.sha256(sources[label].encode()).hexdigest(), config)] = runs[label]
    return profile_answer(wb, config)


def write_summary(out: Path, config: str, runs: dict, sources: dict, where: str) -> str:
    summary = [f"ncu profile example: {config}, CUDA lineage v0004 (best) against its parent v0003",
               f"profiled in: {where}", ""]
    for label, _ in KERNELS:
        run = runs.get(label)
        summary += [f"== {label}", summarize(run.profile) if run and run.ok else (run.error if run else "not run"), ""]
    if all(label in runs and runs[label].ok for label, _ in KERNELS):
        summary += ["== delta", diff(runs["v0004"].profile, runs["v0003"].profile, "parent v0003"), "",
                    "== profile_kernel's answer as the agent reads it", agent_view(runs, sources, config)]
    text = "\n".join(summary) + "\n"
    (out / "summary.txt").write_text(text)
    return text


def render(out: Path, config: str) -> int:
    """The profile JSONs and summary.txt again from OUT's raw ncu CSVs (on any machine,
    e.g. after the parse changed); ptxas warnings come from the old JSONs (they are not in ncu's CSV)."""
    from avo.profiling import Profile, ProfileRun, parse_raw_csv

    runs, sources = {}, {}
    for label, path in KERNELS:
        sources[label] = path.read_text()
        csv_path, json_path = out / f"{label}.ncu.csv", out / f"{label}.profile.json"
        if not csv_path.exists():
            continue
        profile = parse_raw_csv(csv_path.read_text(), config)
        if json_path.exists():
            profile.ptxas_warnings = Profile.from_json(json_path.read_text()).ptxas_warnings
        json_path.write_text(profile.to_json() + "\n")
        runs[label] = ProfileRun(config=config, profile=profile)
    old = (out / "summary.txt").read_text().splitlines() if (out / "summary.txt").exists() else []
    where = next((ln.split(": ", 1)[1] for ln in old if ln.startswith("profiled in: ")), "see run.log")
    print(write_summary(out, config, runs, sources, where))
    return 0 if len(runs) == len(KERNELS) else 1


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", default=CONFIG)
    ap.add_argument("--timeout", type=float, default=110.0, help="seconds per ncu run at most")
    ap.add_argument("--budget", type=float, default=270.0, help="seconds for the whole script")
    ap.add_argument("--render", action="store_true",
                    help="no profiling: rewrite OUT's profile JSONs and summary.txt from its raw ncu CSVs "
                         "(adds the agent's view where the GPU machine lacked langchain)")
    args = ap.parse_args()
    if args.render:
        return render(Path(args.out), args.config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "run.log")
    log(f"profile example on {args.config}")
    versions(log)
    if why := unavailable():
        log(why)
        (out / "summary.txt").write_text(why + "\n")
        return 2
    state = {"sandboxed": True, "why": "", "deadline": log.t0 + args.budget}
    runs, sources = {}, {}
    for label, path in KERNELS:
        sources[label] = path.read_text()
        try:
            run = runs[label] = profile_one(label, sources[label], args.config, args.timeout, state, log)
        except Exception as e:  # noqa: BLE001 - the other kernel's files still come
            log(f"{label}: {type(e).__name__}: {e}")
            continue
        (out / f"{label}.ncu.csv").write_text(run.raw_csv)
        if run.profile is not None:
            (out / f"{label}.profile.json").write_text(run.profile.to_json() + "\n")
        (out / f"{label}.asm.txt").write_text(asm_text(label, run))
    where = "the harness box" if state["sandboxed"] else "outside the box, after: " + state["why"]
    summary = write_summary(out, args.config, runs, sources, where)
    print(summary)
    for label, _ in KERNELS:
        if (out / f"{label}.asm.txt").exists():
            print(f"\n== {label}.asm.txt (head)\n" + "\n".join((out / f"{label}.asm.txt").read_text().splitlines()[:40]))
    log("done; files: " + ", ".join(sorted(p.name for p in out.iterdir())))
    return 0 if all(label in runs and runs[label].ok for label, _ in KERNELS) else 1


if __name__ == "__main__":
    sys.exit(main())
