"""The box side of avo/harness/sandbox.py: the trusted prelude `unshare` runs.

    python -I -S -B sandbox_prelude.py CONFIG -- ARGV...

Inside fresh mount/net(/PID) namespaces, as (namespace) root, it arranges the mounts
(the host read-only, private tmpfs on /tmp and /dev/shm, the work directory the one
writable host path), forks the program with its privileges dropped, and stays behind
as the namespace's PID 1 (or a child subreaper) until the program exits. sandbox.py
(the parent side: Box.wrap, detect, spawn, kill_tree) says what each level gives.

Standalone on purpose: run with -I -S it sees neither site-packages nor the avo
package, so it imports the standard library only.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import signal
import sys
from pathlib import Path

TMPFS_OPTIONS = "mode=1777,size=1g"
# Linux constants (x86_64 and aarch64 share them)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_REC, MS_PRIVATE, MS_RELATIME = 1 << 14, 1 << 18, 1 << 21
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 36, 38, 47, 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522


_libc = ctypes.CDLL(None, use_errno=True)   # loaded before any fork: preexec_fn only calls into it


def _prelude(config: dict, argv: list[str]) -> None:
    """Inside fresh mount/net(/PID) namespaces, as (namespace) root: arrange the mounts, then fork
    the program with privileges dropped and wait for it as PID 1 (or as a child subreaper)."""
    workdir, uid = config["workdir"], config["uid"]
    cwd = os.getcwd()   # resolved again after the mounts: the old directory may be covered
    # Nothing below may propagate to the host (unshare --propagation private did this already).
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    # Handles on every path that must stay visible, taken before any tmpfs covers it; bound back
    # later through /proc/self/fd/N, which reaches the directory even when its path is covered.
    kept = {p: False for p in config["readonly"]} | {workdir: True}   # path -> writable
    handles = {p: os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for p in kept}

    # The whole host read-only. /proc is the box's own, /sys needs real root to write, /dev
    # must keep working (CUDA opens /dev/nvidia*, device nodes ignore read-only mounts anyway).
    for mountpoint, fstype in _mounts():
        if any(mountpoint == top or mountpoint.startswith(top + "/") for top in ("/proc", "/sys", "/dev")):
            continue
        if fstype == "proc":          # another view of the host's processes: drop it
            _umount(mountpoint)
            continue
        try:
            flags = os.statvfs(mountpoint).f_flag
        except OSError as e:
            if e.errno in (errno.EACCES, errno.ENOTCONN):   # e.g. another user's FUSE mount: closed to
                continue                                    # root, so to the program too
            raise
        if not flags & os.ST_RDONLY:
            _remount(mountpoint, readonly=True)

    # Covers (fresh tmpfs) and the kept paths bound back, shallowest first so that a deeper
    # bind or cover lands on top of a shallower one. /tmp and /dev/shm get private writable
    # ones; a directory the program's uid may not enter (e.g. /root above pyenv's Python) gets
    # an empty read-only one that shows only the kept paths inside it.
    covers = ["/tmp"] + (["/dev/shm"] if config["private_shm"] else [])
    hiding = sorted({a for p in kept for a in _unenterable_ancestors(p, uid)}) if uid is not None else []
    steps = sorted([(c, None) for c in set(covers + hiding)] + [(p, w) for p, w in kept.items()],
                   key=lambda step: (step[0].count("/"), step[1] is not None))
    for path, writable in steps:
        os.makedirs(path, exist_ok=True)          # only ever creates inside a fresh tmpfs
        if writable is None:
            options = "mode=0755,size=1m" if path in hiding else TMPFS_OPTIONS
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, options)
        else:
            _mount(f"/proc/self/fd/{handles[path]}", path, None, MS_BIND | MS_REC)
            _remount(path, readonly=not writable)
    for path in hiding:                           # now that the kept paths are bound into them
        _remount(path, readonly=True)
    if not config["private_pids"] and uid is not None:
        # Host PID namespace: a /proc of our own that shows the program only processes of its uid.
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=invisible")
    try:
        os.chdir(cwd)
    except OSError as e:
        raise OSError(f"the working directory {cwd} is not visible inside the box ({e.strerror})") from None

    env = dict(os.environ, HOME=workdir)
    for name, default in (("TRITON_CACHE_DIR", f"{workdir}/.triton"), ("TMPDIR", "/tmp")):
        if not os.environ.get(name, "").startswith(workdir + "/"):
            env[name] = default

    if not config["private_pids"]:                # orphans of the program become our children
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
    child = os.fork()
    if child == 0:
        try:
            _drop_privileges(uid)
            os.execvpe(argv[0], argv, env)
        except BaseException as e:  # noqa: BLE001 - one line to stderr, never back into the prelude
            os.write(2, f"avo sandbox: cannot run {argv[0]}: {e}\n".encode())
        os._exit(127)
    _wait_and_clean_up(child)


def _drop_privileges(uid: int | None) -> None:
    """In the forked child: no capabilities now or after exec, optionally uid/gid `uid`, no_new_privs."""
    last_cap = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last_cap + 1):               # while we still hold CAP_SETPCAP
        _prctl(PR_CAPBSET_DROP, cap)
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    if _libc.capset(header, (ctypes.c_uint32 * 6)()) != 0:   # effective, permitted, inheritable: none
        raise OSError(ctypes.get_errno(), "capset")
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL))      # the uid change cleared unshare's --kill-child setting


def _wait_and_clean_up(child: int) -> None:
    """Hold no descriptor (pipes see EOF when the program exits), be untraceable, reap orphans;
    once the program exits kill whatever it left running (in a PID namespace the kernel does
    that when we exit; as a subreaper we do it), then exit with the program's status (128+N for
    a signal: PID 1 of a namespace cannot re-raise one; the same code without one, for one meaning)."""
    os.closerange(0, os.sysconf("SC_OPEN_MAX"))
    _prctl(PR_SET_DUMPABLE, 0)
    while True:
        pid, status = os.wait()
        if pid == child:
            break
    while True:
        try:
            for orphan in Path(f"/proc/self/task/{os.getpid()}/children").read_text().split():
                os.kill(int(orphan), signal.SIGKILL)
        except OSError:                           # a kernel without CONFIG_PROC_CHILDREN
            break
        try:
            os.wait()
        except ChildProcessError:
            break
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


def _unenterable_ancestors(path: str, uid: int) -> list[str]:
    """Directories above `path` that `uid` (without groups) may not search."""
    found, parts = [], Path(path).parts
    for i in range(2, len(parts)):
        ancestor = os.path.join(*parts[:i])
        st = os.stat(ancestor)
        if not (st.st_mode & 0o001 or (st.st_uid == uid and st.st_mode & 0o100)
                or (st.st_gid == uid and st.st_mode & 0o010)):
            found.append(ancestor)
    return found


def _mounts() -> list[tuple[str, str]]:
    """(mount point, file system type) of this mount namespace, from /proc/self/mountinfo."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, rest = line.partition(" - ")
        mountpoint = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields.split()[4])   # \040 is a space
        out.append((mountpoint, rest.split()[0]))
    return out


def _remount(path: str, *, readonly: bool) -> None:
    """Bind-remount `path` read-only or writable, keeping its nosuid/nodev/noexec/atime flags
    (a user namespace refuses to change those)."""
    st_flags = os.statvfs(path).f_flag
    flags = MS_BIND | MS_REMOUNT | (MS_RDONLY if readonly else 0)
    for st_flag, ms_flag in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                             (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME),
                             (os.ST_RELATIME, MS_RELATIME)):
        if st_flags & st_flag:
            flags |= ms_flag
    _mount(None, path, None, flags)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    if _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source or ''} on {target} failed: {os.strerror(err)}")


def _umount(target: str) -> None:
    if _libc.umount2(target.encode(), MNT_DETACH) != 0 and ctypes.get_errno() != errno.EINVAL:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target} failed: {os.strerror(err)}")


def _prctl(option: int, arg: int = 0) -> None:
    if _libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}) failed: {os.strerror(err)}")


if __name__ == "__main__":   # python -I -S sandbox_prelude.py CONFIG -- ARGV..., run by unshare
    try:
        _prelude(json.loads(sys.argv[1]), sys.argv[3:])
    except Exception as e:  # noqa: BLE001 - one line for the probe's reason
        print(f"avo sandbox: {e}", file=sys.stderr)
        sys.exit(125)
