"""A promotion is also a git commit: of the lineage files, and of nothing else.

Other people (and other engineers' tools) stage work in the same repository, so
we never commit the index as it stands: `git add -- <lineage>` stages only the
lineage's new files, and `git commit --only -- <lineage>` commits those paths
alone, leaving whatever else is staged exactly as it was. Nothing here raises:
no git, no repository, a merge in progress or a failing commit give a
GitOutcome saying why, and the evolve run goes on.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# Git states in which a commit of ours would land in someone's half-done operation.
_BUSY_MARKERS = ("MERGE_HEAD", "CHERRY_PICK_HEAD", "REVERT_HEAD", "rebase-merge", "rebase-apply")


@dataclass(frozen=True)
class GitOutcome:
    committed: bool
    detail: str  # the new commit's short sha, or why nothing was committed


def _git(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def work_tree_of(path: Path) -> Path | None:
    """The git work tree containing `path`, or None (no git, or not in a repo)."""
    if shutil.which("git") is None:
        return None
    probe = path if path.is_dir() else path.parent
    while not probe.exists():
        probe = probe.parent
    try:
        r = _git(probe, "rev-parse", "--show-toplevel")
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(r.stdout.strip()) if r.returncode == 0 else None


def busy_reason(top: Path) -> str | None:
    """Why committing now would be unsafe (a merge/rebase in progress), if so."""
    for marker in _BUSY_MARKERS:
        r = _git(top, "rev-parse", "--git-path", marker)
        if r.returncode == 0 and (top / r.stdout.strip()).exists():
            return f"a git operation is in progress ({marker})"
    return None


def should_git_commit(setting: str, lineage_root: Path) -> bool:
    """params.yaml lineage.git_commit: "on", "off", or "auto": on inside a git work
    tree, except inside a DVC experiment (`dvc exp run` sets DVC_EXP_NAME), where DVC
    itself commits the stage's results to the experiment's ref; a commit of ours
    would move the HEAD the experiment is based on."""
    import os

    if setting == "off":
        return False
    if setting == "auto" and os.environ.get("DVC_EXP_NAME"):
        return False
    return setting == "on" or work_tree_of(lineage_root) is not None


def commit_paths(paths: list[Path], message: str, retries: int = 20) -> GitOutcome:
    """Commit exactly `paths` (files or folders in one work tree)."""
    try:
        top = work_tree_of(paths[0])
        if top is None:
            return GitOutcome(False, "not inside a git work tree")
        busy = busy_reason(top)
        if busy:
            return GitOutcome(False, busy)
        specs = [str(Path(p).resolve().relative_to(top)) for p in paths]
        for attempt in range(retries):
            # index.lock: another process (an engineer, an editor) is mid-git; wait a little
            add = _git(top, "add", "--", *specs)
            if add.returncode == 0:
                break
            if "index.lock" not in add.stderr or attempt == retries - 1:
                return GitOutcome(False, f"git add failed: {add.stderr.strip()[:200]}")
            time.sleep(0.25)
        if _git(top, "diff", "--cached", "--quiet", "--", *specs).returncode == 0:
            return GitOutcome(False, "nothing to commit in the lineage")
        for attempt in range(retries):
            r = _git(top, "commit", "--only", "-m", message, "--", *specs)
            if r.returncode == 0:
                sha = _git(top, "rev-parse", "--short", "HEAD").stdout.strip()
                return GitOutcome(True, sha)
            if "index.lock" not in r.stderr or attempt == retries - 1:
                return GitOutcome(False, f"git commit failed: {(r.stderr or r.stdout).strip()[:200]}")
            time.sleep(0.25)
    except (OSError, subprocess.SubprocessError, ValueError) as e:
        return GitOutcome(False, f"git failed: {e}")
    return GitOutcome(False, "git commit did not run")
