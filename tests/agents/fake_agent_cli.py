"""A fake headless coding-agent CLI for the external-operator tests.

    python fake_agent_cli.py MODE        (run in the workspace avo prepared)

MODE, or the first line of the file $FAKE_AGENT_PLAN (popped per run) when MODE is "plan":
  edit    checks the workspace, doubles BLOCK_N in kernel.py, runs ./check, prints its
          verdict and a claude-style JSON result with total_cost_usd, exits 0
  hang    starts a child that sleeps too, then sleeps (killed at the wall-time budget);
          writes both pids to $FAKE_AGENT_PIDS
  delete  removes kernel.py and exits 0
  spend   reports a growing cost (0.5, 1.0, 2.0 ... USD) every 0.2 s (killed at the cost budget)
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path


def pop_plan() -> str:
    plan = Path(os.environ["FAKE_AGENT_PLAN"])
    lines = plan.read_text().splitlines()
    plan.write_text("\n".join(lines[1:]) + "\n")
    return lines[0].strip()


def edit() -> int:
    for need in ("kernel.py", "parent.py", "TASK.md", "LINEAGE.md", "DIRECTIONS.md", "knowledge_base/README.md",
                 "check"):
        if not Path(need).exists():
            print(f"workspace is missing {need}", file=sys.stderr)
            return 3
    print("reading TASK.md and LINEAGE.md")
    kernel = Path("kernel.py")
    source = kernel.read_text()
    m = re.search(r"^BLOCK_N = (\d+)", source, re.M)
    new = int(m.group(1)) * 2
    kernel.write_text(source[:m.start()] + f"BLOCK_N = {new}" + source[m.end():])
    check = subprocess.run(["./check"], capture_output=True, text=True)
    print(f"./check exit {check.returncode}: {check.stdout.strip()}")
    print(json.dumps({"type": "result", "total_cost_usd": 0.0123,
                      "result": f"BLOCK_N {m.group(1)} -> {new}: fewer inner-loop trips"}))
    return 0


def hang() -> int:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    if os.environ.get("FAKE_AGENT_PIDS"):
        Path(os.environ["FAKE_AGENT_PIDS"]).write_text(f"{os.getpid()} {child.pid}\n")
    print("thinking very hard", flush=True)
    time.sleep(600)
    return 0


def delete() -> int:
    Path("kernel.py").unlink()
    print("I removed kernel.py; nothing to optimise")
    return 0


def spend() -> int:
    cost = 0.5
    while True:
        print(json.dumps({"type": "progress", "total_cost_usd": cost}), flush=True)
        cost *= 2
        time.sleep(0.2)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "edit"
    if mode == "plan":
        mode = pop_plan()
    sys.exit({"edit": edit, "hang": hang, "delete": delete, "spend": spend}[mode]())
