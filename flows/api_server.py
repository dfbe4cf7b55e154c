"""Prefect's temporary local API, started by avo in a session of its own.

Prefect starts its temporary API server (a uvicorn subprocess) on demand, in the
caller's process group. In a terminal that group is the foreground group, so a
Ctrl-C reached the server too: it died mid-run, and the evolve process then spent
minutes retrying its websocket ("Unable to connect to ws://…/api/events/in") and
ended in `httpx.ConnectError` tracebacks, sometimes before the candidates in
flight were recorded (issue 15, point 1).

`temporary_api()` starts the same server (`prefect.server.api.server:create_app`
under uvicorn, as Prefect does) with `start_new_session=True`, so the terminal's
SIGINT reaches only avo, whose handler (avo.live.stop_on_signals) finishes the
candidates in flight and returns. The server stops when avo exits (atexit, after
Prefect's own exit hooks have sent their last events), and dies with avo if avo is
killed (PR_SET_PDEATHSIG). Its output goes to <PREFECT_HOME>/temporary-server.log.
When an API URL is configured (PREFECT_API_URL, a Prefect profile, a test
harness), nothing is started.

SIGTERM too: while a flow runs, Prefect's engine swaps in its own SIGTERM handler
(it marks the runs crashed and re-raises), which turned `kill <avo>` into a crash
with a traceback and dropped the candidates in flight. Inside `temporary_api()` the
flows of this process leave SIGTERM to avo (avo.live.stop_on_sigint: finish the
candidates in flight, then stop; `avo evolve` exits 143). Only this process: runs
that a Prefect worker or runner starts (`avo serve`) keep Prefect's handling.
"""
from __future__ import annotations

import atexit
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator

import flows  # noqa: F401  (Prefect defaults, before prefect is imported)

PR_SET_PDEATHSIG = 1


def configured_api_url() -> str | None:
    """The API URL Prefect would use now (environment, profile, temporary settings), or None."""
    from prefect.settings import get_current_settings

    return get_current_settings().api.url or None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ApiUnavailable(RuntimeError):
    """Prefect's temporary API did not start (one line, with its log's path)."""


class TemporaryServer:
    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self, timeout_s: float) -> None:
        import httpx
        import prefect
        from prefect.settings import get_current_settings

        libc = ctypes.CDLL(None, use_errno=True)
        parent = os.getpid()

        def own_session_dies_with_avo() -> None:  # between fork and exec
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
            if os.getppid() != parent:
                os._exit(1)

        env = {**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True),
               "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        env.pop("PREFECT_API_URL", None)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout_s
        for _ in range(5):  # another process may take the port between the probe and the bind
            self.port = _free_port()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(prefect.__file__).parent.parent),
                     "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
                     "--port", str(self.port), "--log-level", "error", "--lifespan", "on"],
                    env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    start_new_session=True, preexec_fn=own_session_dies_with_avo)
            atexit.register(self.stop)
            with httpx.Client(timeout=2.0) as client:
                while time.monotonic() < deadline and self.proc.poll() is None:
                    try:
                        if client.get(f"{self.api_url}/health").status_code == 200:
                            return
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.1)
            if self.proc.poll() is None or "address already in use" not in self._log_text():
                break  # still starting at the deadline, or failed for another reason than the port
        self.stop()
        tail = self._log_text().strip().splitlines()[-1:]
        raise ApiUnavailable(f"Prefect's temporary API did not start within {timeout_s:.0f} s"
                           + (f": {tail[0]}" if tail else "") + f" (log: {self.log_path})")

    def _log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def _sigterm_stays_with_avo() -> Iterator[None]:
    import prefect.flow_engine as engine

    original = getattr(engine, "capture_sigterm", None)
    if original is None:  # another Prefect version: its default handling stays
        yield
        return
    engine.capture_sigterm = nullcontext
    try:
        yield
    finally:
        engine.capture_sigterm = original


@contextmanager
def temporary_api() -> Iterator[str | None]:
    """Yield the API URL this process's flows talk to: the configured one, or a
    temporary server started here in its own session (see the module docstring)."""
    with _sigterm_stays_with_avo():
        with _api() as url:
            yield url


@contextmanager
def _api() -> Iterator[str | None]:
    url = configured_api_url()
    if url:
        yield url
        return
    from prefect.context import refresh_global_settings_context
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect")
    server = TemporaryServer(home / "temporary-server.log")
    server.start(float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()))
    # for this process and any it starts (Dask workers); left in place until exit, because
    # Prefect's exit hooks still talk to the API (without a URL they would start another server)
    os.environ["PREFECT_API_URL"] = server.api_url
    refresh_global_settings_context()
    yield server.api_url
