"""The sandbox every candidate process runs in: what a program inside can and cannot do.

Each test starts a real box (unshare), so they skip only where the platform gives level "none".
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from avo.harness import sandbox
from avo.problem import REPO_ROOT

BOX = sandbox.detect()
needs_box = pytest.mark.skipif(BOX.level == "none", reason=f"no sandbox on this platform: {BOX.reason}")


def run_in_box(code: str, workdir: Path, *, readonly=(), pass_fds=(), timeout=30):
    """Run python `code` in a box; its last stdout line is parsed as JSON."""
    argv = BOX.wrap([sys.executable, "-c", textwrap.dedent(code)], workdir=workdir, readonly=readonly)
    proc = sandbox.spawn(argv, env={"PATH": os.environ["PATH"]}, cwd=workdir, pass_fds=pass_fds,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        sandbox.kill_tree(proc)
    assert proc.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1])


@pytest.fixture
def work(tmp_path):
    path = tmp_path / "work"
    path.mkdir()
    return path


@needs_box
@pytest.mark.parametrize("private_pids", [True, False])
def test_parent_environment_is_invisible_under_proc(work, private_pids):
    """A parent holding a secret in its environment starts the box; nothing under the box's /proc has it."""
    secret = f"avo-fake-secret-{uuid.uuid4().hex}"
    scan = textwrap.dedent(f"""
        import glob, json, os, sys
        hits, read = [], 0
        paths = glob.glob("/proc/*/environ") + glob.glob("/proc/*/task/*/environ") + [f"/proc/{{os.getppid()}}/environ",
                                                                                     f"/proc/{{sys.argv[1]}}/environ"]
        for path in paths:
            try:
                data = open(path, "rb").read()
            except OSError:
                continue
            read += 1
            if {secret!r}.encode() in data:
                hits.append(path)
        print(json.dumps(dict(hits=hits, read=read)))
        """)
    parent = textwrap.dedent(f"""
        import os, subprocess, sys
        from pathlib import Path
        from avo.harness import sandbox
        work = Path({str(work)!r})
        argv = sandbox.detect().wrap([sys.executable, "-c", {scan!r}, str(os.getpid())], workdir=work,
                                     private_pids={private_pids})
        proc = sandbox.spawn(argv, env={{"PATH": "/usr/bin:/bin"}}, cwd=work, stdout=subprocess.PIPE)
        print(proc.communicate(timeout=30)[0].decode(), end="")
        """)
    out = subprocess.run([sys.executable, "-c", parent], cwd=REPO_ROOT, capture_output=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(REPO_ROOT), AVO_FAKE_SECRET=secret))
    assert out.returncode == 0, out.stderr.decode()
    found = json.loads(out.stdout.decode().strip().splitlines()[-1])
    assert found["hits"] == []
    assert found["read"] >= 1          # it could read its own environ: the scan itself worked


@needs_box
def test_no_network_not_even_loopback(work):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    try:
        result = run_in_box(f"""
            import json, socket
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
                print(json.dumps("connected"))
            except OSError as e:
                print(json.dumps(str(e)))
            """, work)
        with pytest.raises(socket.timeout):
            server.accept()[0].close()
    finally:
        server.close()
    assert result != "connected"


@needs_box
def test_repo_venv_and_readonly_paths_cannot_be_written(work, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "given.txt").write_text("given")
    name = f"avo-box-write-{uuid.uuid4().hex}"
    targets = [REPO_ROOT / name, Path(sys.prefix) / name, inputs / name, inputs / "given.txt"]
    try:
        result = run_in_box(f"""
            import json
            written = []
            for path in {[str(t) for t in targets]!r}:
                try:
                    with open(path, "a") as f:
                        f.write("x")
                    written.append(path)
                except OSError:
                    pass
            print(json.dumps(dict(written=written, given=open({str(inputs / "given.txt")!r}).read())))
            """, work, readonly=[inputs])
        assert result == {"written": [], "given": "given"}
        assert not any(t.exists() for t in targets[:3]) and (inputs / "given.txt").read_text() == "given"
    finally:
        for t in targets[:3]:
            t.unlink(missing_ok=True)


@needs_box
def test_private_tmp_and_writable_workdir(work):
    marker = Path("/tmp") / f"avo-box-marker-{uuid.uuid4().hex}"
    marker.write_text("host")
    leak = Path("/tmp") / f"avo-box-leak-{uuid.uuid4().hex}"
    try:
        result = run_in_box(f"""
            import json, os
            open({str(leak)!r}, "w").write("box")
            open("result.txt", "w").write("from the box")
            print(json.dumps(dict(tmp=sorted(os.listdir("/tmp")), marker=os.path.exists({str(marker)!r}))))
            """, work)
        assert result["marker"] is False
        # only the box's own file and the ways down to what the box binds back: the workdir (pytest's
        # tmp_path is under /tmp), and the repository and the venv when they live under /tmp (a CI clone)
        bound = [work, REPO_ROOT, Path(sys.prefix), Path(sys.base_prefix)]
        way_down = {p.parts[2] for p in bound if len(p.parts) > 2 and p.parts[1] == "tmp"}
        assert sorted(result["tmp"]) == sorted({leak.name, *way_down})
        assert not leak.exists()
        assert (work / "result.txt").read_text() == "from the box"
    finally:
        marker.unlink()
        leak.unlink(missing_ok=True)


@needs_box
def test_runs_as_nobody_without_privileges_when_we_are_root(work):
    if os.geteuid() != 0 or os.environ.get("AVO_SANDBOX") == "user-namespaces":
        pytest.skip("the uid change needs root and level namespaces; in a user namespace the box keeps the caller's uid")
    assert BOX.level == "namespaces", BOX.reason
    result = run_in_box("""
        import json, os
        status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
        print(json.dumps(dict(ids=[os.getuid(), os.geteuid(), os.getgid(), os.getegid()], groups=os.getgroups(),
                              caps=status["CapEff"].strip(), bounding=status["CapBnd"].strip(),
                              nnp=status["NoNewPrivs"].strip())))
        """, work)
    assert result == {"ids": [65534] * 4, "groups": [], "caps": "0" * 16, "bounding": "0" * 16, "nnp": "1"}


@needs_box
def test_pass_fds_reach_the_program_and_see_eof_when_it_exits(work):
    read_end, write_end = os.pipe()
    try:
        result = run_in_box(f"""
            import json, os
            os.write({write_end}, b"through the box")
            print(json.dumps("ok"))
            """, work, pass_fds=(write_end,))
        os.close(write_end)
        assert result == "ok"
        assert os.read(read_end, 100) == b"through the box"
        assert os.read(read_end, 100) == b""           # nobody inside still holds the write end
    finally:
        os.close(read_end)


@needs_box
def test_torch_and_triton_import_from_the_read_only_venv(work):
    result = run_in_box("""
        import json, torch, triton
        print(json.dumps([torch.__version__, triton.__version__, float(torch.ones(3).sum())]))
        """, work, timeout=60)
    assert result[2] == 3.0


def _processes() -> dict[int, int]:
    """pid -> parent pid for every live (non-zombie) process."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            state, ppid = stat.rpartition(")")[2].split()[:2]
            if state != "Z":
                table[int(entry)] = int(ppid)
    return table


def _descendants(pid: int) -> set[int]:
    table, found, frontier = _processes(), set(), {pid}
    while frontier:
        frontier = {p for p, parent in table.items() if parent in frontier} - found
        found |= frontier
    return found


def _wait_until(predicate, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@needs_box
def test_box_dies_with_its_parent(work):
    parent_code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from avo.harness import sandbox
        box = sandbox.detect()
        sandbox.spawn(box.wrap(["sleep", "60"], workdir=Path({str(work)!r})), env={{"PATH": "/usr/bin:/bin"}},
                      cwd=Path({str(work)!r}))
        print("spawned", flush=True)
        time.sleep(60)
        """)
    parent = subprocess.Popen([sys.executable, "-c", parent_code], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                              env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    try:
        assert parent.stdout.readline() == b"spawned\n"
        # unshare, the box's PID 1 and sleep
        assert _wait_until(lambda: len(_descendants(parent.pid)) >= 3), _descendants(parent.pid)
        box_processes = _descendants(parent.pid)
        parent.kill()
        parent.wait()
        assert _wait_until(lambda: not (box_processes & set(_processes()))), box_processes & set(_processes())
    finally:
        parent.kill()
        parent.wait()


@needs_box
@pytest.mark.parametrize("private_pids", [True, False])
def test_kill_tree_kills_a_program_that_left_the_process_group(work, private_pids):
    argv = BOX.wrap([sys.executable, "-c", "import os, time; os.setsid(); print('away', flush=True); time.sleep(60)"],
                    workdir=work, private_pids=private_pids)
    proc = sandbox.spawn(argv, env={"PATH": os.environ["PATH"]}, cwd=work, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"away\n"
    box_processes = _descendants(proc.pid)
    assert len(box_processes) >= 2
    sandbox.kill_tree(proc)
    assert _wait_until(lambda: not (box_processes & set(_processes()))), box_processes & set(_processes())
    sandbox.kill_tree(proc)            # already dead and reaped: no exception
    proc.stdout.close()


@needs_box
@pytest.mark.parametrize("private_pids", [True, False])
def test_background_processes_die_when_the_program_exits(work, private_pids):
    # the program exits when told (stdin closed), not after a fixed second: on a loaded machine
    # the second could pass before the tree was read, and the sleeper was gone already
    code = ("import subprocess, sys; p = subprocess.Popen(['sleep', '60'], start_new_session=True); "
            "print(p.pid, flush=True); sys.stdin.read()")
    proc = sandbox.spawn(BOX.wrap([sys.executable, "-c", code], workdir=work, private_pids=private_pids),
                         env={"PATH": os.environ["PATH"]}, cwd=work, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip().isdigit()
    watched = _descendants(proc.pid)               # unshare's tree, the sleeper in it
    assert any("sleep 60" in _cmdline(p) for p in watched)
    proc.stdin.close()
    assert proc.wait(timeout=10) == 0
    proc.stdout.close()
    assert _wait_until(lambda: not (watched & set(_processes()))), watched & set(_processes())
    assert not any("sleep 60" in _cmdline(p) for p in watched)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_avo_sandbox_none_forces_a_plain_process(monkeypatch, work):
    monkeypatch.setenv("AVO_SANDBOX", "none")
    sandbox.detect.cache_clear()
    try:
        box = sandbox.detect()
        assert (box.level, box.reason) == ("none", "AVO_SANDBOX=none")
        assert box.wrap(["true"], workdir=work) == ["true"]
    finally:
        sandbox.detect.cache_clear()


def test_avo_sandbox_rejects_an_unknown_level(monkeypatch):
    monkeypatch.setenv("AVO_SANDBOX", "bubblewrap")
    sandbox.detect.cache_clear()
    try:
        with pytest.raises(ValueError, match="AVO_SANDBOX"):
            sandbox.detect()
    finally:
        sandbox.detect.cache_clear()
