"""External coding agents as the variation operator (agents/external.py), with a
fake agent CLI (tests/agents/fake_agent_cli.py) that edits, checks, hangs,
deletes the kernel or overspends."""
from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

import pytest

from agents.external import AgentCommandUnavailable, ExternalAgentFailed, ExternalOperator
from avo.operators.base import VaryContext

FAKE = Path(__file__).with_name("fake_agent_cli.py")


def agent_cmd(mode: str) -> str:
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE))} {mode}"


def context(lineage, generation=1):
    v0 = lineage.get(0)
    return VaryContext(parent_version=0, parent_source=v0.source, parent_result=v0.result, generation=generation,
                       slot=0, directions=["try larger key tiles"])


def test_agent_edits_the_kernel_calls_check_and_reports_cost(lineage):
    # ./check runs the real `avo bench --quick` on the CPU interpreter
    op = ExternalOperator(agent_cmd("edit"), lineage=lineage, device="cpu", wall_s=120)
    cand = op.vary(context(lineage))
    assert cand.operator == "external" and cand.parent == 0
    assert "BLOCK_N = 128" in cand.source and "BLOCK_N = 64" not in cand.source
    assert cand.technique.name == "external: BLOCK_N 64 -> 128: fewer inner-loop trips"
    assert cand.meta["cost_usd"] == pytest.approx(0.0123) and cand.meta["agent_exit"] == 0
    assert "./check exit 0: verdict: ok" in cand.meta["transcript_tail"]
    saved = Path(cand.meta["transcript"])
    assert saved.parent == lineage.root / "transcripts" and "verdict: ok" in saved.read_text()


def test_hanging_agent_is_killed_at_its_budget(lineage, tmp_path):
    pids = tmp_path / "pids"
    op = ExternalOperator(agent_cmd("hang"), lineage=lineage, device="cpu", wall_s=1.5,
                          check_cmd="true", env={**os.environ, "FAKE_AGENT_PIDS": str(pids)})
    t0 = time.monotonic()
    with pytest.raises(ExternalAgentFailed, match="wall-time budget") as e:
        op.vary(context(lineage))
    assert time.monotonic() - t0 < 8 and "\n" not in str(e.value)
    for pid in map(int, pids.read_text().split()):  # the agent and its child: the whole group is gone
        deadline = time.monotonic() + 3
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)
    attempt = lineage.attempts()[-1]
    assert attempt["operator"] == "external" and attempt["status"] == "timeout"
    assert "thinking very hard" in Path(str(e.value).split("transcript ")[-1]).read_text()


def test_agent_that_deletes_the_kernel_is_a_clear_failed_attempt(lineage):
    op = ExternalOperator(agent_cmd("delete"), lineage=lineage, device="cpu", check_cmd="true")
    with pytest.raises(ExternalAgentFailed, match="left no kernel.py"):
        op.vary(context(lineage))
    attempt = lineage.attempts()[-1]
    assert attempt["operator"] == "external" and attempt["status"] == "rejected"
    assert "left no kernel.py" in attempt["message"]


def test_cost_budget_kills_an_agent_that_reports_overspending(lineage):
    op = ExternalOperator(agent_cmd("spend"), lineage=lineage, device="cpu", check_cmd="true",
                          wall_s=30, max_cost_usd=1.5)
    t0 = time.monotonic()
    with pytest.raises(ExternalAgentFailed, match="cost budget"):
        op.vary(context(lineage))
    assert time.monotonic() - t0 < 10


def test_missing_agent_program_is_one_line():
    with pytest.raises(AgentCommandUnavailable, match="not an executable on PATH"):
        ExternalOperator("no-such-coding-agent -p 'do it'").preflight()
    ExternalOperator(agent_cmd("edit")).preflight()
    with pytest.raises(AgentCommandUnavailable):
        ExternalOperator("   ")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (killed, not yet reaped by its parent) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False
