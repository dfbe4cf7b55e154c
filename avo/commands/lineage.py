"""`avo lineage`: list, show, diff and attempts; `add` submits a hand-written
kernel through the harness and the commit rule (operator = human); `init`
evaluates the seed and makes it v0."""
from __future__ import annotations

import sys
from pathlib import Path

import typer

from avo.candidate import Candidate, Technique
from avo import units
from avo.config import Config, ConfigError, load_config
from avo.lineage import Lineage, LineageError, Version, parse_version

app = typer.Typer(help="The committed versions of the kernel and every attempt.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

LINEAGE_OPT = typer.Option(None, "--lineage", help="Lineage folder (default: params.yaml lineage.root).")
PARAMS_OPT = typer.Option(None, "--params", help="Config file (default: ./params.yaml).")


def fail(message: str, code: int = 2) -> None:
    """A user mistake: one line on stderr, no traceback."""
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def open_lineage(root: Path | None, params: Path | None, must_exist: bool = False,
                 writable: bool = False) -> tuple[Config, Lineage]:
    """params.yaml and the lineage: `root`, else lineage.root for this machine's device
    (lineage/cuda with a GPU, lineage/cpu without). Mistakes end in one line:
    with `must_exist`, a lineage folder that is not there (a typo in --lineage);
    with `writable`, one that cannot be written (checked before any evaluation)."""
    try:
        cfg = load_config(params)
    except ConfigError as e:
        fail(str(e))
    given = root is not None
    if root is None:
        from avo.harness import detect_device

        root = Path(cfg.lineage.root_for(detect_device()))
    if must_exist and not Path(root).is_dir():
        if given:
            fail(f"no lineage folder {root}" + (" (it is a file)" if Path(root).exists() else "")
                 + ": check --lineage")
        fail(f"no lineage yet at {root} (params.yaml lineage.root): run `avo lineage init` or `avo evolve` first")
    if writable:
        problem = writable_problem(Path(root))
        if problem:
            fail(f"cannot write the lineage {root}: {problem}")
    return cfg, Lineage(root)


def writable_problem(folder: Path) -> str:
    """'' when files can be created in `folder` (or in the nearest existing folder
    above it, where it would be made); else why not, in a few words. Tries a real
    write: os.access says yes to root even on a read-only mount."""
    import errno
    import os
    import tempfile

    probe_dir = folder
    while not probe_dir.exists():
        if probe_dir.parent == probe_dir:
            break
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        return f"{probe_dir} is not a folder"
    try:
        fd, name = tempfile.mkstemp(prefix=".avo-write-probe-", dir=probe_dir)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        why = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
               errno.EPERM: "permission denied", errno.ENOSPC: "no space left"}.get(e.errno, e.strerror)
        return f"{probe_dir} is not writable ({why})"
    return ""


def _version(lineage: Lineage, text: str) -> Version:
    try:
        return lineage.get(parse_version(text))
    except (ValueError, LineageError) as e:
        fail(str(e))


def _num(x: float | None, fmt: str = ".4g") -> str:
    return format(x, fmt) if x else "-"


def _ratio(x: float | None) -> str:
    return "-" if not x else f"{x:.3f}" if x >= 0.01 else f"{x:.3g}"  # tiny ratios are not 0.000


@app.command("list")
def list_versions(root: Path = LINEAGE_OPT, params: Path = PARAMS_OPT) -> None:
    """One line per committed version: geomean TFLOPS on the suite it was measured on."""
    _, lineage = open_lineage(root, params, must_exist=True)
    versions = lineage.versions()
    if not versions:
        print(f"no versions in {lineage.root}")
        return
    best = lineage.best()
    rows = []
    for v in versions:
        r = v.result
        rows.append({
            "ver": ("*" if best and v.number == best.number else " ") + f"v{v.number}",
            "parent": "-" if v.parent is None else f"v{v.parent}", "operator": v.operator,
            "geomean TFLOPS": units.tflops(v.geomean, r.interpreter) if v.geomean else "-",
            "suite": r.suite or "?",
            "xcuDNN": _ratio(r.geomean_ratio_cudnn), "xFA2": _ratio(r.geomean_ratio_fa2),
            "device": (r.env.get("gpu") or r.device)
            + (" (interpreter)" if r.interpreter and "interpreter" not in str(r.env.get("gpu")) else ""),
            "created": v.created, "technique": v.technique.name})
    right = {"parent", "geomean TFLOPS", "xcuDNN", "xFA2"}
    widths = {k: max(len(k), *(len(row[k]) for row in rows)) for k in rows[0]}

    def line(row: dict) -> str:
        cells = [row[k].rjust(widths[k]) if k in right else row[k].ljust(widths[k]) for k in row]
        return "  ".join(cells[:-1] + [row["technique"]]).rstrip()

    print(line({k: k for k in rows[0]}))
    for row in rows:
        print(line(row))
    suites = sorted({v.result.suite or "?" for v in versions})
    note = ("; figures from different suites are not comparable (same kernel, other configurations)"
            if len(suites) > 1 else "")
    interp = any(v.result.interpreter for v in versions)
    print(f"(* best; geomean TFLOPS = geometric mean over the configurations of the suite shown"
          f" (`avo lineage show VERSION` lists them); the same kernel timed on another suite"
          f" (`avo bench KERNEL --suite NAME`) has another geomean{note}"
          + (f"; interpreter rows: {units.INTERPRETER_NOTE}" if interp else "")
          + f"; {len(lineage.attempts())} attempts in {lineage.root}/attempts.jsonl)")


@app.command("show")
def show(version: str = typer.Argument(..., help="Version, e.g. 3 or v3."),
         source: bool = typer.Option(False, "--source", help="Also print the kernel source."),
         root: Path = LINEAGE_OPT, params: Path = PARAMS_OPT) -> None:
    """A version's metadata, technique, per-configuration TFLOPS and environment."""
    _, lineage = open_lineage(root, params)  # a missing folder: "no version vN in ROOT", exit 2
    v = _version(lineage, version)
    r, t = v.result, v.technique
    print(f"v{v.number}  parent: {'-' if v.parent is None else f'v{v.parent}'}  operator: {v.operator}  "
          f"generation: {v.generation}  created: {v.created}")
    print(f"technique: {t.name}")
    for label, text in (("expected", t.expected), ("why", t.why), ("note", v.note)):
        if text:
            print(f"  {label}: {text}")
    print(f"status: {r.status}  suite: {r.suite}  device: {r.device}"
          f"{' (Triton interpreter)' if r.interpreter else ''}  max rel err: {r.max_rel_err:.3g}")
    print("env: " + ", ".join(f"{k}={val}" for k, val in r.env.items()))
    print(f"geomean: {_num(v.geomean)} TFLOPS  x cuDNN: {_num(r.geomean_ratio_cudnn, '.3f')}  "
          f"x FA2: {_num(r.geomean_ratio_fa2, '.3f')}")
    for tm in r.timings:
        eff = t.measured.get(tm.config)
        print(f"  {tm.config:<36} {tm.tflops:>9.4g} TFLOPS  cuDNN {_num(tm.cudnn_tflops):>7}  "
              f"FA2 {_num(tm.fa2_tflops):>7}" + (f"  {(eff - 1) * 100:+.1f}% vs parent" if eff else ""))
    if r.compile_stats:
        print("compile: " + ", ".join(f"{k}={val}" for k, val in r.compile_stats.items()))
    if source:
        print(f"--- v{v.number}/kernel.py ---")
        print(v.source, end="" if v.source.endswith("\n") else "\n")


@app.command("diff")
def diff(a: str = typer.Argument(..., help="Older version."), b: str = typer.Argument(..., help="Newer version."),
         root: Path = LINEAGE_OPT, params: Path = PARAMS_OPT) -> None:
    """Unified diff of two versions' kernels."""
    _, lineage = open_lineage(root, params)
    va, vb = _version(lineage, a), _version(lineage, b)
    print(lineage.diff(va.number, vb.number) or f"v{va.number} and v{vb.number} have the same source", end="")


@app.command("attempts")
def attempts(limit: int = typer.Option(20, help="How many recent attempts."),
             root: Path = LINEAGE_OPT, params: Path = PARAMS_OPT) -> None:
    """What was tried recently and what happened (the text agents read)."""
    _, lineage = open_lineage(root, params, must_exist=True)
    print(lineage.attempts_summary(limit))


@app.command("add")
def add(
    kernel: Path = typer.Argument(..., help="A hand-written kernel file."),
    note: str = typer.Option("", "--note", help="Why this kernel: stored with the version."),
    technique: str = typer.Option("hand-written", help="Short name of the technique tried."),
    expected: str = typer.Option("", help="Expected effect, written before measuring."),
    parent: str = typer.Option(None, help="Version it derives from (default: the best)."),
    device: str = typer.Option(None, help="cuda, cpu or auto (default: params.yaml harness.device)."),
    suite: str = typer.Option(None, help="Timed suite (default: params.yaml harness.suite)."),
    root: Path = LINEAGE_OPT, params: Path = PARAMS_OPT,
) -> None:
    """Evaluate KERNEL with the harness and commit it as operator "human" if it is
    correct and beats the best by the noise margin. Exit 0 when committed, 1 when not."""
    cfg, lineage = open_lineage(root, params, writable=True)
    if kernel.is_dir():
        fail(f"{kernel} is a directory: give the kernel's .py file")
    if not kernel.is_file():
        fail(f"no such kernel file: {kernel}")
    if device not in (None, "auto", "cuda", "cpu"):
        fail(f"unknown device {device!r}: use cuda, cpu or auto")
    try:
        source = kernel.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        fail(f"{kernel} is not a text file")
    if parent is not None:
        parent_n = _version(lineage, parent).number
    else:
        best = lineage.best()
        parent_n = best.number if best else None
    result = _evaluate(kernel, cfg, device, suite)
    from avo.lineage import origin_of

    candidate = Candidate(source=source, parent=parent_n, operator="human",
                          technique=Technique(name=technique, expected=expected, why=note),
                          origin=origin_of(kernel))  # another lineage's version: say which
    from avo.promotion import promote
    from avo.tracking import Tracker

    promotion = promote(lineage, candidate, result, cfg.lineage,
                        tracker=Tracker.from_config(cfg.tracking), note=note)
    d = promotion.decision
    print(f"{kernel}: {result.status}, geomean {result.geomean_tflops:.4g} TFLOPS "
          f"(margin {promotion.margin:g})")
    if d.committed:
        git = f"; git {promotion.git.detail}" if promotion.git and promotion.git.committed else ""
        print(f"committed as v{d.version}: {d.reason}{git}")
    else:
        print(f"not committed: {d.reason}")
    _leave_inbox(kernel, candidate, lineage, cfg, d.version)
    raise typer.Exit(0 if d.committed else 1)


def _leave_inbox(kernel: Path, candidate: Candidate, lineage: Lineage, cfg: Config, version: int | None) -> None:
    """The problem's steps/ folder is an inbox: a kernel added from it leaves it, its
    source now in the lineage (the version's kernel.py, or under sources/ by its sha256)."""
    from avo.problem import problem_path

    inbox = problem_path(cfg, Path(".")).parent / "steps"
    if kernel.resolve().parent != inbox.resolve() or lineage.source_of(candidate.sha256) is None:
        return
    kernel.unlink()
    kept = f"v{version}/kernel.py" if version is not None else \
        next(f"sources/{p.name}" for p in (lineage.root / "sources").glob(f"{candidate.sha256}.*"))
    print(f"{kernel} left the inbox ({inbox}): its source is {lineage.root}/{kept}")


@app.command("init")
def init(seed: Path = typer.Option(None, help="Seed kernel (default: params.yaml lineage.seed)."),
         device: str = typer.Option(None, help="cuda, cpu or auto (default: params.yaml harness.device)."),
         suite: str = typer.Option(None, help="Timed suite (default: params.yaml harness.suite)."),
         root: Path = LINEAGE_OPT, params: Path = PARAMS_OPT) -> None:
    """Evaluate the seed kernel and make it v0 (nothing to do if v0 is this seed)."""
    cfg, lineage = open_lineage(root, params)
    from avo.problem import seed_path

    seed = seed or seed_path(cfg, Path("."))
    if not seed.is_file():
        fail(f"no such seed kernel: {seed}")
    if lineage.has(0):
        if lineage.get(0).source == seed.read_text(encoding="utf-8"):
            print(f"{lineage.root} already starts from {seed} (v0)")
            return
        fail(f"{lineage.root} already has a v0 from a different seed")
    problem = writable_problem(lineage.root)
    if problem:  # before evaluating the seed
        fail(f"cannot write the lineage {lineage.root}: {problem}")
    result = _evaluate(seed, cfg, device, suite)
    from avo.lineage import seed_candidate
    from avo.promotion import promote

    try:
        promote(lineage, seed_candidate(seed), result, cfg.lineage, note=f"seed: {seed.name}")
    except LineageError as e:
        fail(str(e), code=1)
    v0 = lineage.get(0)
    print(f"v0 = {seed}: geomean {v0.geomean:.4g} TFLOPS on {result.env.get('gpu') or result.device}")


def _evaluate(kernel: Path, cfg: Config, device: str | None, suite: str | None):
    from avo.harness import UnknownSuite, evaluate  # torch stays out of `avo lineage list`
    from avo.problem import load_problem, problem_path

    problem = problem_path(cfg, Path("."))
    known = load_problem(problem).SUITES
    if suite and suite not in known:  # before any output: the error stays one line
        fail(f"unknown suite {suite!r}; known: {', '.join(known)}")
    print(f"evaluating {kernel} in an isolated worker process…", file=sys.stderr)
    try:
        return evaluate(kernel, device=device or cfg.harness.device, suite=suite or cfg.harness.suite,
                        timeout_s=cfg.harness.timeout_s, problem_path=problem)
    except (UnknownSuite, ValueError) as e:
        fail(str(e))
