"""Running ncu on a candidate: where it can run, the sandboxed run, reading back.

    profiler = Profiler()                       # the default problem and its GPU suite
    profiler.unavailable()                      # None, or one line saying why not here
    run = profiler.profile(source, "mha b4 s8192 d128 causal bf16")
    run.profile (avo.profiling.ncu.Profile) | run.error (one line) ; run.asm, run.texts
    run = profiler.compile_asm(source)          # no GPU needed: ahead of time for sm_90a

The candidate is untrusted: it runs after the harness's static checks, under ncu,
inside the harness's sandbox (avo.harness.sandbox), with a scrubbed environment
and a timeout, in a work directory that is read back as hostile (no symlink is
followed, only plain file names from inside it). What comes back is the kernel's
to forge, so a profile informs the agent and never judges a candidate.

In a root sandbox the program runs as uid 65534; a driver that restricts GPU
performance counters to admin users (NVreg_RestrictProfilingToAdminUsers=1, the
default) then refuses ncu with ERR_NVGPUCTRPERM, which comes back as one line
(`permission_denied`). `Profiler(sandboxed=False)` is for trusted kernels only
(the committed lineage: benchmarks/profile_example.py).
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from avo.profiling.ncu import Profile, build_command, counters_to_request, parse_raw_csv

TIMEOUT_S = 300.0
MAX_CSV = 20_000_000
MAX_TEXT = 4_000_000
LOG_TAIL = 4_000
NCU_PLACES = ("/usr/local/cuda/bin/ncu", "/opt/nvidia/nsight-compute/*/ncu", "/usr/local/NVIDIA-Nsight-Compute*/ncu")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
_counters: dict[str, set[str] | None] = {}  # ncu path -> the counter names it knows (None: unknown)


def find_ncu() -> str | None:
    found = shutil.which("ncu")
    if found:
        return found
    for pattern in NCU_PLACES:
        hits = sorted(glob.glob(pattern))
        if hits and os.access(hits[-1], os.X_OK):
            return hits[-1]
    return None


def has_gpu() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - no torch, no driver: no GPU
        return False


def unavailable(ncu: str | None = None, gpu: bool | None = None) -> str | None:
    """None where a profile can run; else one line saying why not."""
    if (ncu or find_ncu()) is None:
        return "profile unavailable: ncu (Nsight Compute) is not on PATH here; use benchmark and compiler_stats"
    if not (has_gpu() if gpu is None else gpu):
        return "profile unavailable: no CUDA GPU here (ncu needs one); use benchmark and compiler_stats"
    return None


@dataclass
class ProfileRun:
    config: str
    profile: Profile | None = None
    error: str = ""  # one line, worded here (never the kernel's own text)
    log_tail: str = ""  # ncu's and the program's output (untrusted)
    raw_csv: str = ""
    asm: list[dict] = field(default_factory=list)  # one entry per compiled kernel (asm.json)
    texts: dict[str, dict[str, str]] = field(default_factory=dict)  # kernel tag -> kind -> text
    permission_denied: bool = False
    box: str = ""  # the sandbox level it ran in

    @property
    def ok(self) -> bool:
        return self.profile is not None and bool(self.profile.kernels)


class Profiler:
    def __init__(self, problem: str | Path | None = None, suite: str | None = None,
                 timeout_s: float = TIMEOUT_S, sandboxed: bool = True, ncu: str | None = None,
                 gpu: bool | None = None):
        from avo.problem import DEFAULT_PROBLEM

        self.problem = Path(problem or DEFAULT_PROBLEM).resolve()
        self.suite = suite
        self.timeout_s = timeout_s
        self.sandboxed = sandboxed
        self.ncu = ncu
        self.gpu = gpu  # None: ask torch

    # ------------------------------------------------------------- configs
    def _problem(self):
        from avo.problem import load_problem

        return load_problem(self.problem)

    def configs(self) -> list[str]:
        return list(dict.fromkeys(s.name for shapes in self._problem().SUITES.values() for s in shapes))

    def default_config(self) -> str:
        p = self._problem()
        suite = self.suite if self.suite in p.SUITES else p.DEFAULT_SUITE.get("cuda", next(iter(p.SUITES)))
        return p.SUITES[suite][0].name

    def unavailable(self) -> str | None:
        return unavailable(self.ncu or find_ncu(), self.gpu)

    # ------------------------------------------------------------- running
    def profile(self, source: str, config: str) -> ProfileRun:
        run = ProfileRun(config=config)
        ncu = self.ncu or find_ncu()
        if why := unavailable(ncu, self.gpu):
            run.error = why
            return run
        if why := _static_reason(source, self._problem()):
            run.error = f"profile not run: {why}"
            return run
        counters = _known_counters(ncu)
        metrics = [m for m in counters_to_request() if counters is None or m.split(".")[0] in counters]
        with tempfile.TemporaryDirectory(prefix="avo-profile-") as tmp:
            work = Path(tmp)
            (work / "out").mkdir()
            (work / "triton-cache").mkdir()
            (work / "candidate.py").write_text(source)
            program = [sys.executable, "-s", "-m", "avo.profiling.driver", str(work / "candidate.py"), config,
                       str(work / "out"), str(self.problem)]
            for attempt in (metrics, []):
                argv = build_command(ncu, program, metrics=attempt, log_file=str(work / "out" / "ncu.csv"))
                rc, output = self._spawn(argv, work, [Path(ncu).resolve().parent])
                log = _read_in(work, ("out", "ncu.csv"), MAX_CSV)
                if not (attempt and re.search(r"Failed to find metric|metric.*not (found|available)", log + output)):
                    break  # a counter this ncu does not know fails the run: retry with the sections alone
            self._read_back(run, work, rc, output, log)
        return run

    def compile_asm(self, source: str) -> ProfileRun:
        """The compiled kernels without a GPU: avo.compile_stats's ahead-of-time
        compile for sm_90a on meta tensors (a kernel that picks its path by device
        shows the path it takes off the GPU)."""
        run = ProfileRun(config="")
        if why := _static_reason(source, self._problem()):
            run.error = f"not compiled: {why}"
            return run
        with tempfile.TemporaryDirectory(prefix="avo-asm-") as tmp:
            work = Path(tmp)
            (work / "out").mkdir()
            (work / "candidate.py").write_text(source)
            rc, output = self._spawn([sys.executable, "-s", "-m", "avo.profiling.asm", "--compile",
                                      str(work / "candidate.py"), str(work / "out")], work, [])
            run.box = self._box().level
            _read_asm(run, work)
            run.log_tail = output[-LOG_TAIL:]
            if not run.asm:
                run.error = f"no compiled kernel came back (exit status {rc})"
        return run

    def _box(self):
        from avo.harness import sandbox

        return sandbox.detect() if self.sandboxed else sandbox.Box("none", "trusted kernel")

    def _spawn(self, argv: list[str], work: Path, readonly: list[Path]) -> tuple[int | None, str]:
        from avo.harness import sandbox
        from avo.harness.runner import ENV_KEEP, ENV_KEEP_PREFIXES
        from avo.problem import REPO_ROOT

        env = {k: v for k, v in os.environ.items() if k in ENV_KEEP or k.startswith(ENV_KEEP_PREFIXES)}
        env.update(HOME=str(work), PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO_ROOT),
                   TRITON_CACHE_DIR=str(work / "triton-cache"))
        env.pop("TRITON_INTERPRET", None)
        shown = [p for p in {*readonly, self.problem.parent} if p.is_dir()]
        wrapped = self._box().wrap(argv, workdir=work, readonly=shown)
        try:
            proc = sandbox.spawn(wrapped, env=env, cwd=work, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT)
        except OSError as e:  # ncu itself would not start (outside a box; inside one the box says so)
            return 127, f"cannot start {Path(argv[0]).name}: {e}"
        try:
            out, _ = proc.communicate(timeout=self.timeout_s)
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            sandbox.kill_tree(proc)
            out, _ = proc.communicate()
            return None, (out or b"").decode(errors="replace")
        sandbox.kill_tree(proc)  # anything the candidate left behind
        return rc, out.decode(errors="replace")

    def _read_back(self, run: ProfileRun, work: Path, rc: int | None, output: str, log: str) -> None:
        run.box = self._box().level
        run.raw_csv = log if '"ID",' in log else output
        run.log_tail = (output + ("\n" + log if '"ID",' not in log else ""))[-LOG_TAIL:]
        profile = parse_raw_csv(run.raw_csv, run.config)
        _read_asm(run, work)
        profile.ptxas_warnings = [f"{e['name']}: {w}" for e in run.asm for w in e.get("warnings", [])]
        run.profile = profile
        if run.ok:
            return
        if "ERR_NVGPUCTRPERM" in output + log:
            run.permission_denied = True
            run.error = ("profile unavailable: ncu may not read the GPU's performance counters here "
                         f"(ERR_NVGPUCTRPERM; the program ran as {'an unprivileged sandbox user' if run.box != 'none' else 'this user'}"
                         " and the driver restricts profiling to admin users)")
        elif rc is None:
            run.error = f"profile failed: timed out after {self.timeout_s:.0f} s"
        else:
            driver = _read_in(work, ("out", "driver.json"), 10_000)
            ran = '"ran": true' in driver
            run.error = ("profile failed: ncu reported no kernel" if ran else
                         f"profile failed: the kernel did not run under the profiler (exit status {rc})")


# ------------------------------------------------------------------ helpers
def _static_reason(source: str, problem=None) -> str | None:
    from avo.harness.static_checks import SourceError, check_source

    try:
        violations = check_source(source, problem)
    except SourceError as e:
        return str(e).splitlines()[0][:200] if str(e) else "the source does not parse"
    return f"the harness would reject it ({violations[0]})" if violations else None


def _known_counters(ncu: str) -> set[str] | None:
    """Base names of the hardware counters this ncu knows on this GPU (None: could not ask)."""
    if ncu not in _counters:
        try:
            p = subprocess.run([ncu, "--query-metrics"], capture_output=True, text=True, timeout=90)
            names = set(re.findall(r"^([a-z0-9]+__[a-z0-9_]+)\s", p.stdout, re.M))
            _counters[ncu] = names if len(names) > 20 else None
        except (OSError, subprocess.TimeoutExpired):
            _counters[ncu] = None
    return _counters[ncu]


def _read_in(work: Path, parts: tuple[str, ...], limit: int) -> str:
    """A plain file below `work`, opened one component at a time without following
    a symlink (the sandboxed program owned every path below `work`). '' if absent."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fds = []
    try:
        fds.append(os.open(work, flags | os.O_DIRECTORY))
        for part in parts[:-1]:
            fds.append(os.open(part, flags | os.O_DIRECTORY, dir_fd=fds[-1]))
        fd = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=fds[-1])
        fds.append(fd)
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(limit).decode(errors="replace")
    except OSError:
        return ""
    finally:
        for fd in fds:
            os.close(fd)


def _read_asm(run: ProfileRun, work: Path) -> None:
    try:
        entries = json.loads(_read_in(work, ("out", "asm", "asm.json"), 1_000_000) or "[]")
    except ValueError:
        entries = []
    for e in entries if isinstance(entries, list) else []:
        if not (isinstance(e, dict) and isinstance(e.get("name"), str) and _SAFE_NAME.match(str(e.get("tag", "")))):
            continue
        files = e.get("files") if isinstance(e.get("files"), dict) else {}
        texts = {kind: _read_in(work, ("out", "asm", name), MAX_TEXT) for kind, name in files.items()
                 if kind in ("ttgir", "ptx", "sass", "ptxas") and isinstance(name, str) and _SAFE_NAME.match(name)}
        warnings = [str(w)[:300] for w in e.get("warnings", []) if isinstance(w, str)][:20]
        run.asm.append({"name": e["name"][:200], "tag": e["tag"], "arch": str(e.get("arch", ""))[:20],
                        **{k: e.get(k) for k in ("num_warps", "num_stages", "shared", "registers", "spill_stores",
                                                 "spill_loads") if isinstance(e.get(k), int)},
                        "warnings": warnings})
        run.texts[e["tag"]] = texts
