"""What NVML's per-process samples say about GPU work of known timing (the shared-GPU
guard reads them: avo/harness/gpu_activity.py). Not product code: a measurement.

A child process runs bf16 matmuls in a pattern, writing the host's wall clock (us) at the
start and end of each busy spell; this process reads the child's NVML samples meanwhile.
Patterns: one 2 s spell; one 50 ms spell; 2 ms every 100 ms for 3 s (a compile stage's
staging bursts, or a judge's). Printed and written as JSON: per pattern, each sample's
time relative to the spells and its SM %, so that the lag of a sample after the work it
saw, and the SM % short bursts get, can be read off.

    python benchmarks/probe_nvml.py --out nvml.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avo.harness import gpu_activity  # noqa: E402

CHILD = """
import json, sys, time, torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
for _ in range(3):
    a @ a
torch.cuda.synchronize()
pattern = sys.argv[1]
def spell(seconds):
    t0 = time.time()
    while time.time() - t0 < seconds:
        a @ a
        torch.cuda.synchronize()
    return [int(t0 * 1e6), int(time.time() * 1e6)]
spells = []
print("ready", flush=True)
sys.stdin.readline()
if pattern == "long":
    spells.append(spell(2.0))
elif pattern == "short":
    spells.append(spell(0.05))
else:
    end = time.time() + 3.0
    while time.time() < end:
        spells.append(spell(0.002))
        time.sleep(0.098)
time.sleep(2.5)  # alive while the samples that saw the work arrive
print(json.dumps(spells), flush=True)
"""


def probe(gpu, pattern: str) -> dict:
    child = subprocess.Popen([sys.executable, "-c", CHILD, pattern], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout.readline().strip() == "ready"
    watcher = gpu_activity.Watcher(gpu, every_s=0.05).start()
    time.sleep(1.0)  # its warm-up matmuls' samples are before this
    t0 = gpu_activity.now_us()
    child.stdin.write("go\n")
    child.stdin.flush()
    spells = json.loads(child.stdout.readline())
    child.wait()
    samples = [s for s in watcher.since(t0) if s.pid == child.pid]
    watcher.stop()
    first, last = spells[0][0], spells[-1][1]
    busy_s = sum(b - a for a, b in spells) / 1e6
    gaps = [(s.time_us - prev.time_us) / 1e3 for prev, s in zip(samples, samples[1:])]
    return {"pattern": pattern, "spells": len(spells), "busy_s": round(busy_s, 3),
            "work_span_s": round((last - first) / 1e6, 3),
            "samples": [{"t_after_first_start_ms": round((s.time_us - first) / 1e3, 1),
                         "t_after_last_end_ms": round((s.time_us - last) / 1e3, 1), "sm": s.sm} for s in samples],
            "sample_gap_ms_median": sorted(gaps)[len(gaps) // 2] if gaps else None,
            "busy_samples": sum(s.sm >= gpu_activity.BUSY_SM for s in samples),
            "max_lag_after_end_ms": round(max(((s.time_us - last) / 1e3 for s in samples if s.sm > 0),
                                              default=0.0), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    try:
        gpu, why = gpu_activity.open_gpu(uuid=gpu_activity.torch_uuid())
    except (AssertionError, RuntimeError) as e:  # no CUDA here
        gpu, why = None, str(e)
    if gpu is None:
        print(f"no per-process NVML samples here: {why}", file=sys.stderr)
        return 2
    out = [probe(gpu, p) for p in ("long", "short", "bursts")]
    for r in out:
        sms = [s["sm"] for s in r["samples"]]
        print(f"{r['pattern']:7s} {r['spells']:3d} spells, {r['busy_s']:.3f} s busy over {r['work_span_s']:.2f} s: "
              f"{len(sms)} samples (median gap {r['sample_gap_ms_median']} ms), {r['busy_samples']} at >= "
              f"{gpu_activity.BUSY_SM}% SM, SM % {sms[:12]}{' ...' if len(sms) > 12 else ''}; last non-zero sample "
              f"{r['max_lag_after_end_ms']} ms after the work ended")
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
