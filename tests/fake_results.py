"""Hand-made EvalResults and Candidates for lineage, tracking and report tests
(no harness, no GPU: milliseconds)."""
from __future__ import annotations

from avo.candidate import Candidate, Technique
from avo.records import CaseCheck, ConfigTiming, EvalResult

CONFIGS = ("mha b8 s4096 d128 full bf16", "mha b8 s4096 d128 causal bf16")


def make_result(tflops=(100.0, 80.0), status="ok", device="cuda", gpu="NVIDIA H100",
                suite="avo", interpreter=False, message="") -> EvalResult:
    """A result whose per-config TFLOPS are `tflops` (baselines fixed at 120 / 110)."""
    timings = [ConfigTiming(config=c, ms=1.0, tflops=t, cudnn_tflops=120.0, fa2_tflops=110.0)
               for c, t in zip(CONFIGS, tflops)]
    checks = [CaseCheck(shape="mha b1 s17 d128 full bf16", dtype="bfloat16", seed=1,
                        phase="check", max_abs_err=1e-3, rel_err=2e-3, passed=status == "ok")]
    return EvalResult(status=status, message=message, device=device, interpreter=interpreter,
                      suite=suite, env={"gpu": gpu, "torch": "2.11", "triton": "3.6"},
                      checks=checks, timings=timings, compile_stats={"registers": 168, "spills": 0},
                      log_tail="compiled ok\n", wall_s=3.0)


def make_candidate(source="# kernel v?\n", parent=0, operator="heuristic", name="block_n=128",
                   generation=1) -> Candidate:
    return Candidate(source=source, parent=parent, operator=operator,
                     technique=Technique(name=name, expected="+3% on long seqs", why="fewer loop trips"),
                     generation=generation)
