"""Nsight Compute (ncu) for one candidate on one config: the command line, the
metrics asked for, the parse of its `--csv --page raw` output into a small typed
record, a summary in a few lines and the delta between two records.

Nothing here runs a process; avo/profiling/run.py does. ncu's raw page is wide:
a header row of metric names (after the identity columns ID, Process ID, ...,
Kernel Name, Context, Stream, Block Size, Grid Size, Device, CC), a row of units
(empty for the identity columns), then one row per profiled kernel launch, every
field quoted. `--print-units base` keeps units unscaled; the parse still scales
the time and byte units it knows, in case a version ignores the option.

The metric names are those ncu 2025.3 reported on the H100
(benchmarks/results/h100-profile/*.ncu.csv); a name another GPU or ncu version
lacks reads "n/a", never an error (run.py drops the hardware counters
`ncu --query-metrics` does not list before asking for them).
"""
from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import asdict, dataclass, field

# ------------------------------------------------------------- what is asked for
SECTIONS = ("SpeedOfLight", "LaunchStats", "Occupancy", "SchedulerStats", "WarpStateStats",
            "ComputeWorkloadAnalysis")
LAUNCH_COUNT = 8  # at most this many kernel launches of the profiled call are replayed


@dataclass(frozen=True)
class Metric:
    key: str  # the record's name for it
    label: str  # what the summary calls it
    names: tuple[str, ...]  # ncu metric names; the first one present wins
    kind: str  # "pct" | "ns" | "count" | "bytes" | "ratio"


# The one list of metrics the profile reads (and, for hardware counters, asks for).
METRICS: tuple[Metric, ...] = (
    Metric("duration", "duration", ("gpu__time_duration.sum",), "ns"),
    Metric("sm_throughput", "SM throughput", ("sm__throughput.avg.pct_of_peak_sustained_elapsed",), "pct"),
    Metric("memory_throughput", "memory throughput",
           ("gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed",), "pct"),
    Metric("dram_throughput", "DRAM throughput", ("dram__throughput.avg.pct_of_peak_sustained_elapsed",
                                                  "gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed"), "pct"),
    # On the H100 (ncu 2025.3) the tensor pipe's cycles count wgmma (HGMMA) and mma.sync alike, and the
    # "hmma" pipe metric equals them; there is no gmma cycles metric. The HGMMA issue rate tells wgmma apart.
    Metric("tensor", "tensor pipe", ("sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active",
                                     "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active"), "pct"),
    Metric("wgmma_issue", "wgmma issue rate", ("sm__inst_executed_pipe_tensor_op_gmma.avg.pct_of_peak_sustained_active",),
           "pct"),
    # MUFU (ex2, rcp) issues to the XU pipe: the softmax's exponentials
    Metric("mufu", "MUFU (XU pipe)", ("sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active",), "pct"),
    Metric("fma", "FMA pipe", ("sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active",
                               "sm__inst_executed_pipe_fma.avg.pct_of_peak_sustained_active"), "pct"),
    Metric("alu", "ALU pipe", ("sm__inst_executed_pipe_alu.avg.pct_of_peak_sustained_active",), "pct"),
    Metric("issue_active", "issue slots busy", ("smsp__issue_active.avg.pct_of_peak_sustained_active",), "pct"),
    Metric("occupancy", "achieved occupancy", ("sm__warps_active.avg.pct_of_peak_sustained_active",), "pct"),
    Metric("occupancy_theoretical", "theoretical occupancy", ("sm__maximum_warps_per_active_cycle_pct",), "pct"),
    Metric("l2_hit", "L2 hit rate", ("lts__t_sector_hit_rate.pct",), "pct"),
    Metric("registers", "registers/thread", ("launch__registers_per_thread",), "count"),
    Metric("smem_dynamic", "dynamic shared memory/block", ("launch__shared_mem_per_block_dynamic",), "bytes"),
    Metric("smem_static", "static shared memory/block", ("launch__shared_mem_per_block_static",), "bytes"),
    Metric("block_size", "threads/block", ("launch__block_size",), "count"),
    Metric("grid_size", "blocks", ("launch__grid_size",), "count"),
    Metric("waves", "waves per SM", ("launch__waves_per_multiprocessor",), "ratio"),
)
BY_KEY = {m.key: m for m in METRICS}
# Hardware counters outside the sections above, so asked for by name (the launch__ ones come with LaunchStats).
COUNTER_PREFIXES = ("sm__", "smsp__", "gpu__", "dram__", "lts__", "l1tex__")

# Stall reasons: WarpStateStats gives warps stalled per issued instruction, one metric per reason.
STALL_RE = re.compile(r"^smsp__average_warps_issue_stalled_(\w+?)_per_issue_active\.ratio$")
STALL_SAMPLES_RE = re.compile(r"^smsp__pcsamp_warps_issue_stalled_(\w+)$")  # fallback: sample counts
STALL_SKIP = ("selected",)  # "selected" is issuing, not a stall


def counters_to_request() -> list[str]:
    return [n for m in METRICS for n in m.names if n.startswith(COUNTER_PREFIXES)]


def build_command(ncu: str, program: list[str], *, metrics: list[str] | None = None,
                  sections: tuple[str, ...] = SECTIONS, launch_count: int = LAUNCH_COUNT,
                  log_file: str | None = None) -> list[str]:
    """ncu's argv around `program`. Only what runs between the program's
    cudaProfilerStart and cudaProfilerStop is profiled (the driver warms up
    first, so compiling and autotuning stay outside), one replayed launch per
    kernel up to `launch_count`, kernel replay, ncu's default base clocks and
    cache flush (so two profiles compare)."""
    metrics = counters_to_request() if metrics is None else metrics
    argv = [ncu, "--csv", "--page", "raw", "--print-units", "base", "--profile-from-start", "off",
            "--launch-count", str(int(launch_count)), "--replay-mode", "kernel",
            "--target-processes", "application-only"]
    for s in sections:
        argv += ["--section", s]
    if metrics:
        argv += ["--metrics", ",".join(metrics)]
    if log_file:
        argv += ["--log-file", log_file]
    return argv + list(program)


# -------------------------------------------------------------------- the record
@dataclass
class KernelProfile:
    name: str
    grid: str = ""
    block: str = ""
    values: dict[str, float | None] = field(default_factory=dict)  # METRICS key -> value (base units)
    stalls: dict[str, float] = field(default_factory=dict)  # reason -> warps stalled per issued instruction
    stall_unit: str = "per issue"  # or "% of samples" (the fallback family)

    def get(self, key: str) -> float | None:
        return self.values.get(key)


@dataclass
class Profile:
    config: str
    device: str = ""
    kernels: list[KernelProfile] = field(default_factory=list)
    ptxas_warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def main(self) -> KernelProfile | None:
        """The longest kernel (the attention kernel, not a copy beside it)."""
        return max(self.kernels, key=lambda k: k.get("duration") or 0.0, default=None)

    def total_ns(self) -> float | None:
        times = [k.get("duration") for k in self.kernels]
        return sum(times) if times and all(t is not None for t in times) else None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Profile":
        kernels = [KernelProfile(**k) for k in d.get("kernels", [])]
        return cls(config=d["config"], device=d.get("device", ""), kernels=kernels,
                   ptxas_warnings=list(d.get("ptxas_warnings", [])), notes=list(d.get("notes", [])))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Profile":
        return cls.from_dict(json.loads(text))


# ------------------------------------------------------------------------ parse
_SCALE = {  # unit -> factor to ns or bytes
    "ns": 1.0, "nsecond": 1.0, "usecond": 1e3, "us": 1e3, "msecond": 1e6, "ms": 1e6, "second": 1e9, "s": 1e9,
    "byte": 1.0, "kbyte": 1e3, "mbyte": 1e6, "gbyte": 1e9, "kibyte": 1024.0, "mibyte": 1024.0 ** 2,
}


def number(text: str) -> float | None:
    """ncu's value text as a number: thousands separators dropped; n/a, text and NaN are None."""
    t = (text or "").strip().replace(",", "")
    try:
        v = float(t)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def raw_rows(text: str) -> tuple[list[str], dict[str, str], list[dict[str, str]]]:
    """(header, units by column, one dict per kernel row) of a raw-page CSV.
    ncu's own messages (==PROF==, ==WARNING==) and the program's output around
    the table are skipped: the table is the quoted lines from the "ID" header on."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.startswith('"ID",')), None)
    if start is None:
        return [], {}, []
    table = [ln for ln in lines[start:] if ln.startswith('"')]
    reader = list(csv.reader(table))
    header = reader[0]
    units: dict[str, str] = {}
    rows = []
    for rec in reader[1:]:
        if len(rec) != len(header):
            continue  # a line of program output that happened to start with a quote
        if rec[0] == "" and not units:
            units = {h: u for h, u in zip(header, rec) if u}
            continue
        if rec[0].strip().isdigit():
            row: dict[str, str] = {}
            for h, v in zip(header, rec):
                row.setdefault(h, v)  # a repeated column keeps its first value
            rows.append(row)
    return header, units, rows


def parse_raw_csv(text: str, config: str = "") -> Profile:
    """A Profile of every kernel row in ncu's `--csv --page raw` output."""
    _, units, rows = raw_rows(text)
    profile = Profile(config=config)
    for row in rows:
        values: dict[str, float | None] = {}
        for m in METRICS:
            name = next((n for n in m.names if n in row and number(row[n]) is not None), None)
            v = number(row[name]) if name else None
            if v is not None and m.kind in ("ns", "bytes"):
                v *= _SCALE.get(units.get(name, "").strip().lower(), 1.0)
            values[m.key] = v
        stalls, unit = _stalls(row)
        profile.kernels.append(KernelProfile(name=row.get("Kernel Name", "?"), grid=row.get("Grid Size", ""),
                                             block=row.get("Block Size", ""), values=values, stalls=stalls,
                                             stall_unit=unit))
        if not profile.device:
            profile.device = row.get("device__attribute_display_name") or row.get("Device", "")
    if not rows:
        profile.notes.append("ncu reported no kernel (was any launched between cudaProfilerStart and Stop?)")
    return profile


def _stalls(row: dict[str, str]) -> tuple[dict[str, float], str]:
    stalls = {}
    for name, text in row.items():
        m = STALL_RE.match(name)
        v = number(text)
        if m and v is not None and m.group(1) not in STALL_SKIP and "not_issued" not in m.group(1):
            stalls[m.group(1)] = v
    if stalls:
        return stalls, "per issue"
    samples = {m.group(1): number(t) for n, t in row.items() if (m := STALL_SAMPLES_RE.match(n))}
    samples = {k: v for k, v in samples.items() if v and k not in STALL_SKIP and "not_issued" not in k}
    total = sum(samples.values())
    return ({k: 100.0 * v / total for k, v in samples.items()} if total else {}), "% of samples"


# -------------------------------------------------------------------- summaries
def fmt(key: str, v: float | None) -> str:
    if v is None:
        return "n/a"
    kind = BY_KEY[key].kind
    if kind == "pct":
        return f"{v:.1f}%"
    if kind == "ns":
        return f"{v / 1e6:.3f} ms" if v >= 1e6 else f"{v / 1e3:.1f} us"
    if kind == "bytes":
        return f"{v / 1024:.0f} KiB" if v >= 1024 else f"{v:.0f} B"
    if kind == "ratio":
        return f"{v:.2f}"
    return f"{v:.0f}"


def _pairs(k: KernelProfile, keys) -> str:
    return ", ".join(f"{BY_KEY[key].label} {fmt(key, k.get(key))}" for key in keys if k.get(key) is not None)


PIPE_KEYS = ("sm_throughput", "memory_throughput", "dram_throughput", "tensor", "wgmma_issue", "mufu", "fma", "alu")


def short(name: str, limit: int = 60) -> str:
    """A kernel name without its C++ parameter list, at most `limit` characters."""
    name = name.split("(")[0].strip() or name
    return name if len(name) <= limit else name[: limit - 1] + "…"


def top_stalls(k: KernelProfile, n: int = 4) -> list[tuple[str, float]]:
    return sorted(k.stalls.items(), key=lambda kv: -kv[1])[:n]


def summarize(p: Profile) -> str:
    """A few lines: the main kernel's time, pipes, issue and occupancy, resources
    and stalls; the other kernels in one line; ptxas warnings."""
    head = f"ncu profile on {p.config or '?'}" + (f", {p.device}" if p.device else "")
    main = p.main()
    if main is None:
        return "\n".join([head + ": no kernel profiled", *p.notes])
    smem = sum(v for v in (main.get("smem_dynamic"), main.get("smem_static")) if v is not None)
    lines = [head + ":",
             f"{short(main.name)}: {fmt('duration', main.get('duration'))}, grid {main.grid or fmt('grid_size', main.get('grid_size'))}"
             f" x block {main.block or fmt('block_size', main.get('block_size'))}, "
             f"{fmt('registers', main.get('registers'))} registers/thread, shared memory {fmt('smem_dynamic', smem)}/block",
             "  " + (_pairs(main, PIPE_KEYS) or "pipe utilisation n/a"),
             "  " + (_pairs(main, ("issue_active", "occupancy", "occupancy_theoretical", "waves", "l2_hit"))
                     or "issue/occupancy n/a")]
    if main.stalls:
        lines.append(f"  top stalls ({'warps per issued instruction' if main.stall_unit == 'per issue' else main.stall_unit}): "
                     + ", ".join(f"{r} {v:.2f}" for r, v in top_stalls(main)))
    others = [k for k in p.kernels if k is not main]
    if others:
        lines.append("other kernels: " + ", ".join(f"{short(k.name)} {fmt('duration', k.get('duration'))}" for k in others[:5])
                     + (f" (+{len(others) - 5} more)" if len(others) > 5 else ""))
    if p.ptxas_warnings:
        lines.append(f"ptxas warnings ({len(p.ptxas_warnings)}): " + " | ".join(p.ptxas_warnings[:3]))
    lines += p.notes
    return "\n".join(lines)


def diff(new: Profile, old: Profile, old_label: str = "parent") -> str:
    """The delta of `new` against `old` in a few lines (main kernel to main kernel)."""
    a, b = old.main(), new.main()
    if a is None or b is None:
        return f"no delta vs {old_label}: " + ("this profile" if b is None else f"the {old_label}'s") + " has no kernel"
    lines = [f"vs {old_label} on {new.config}: {short(b.name)}" + (f" (was {short(a.name)})" if a.name != b.name else "")]
    ta, tb = old.total_ns(), new.total_ns()
    if ta and tb:
        lines.append(f"  time (all kernels) {fmt('duration', ta)} -> {fmt('duration', tb)} ({tb / ta:.3f}x)")
    changes = []
    for key in (*PIPE_KEYS, "issue_active", "occupancy", "l2_hit"):
        va, vb = a.get(key), b.get(key)
        if va is not None and vb is not None and abs(vb - va) >= 0.5:
            changes.append(f"{BY_KEY[key].label} {va:.1f}% -> {vb:.1f}% ({vb - va:+.1f})")
    if changes:
        lines += ["  " + ", ".join(changes[i:i + 3]) for i in range(0, len(changes), 3)]
    else:
        lines.append("  pipe utilisation, issue and occupancy within 0.5 points")
    res = [f"{BY_KEY[key].label} {fmt(key, a.get(key))} -> {fmt(key, b.get(key))}"
           for key in ("registers", "smem_dynamic", "block_size", "grid_size") if a.get(key) != b.get(key)]
    if res:
        lines.append("  " + ", ".join(res))
    if a.stalls or b.stalls:
        reasons = list(dict.fromkeys([r for r, _ in top_stalls(b, 3)] + [r for r, _ in top_stalls(a, 3)]))
        lines.append("  stalls: " + ", ".join(f"{r} {a.stalls.get(r, 0.0):.2f} -> {b.stalls.get(r, 0.0):.2f}"
                                               for r in reasons))
    new_w = [w for w in new.ptxas_warnings if w not in old.ptxas_warnings]
    gone = [w for w in old.ptxas_warnings if w not in new.ptxas_warnings]
    if new_w or gone:
        lines.append(f"  ptxas warnings: {len(new_w)} new" + (f" ({new_w[0]})" if new_w else "")
                     + f", {len(gone)} gone" + (f" ({gone[0]})" if gone else ""))
    return "\n".join(lines)
