"""The box that every process running untrusted candidate code is started in.

    from avo.harness import sandbox
    box = sandbox.detect()                 # probed once per process; box.level, box.reason
    argv = box.wrap([sys.executable, "-m", "..."], workdir=work, readonly=[inputs_dir])
    proc = sandbox.spawn(argv, env=env, cwd=work, pass_fds=(fd,), stdout=subprocess.PIPE)
    ...
    sandbox.kill_tree(proc)                # SIGKILL the whole box; fine if it is already dead

Linux namespaces through util-linux `unshare`, no bubblewrap. `unshare` runs a small
trusted prelude (avo/harness/sandbox_prelude.py, run as a script with `python -I -S`) that
arranges the mounts as root of the new mount namespace, forks the real program with its
privileges dropped, and stays behind as the namespace's PID 1 until the program exits. About
50 ms per box on an idle core (~100 ms on a loaded one), on top of the program's own start.

Levels (`box.level`):
  "namespaces"       (we are root) new network, PID and mount namespaces. Inside: only a
                     loopback that is down; /proc shows only the box's processes; every host
                     mount is re-mounted read-only except /proc, /sys and /dev; private tmpfs on
                     /tmp and /dev/shm (1 GiB each); `workdir` is the only writable host path;
                     directories uid 65534 could not enter (e.g. /root holding pyenv's Python)
                     are replaced by an empty tmpfs with only the needed paths bound back. The
                     program runs as uid/gid 65534, no supplementary groups, no capabilities,
                     no_new_privs. PID 1 of the box is the root-owned, non-dumpable prelude: the
                     program can neither signal nor trace it, and when it dies the kernel kills
                     every process of the box.
  "user-namespaces"  (not root, unprivileged user namespaces allowed) the same namespaces and
                     mounts inside a user namespace; the program keeps the caller's own uid
                     (shown as 0 inside) with every capability dropped. Weaker: it reads what the
                     caller can read, and it runs on the kernel's user-namespace attack surface.
  "none"             a plain child process: `wrap` returns argv unchanged. Only what `spawn`
                     gives (own session, death with its parent, no core dumps) and the caller's
                     timeout. The program can read the parent's /proc/<pid>/environ, use the
                     network and write wherever the caller can. `box.reason` says why.
AVO_SANDBOX=none forces "none" (escape hatch for platforms where namespaces misbehave);
AVO_SANDBOX=namespaces or =user-namespaces demands that level and makes a failed probe an error.

Two switches of `wrap` loosen a box for CUDA IPC between a judge outside and a program inside,
should the GPU show that it needs them:
  private_shm=False   the host's /dev/shm instead of a private one (writable by the program;
                      torch's CUDA IPC keeps a reference count in a /dev/shm file, created 0600).
  private_pids=False  the host's PID namespace (legacy cudaIpc*MemHandle is reported not to work
                      across PID namespaces). Then /proc is a fresh hidepid=invisible instance
                      ("namespaces": the program sees only uid 65534's processes, other boxes
                      included, and can trace those) or the host's ("user-namespaces"); the
                      prelude is a child subreaper that kills what the program leaves behind
                      when it exits, and kill_tree hunts descendants; but a program that clears
                      its own PR_SET_PDEATHSIG outlives a parent that dies without kill_tree.

What no level guards against: the GPU (the box shares the device with the judge; it can fill
its memory, hang it, observe timings); kernel exploits; CPU time, memory and disk use beyond
what the caller limits (no cgroups here: the caller's timeout and kill_tree are the limit, the
tmpfs mounts are sized); reading anything world-readable on the host (the box hides /tmp,
/dev/shm and non-enterable directories, nothing else); world-writable device nodes (/dev is the
host's, on purpose: CUDA needs /dev/nvidia*); Unix sockets in the file system that it may open
(network namespaces do not cover them; read-only mounts do not stop connect()); System V IPC
(no IPC namespace, so CUDA IPC keeps working).

Notes for callers: everything in `workdir` is chowned to the box's uid and must afterwards be
treated as hostile (open results with O_NOFOLLOW; a result file can be a symlink). In a
"namespaces" box files in `readonly` paths must be world-readable (a 0600 mkstemp file is not).
Inside a box HOME, TMPDIR and TRITON_CACHE_DIR point into `workdir` (or /tmp for TMPDIR) unless
the given env already does. A program killed by signal N exits as 128+N (PID 1 of a namespace
cannot re-raise it); at level "none" the returncode is -N as usual. PR_SET_PDEATHSIG fires when
the *thread* that called `spawn` exits: spawn from a long-lived thread.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

# the box side (what unshare runs): its Linux constants stay importable from here
from avo.harness.cores import descendants
from avo.harness.sandbox_prelude import (LINUX_CAPABILITY_VERSION_3, MNT_DETACH, MS_BIND, MS_NOATIME,  # noqa: F401
                                         MS_NODEV, MS_NODIRATIME, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY,
                                         MS_REC, MS_RELATIME, MS_REMOUNT, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL,
                                         PR_CAPBSET_DROP, PR_SET_CHILD_SUBREAPER, PR_SET_DUMPABLE,
                                         PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG, TMPFS_OPTIONS, _libc)

LEVELS = ("namespaces", "user-namespaces", "none")
NOBODY = 65534                    # uid and gid the program runs as in a "namespaces" box
PROBE_TIMEOUT_S = 20.0            # generous: the probe may run on a loaded 2-core machine
NAMESPACES = ["--net", "--mount", "--fork", "--kill-child", "--propagation", "private"]   # + --pid --mount-proc

PRELUDE = Path(__file__).resolve().with_name("sandbox_prelude.py")   # what unshare runs inside the box


class SandboxUnavailable(RuntimeError):
    """AVO_SANDBOX demanded a level whose probe failed."""


# ------------------------------------------------------------------ parent side
@dataclass(frozen=True)
class Box:
    level: str                    # "namespaces" | "user-namespaces" | "none"
    reason: str = ""              # why not a stronger level (one line); empty for "namespaces"
    unshare: str = ""             # path of util-linux unshare when level is not "none"

    def wrap(self, argv: Sequence[str], *, workdir: Path, readonly: Sequence[Path] = (),
             private_shm: bool = True, private_pids: bool = True) -> list[str]:
        """argv that runs `argv` inside this box. `workdir` (must exist) becomes the only writable
        host path; `readonly` paths stay visible read-only even under /tmp or /dev/shm.
        Two switches for CUDA IPC, both weakening the box (see the module docstring):
        private_shm=False shares the host's /dev/shm (writable then); private_pids=False keeps
        the host's PID namespace (legacy cudaIpc*MemHandle is reported not to work across
        PID namespaces)."""
        if self.level == "none":
            return list(argv)
        workdir = Path(workdir).resolve(strict=True)
        if not workdir.is_dir():
            raise NotADirectoryError(workdir)
        shown = {Path(p).resolve(strict=True) for p in [*_runtime_paths(), *readonly]}
        if workdir in shown:
            raise ValueError(f"{workdir} cannot be both the workdir and read-only")
        # a read-only path inside another one needs no mount of its own, unless the workdir lies between
        shown = {p for p in shown if not any(q in p.parents and not (q in workdir.parents and workdir in p.parents)
                                             for q in shown)}
        uid = NOBODY if self.level == "namespaces" else None
        if uid is not None:
            _hand_over(workdir, uid)
        config = dict(workdir=str(workdir), readonly=sorted(map(str, shown)), uid=uid, private_shm=private_shm,
                      private_pids=private_pids)
        user = ["--user", "--map-root-user"] if self.level == "user-namespaces" else []
        pids = ["--pid", "--mount-proc"] if private_pids else []
        return [self.unshare, *user, *NAMESPACES, *pids,
                sys.executable, "-I", "-S", "-B", str(PRELUDE), json.dumps(config), "--", *argv]


def _runtime_paths() -> list[Path]:
    """What every box needs to see: the repository and the Python installation (the venv's
    interpreter may live in a directory the box's uid cannot enter, e.g. /root/.pyenv)."""
    from avo.problem import REPO_ROOT

    return [REPO_ROOT, Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix),
            Path(sys.base_exec_prefix), Path(sys.executable).resolve().parent]


def _hand_over(workdir: Path, uid: int) -> None:
    """chown -R workdir to the box's uid (symlinks themselves, never their targets)."""
    os.chown(workdir, uid, uid)
    for root, dirs, files in os.walk(workdir):
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, uid)


@lru_cache(maxsize=1)
def detect() -> Box:
    """The strongest level this platform runs, probed once per process by running `true` in it."""
    wanted = os.environ.get("AVO_SANDBOX", "").strip()
    if wanted == "none":
        return Box("none", "AVO_SANDBOX=none")
    if wanted and wanted not in LEVELS:
        raise ValueError(f"AVO_SANDBOX={wanted!r}: expected one of {', '.join(LEVELS)}")
    unshare = shutil.which("unshare")
    if unshare is None:
        if wanted:
            raise SandboxUnavailable(f"AVO_SANDBOX={wanted} but util-linux `unshare` is not installed")
        return Box("none", "util-linux `unshare` is not installed")
    candidates = [wanted] if wanted else (["namespaces"] if os.geteuid() == 0 else []) + ["user-namespaces"]
    reasons = []
    for level in candidates:
        failure = _probe(Box(level, unshare=unshare))
        if failure is None:
            return Box(level, "; ".join(reasons), unshare)
        reasons.append(f"{level}: {failure}")
    if wanted:
        raise SandboxUnavailable(f"AVO_SANDBOX={wanted} but the probe failed: {reasons[-1]}")
    return Box("none", "; ".join(reasons))


def _probe(box: Box) -> str | None:
    """None when `true` runs in the box, else one line saying what went wrong."""
    with tempfile.TemporaryDirectory(prefix="avo-probe-") as work:
        try:
            argv = box.wrap(["true"], workdir=Path(work))
            proc = spawn(argv, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, cwd=Path(work),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except OSError as e:
            return f"{type(e).__name__}: {e}"
        try:
            _, err = proc.communicate(timeout=PROBE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            kill_tree(proc)
            return f"`true` did not finish within {PROBE_TIMEOUT_S:.0f} s"
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines() or [f"exit status {proc.returncode}"]
        return lines[-1][:300]
    return None


def spawn(argv: Sequence[str], *, env: dict, cwd: Path, pass_fds: Sequence[int] = (),
          stdin=None, stdout=None, stderr=None) -> subprocess.Popen:
    """Popen in a new session (its own process group, for kill_tree), SIGKILLed when the calling
    thread's process dies (PR_SET_PDEATHSIG), without core dumps. fds in `pass_fds` keep their
    numbers inside a box too (unshare and the prelude leave inherited descriptors alone)."""
    parent = os.getpid()

    def dies_with_parent() -> None:   # runs in the child between fork and exec: trusted, async-safe enough
        _libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:    # the parent died before prctl took effect
            os._exit(137)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return subprocess.Popen(list(argv), env=env, cwd=cwd, pass_fds=tuple(pass_fds), stdin=stdin, stdout=stdout,
                            stderr=stderr, start_new_session=True, preexec_fn=dies_with_parent)


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL proc's process group and every process below proc, then reap proc. In a box
    with its own PID namespace the group holds unshare and the box's PID 1, whose death takes
    every process of the box with it. Without one (private_pids=False, level "none") processes
    that left the group are found as descendants; one forked in the moment between the look
    and the kill escapes. Never raises for a process that is already gone."""
    below = descendants(proc.pid) if proc.returncode is None else set()
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.kill()                       # no-op once reaped; covers a proc that changed its group
    for pid in below:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
