"""A promotion commits the lineage files to git and nothing else; no git repo is
not an error. Uses a temporary git repository (about half a second)."""
import subprocess

import pytest

from avo.config import LineageConfig
from avo.git_commit import commit_paths, should_git_commit
from avo.lineage import Lineage
from avo.promotion import promote
from tests.fake_results import make_candidate, make_result


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path):
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.name", "t")
    git(tmp_path, "config", "user.email", "t@t")
    (tmp_path / "other.py").write_text("x = 1\n")
    git(tmp_path, "add", "other.py")
    git(tmp_path, "commit", "-qm", "init")
    seed = tmp_path / "seed.py"
    seed.write_text("# seed\n")
    lin = Lineage(tmp_path / "kernel_src" / "lineage")
    lin.init_from_seed(seed, make_result((100.0, 100.0)))
    return tmp_path, lin


def test_promotion_commits_only_lineage_files(repo):
    top, lin = repo
    # someone else's staged and unstaged work must stay exactly as it is
    (top / "other.py").write_text("x = 2\n")
    git(top, "add", "other.py")
    (top / "scratch.txt").write_text("untracked\n")
    # about git, not the confirmation re-measure: a GPU result without one may commit here
    p = promote(lin, make_candidate("# v1\n"), make_result((120.0, 120.0)), LineageConfig(require_confirm_cuda=False))
    assert p.decision.committed and p.git and p.git.committed, p
    assert git(top, "log", "-1", "--format=%s").strip() == "lineage v1: block_n=128 (heuristic, from v0)"
    files = git(top, "show", "--name-only", "--format=", "HEAD").split()
    assert "other.py" not in files and "scratch.txt" not in files
    assert any(f.endswith("v0001/kernel.py") for f in files)
    assert any(f.endswith("attempts.jsonl") for f in files)
    assert git(top, "diff", "--cached", "--name-only").split() == ["other.py"]  # still staged
    assert "?? scratch.txt" in git(top, "status", "--porcelain")


def test_rejected_candidate_makes_no_git_commit(repo):
    top, lin = repo
    head = git(top, "rev-parse", "HEAD")
    p = promote(lin, make_candidate("# slow\n"), make_result((10.0, 10.0)), LineageConfig())
    assert not p.decision.committed and p.git is None
    assert git(top, "rev-parse", "HEAD") == head


def test_outside_git_is_not_an_error(tmp_path):
    lin = Lineage(tmp_path / "lineage")
    assert not should_git_commit("auto", lin.root)
    assert should_git_commit("off", lin.root) is False
    out = commit_paths([tmp_path], "msg")
    assert not out.committed and "not inside a git work tree" in out.detail


def test_merge_in_progress_is_left_alone(repo):
    top, lin = repo
    (top / ".git" / "MERGE_HEAD").write_text(git(top, "rev-parse", "HEAD"))
    out = commit_paths([lin.root], "msg")
    assert not out.committed and "MERGE_HEAD" in out.detail
