"""Issue 15 points 3 and 6: what `avo evolve` shows outside a terminal, the final
panel, and the note that promotions are git commits.

The piped test runs the real CLI (Prefect's real temporary API) with a slow fake
harness (tests/flows/evolve_driver.py) and stdout a pipe, as `avo evolve | cat`
does: each progress line must arrive when its event happens (not all at the end),
as one plain line (no 80-column wrap, no terminal codes), and the same lines go
to .avo/evolve/<run>/progress.log. About 20 s."""
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from rich.console import Console

from avo.commands import evolve as evolve_cmd

REPO = Path(__file__).resolve().parents[2]
DRIVER = REPO / "tests" / "flows" / "evolve_driver.py"


def test_piped_progress_arrives_as_it_happens_in_plain_lines(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    params = tmp_path / "params.yaml"
    params.write_text("tracking:\n  enabled: false\n"
                      f"lineage:\n  git_commit: 'off'\n  root: {tmp_path / 'lineage'}\n"
                      f"  seed: {REPO / 'kernel_src/attention/seeds/fa2.py'}\n"
                      f"evolve:\n  state_dir: {tmp_path / '.avo'}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PYTEST_", "COLUMNS"))}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), AVO_FAKE_EVAL_S="2", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, str(DRIVER), str(markers), "--", "--params", str(params), "--device",
                             "cpu", "--operator", "heuristic", "--generations", "2", "--population", "1"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    arrived: list[tuple[float, str]] = []
    try:
        for line in proc.stdout:
            arrived.append((time.monotonic(), line.rstrip("\n")))
        proc.wait(timeout=240)
    finally:
        proc.kill()
    end = time.monotonic()
    text = "\n".join(line for _, line in arrived)
    assert proc.returncode == 0, text + proc.stderr.read()
    assert "\x1b[" not in text  # no terminal codes in a pipe

    first_candidate = next(t for t, line in arrived if re.search(r"g\d+ slot 0 ", line))
    assert end - first_candidate > 1.5, text  # printed when it happened, not with the rest at the end
    start = next(line for _, line in arrived if " started at generation " in line)
    assert len(start) > 80 and start.endswith("population 1"), text  # one line, not wrapped at 80 columns
    summary = next(line for _, line in arrived if "evaluated," in line)
    assert "finished" in summary and "committed" in summary and "geomean" in summary, text

    log = next((tmp_path / ".avo" / "evolve").glob("*/progress.log"))
    logged = [line.split(" ", 1)[1] for line in log.read_text().splitlines()]
    shown = [line.split(" ", 1)[1] for _, line in arrived if re.match(r"\d\d:\d\d:\d\d ", line)]
    assert logged == shown and len(logged) >= 5  # start, seed, 2 generations, 2 candidates, end
    assert f"progress log: {log}" in text


def test_final_panel_does_not_count_generations_left_after_the_run():
    p = evolve_cmd.Progress(plain=False)
    p.on_event("start", dict(run_id="r1", resumed=False, generation=1, device="cpu", suite="cpu",
                             operator="heuristic", population=1))
    p.on_event("generation", dict(generation=2, index=2, left={"generations": 1}))
    before = io.StringIO()
    Console(file=before, width=200).print(p.render())
    assert "left: 1 generations" in before.getvalue()
    p.on_event("end", dict(summary=SimpleNamespace(run_id="r1", finished=True, stop_reason="budget: generations")))
    after = io.StringIO()
    Console(file=after, width=200).print(p.render())
    assert "left:" not in after.getvalue() and "run finished" in after.getvalue()


def test_avo_evolve_says_once_that_promotions_are_git_commits(tmp_path, monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(evolve_cmd, "console", Console(file=buf, width=300))
    resolved = lambda setting: SimpleNamespace(cfg=SimpleNamespace(lineage=SimpleNamespace(git_commit=setting)),
                                               lineage_root=tmp_path / "lineage")
    evolve_cmd._say_git_commits(resolved("on"))
    said = buf.getvalue()
    assert "git" in said and "lineage.git_commit: 'off'" in said and str(tmp_path / "lineage") in said
    buf.truncate(0)
    evolve_cmd._say_git_commits(resolved("off"))
    assert buf.getvalue().strip("\x00") == ""
