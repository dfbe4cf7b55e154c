"""`avo serve` checks that run before Prefect serves anything (issue 15, points 2 and 8).

- a cron string Prefect would reject ends in one line, exit 2 (not a pydantic traceback);
- with no Prefect server to fire the schedule (no PREFECT_API_URL in the environment
  or the Prefect profile) `avo serve` says what to do and exits 2, instead of
  polling forever on a temporary API where schedules never fire.

The command itself lives in avo/commands/evolve.py; `guarded(serve)` wraps it with
the same options (functools.wraps: typer reads the wrapped signature).
"""
from __future__ import annotations

import functools
import os
import sys

import typer

START_SERVER = ("start one with `prefect server start` (another terminal), then "
                "`export PREFECT_API_URL=http://127.0.0.1:4200/api` and run `avo serve` again; "
                "or run `avo evolve` yourself (e.g. from your own crontab)")


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def cron_problem(cron: str) -> str:
    """'' when Prefect accepts the cron string, else one line saying why not."""
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    try:
        CronSchedule(cron=cron)
    except ValidationError as e:
        why = e.errors()[0].get("msg", "invalid") if e.errors() else "invalid"
        return (f"--cron {cron!r} is not a cron schedule ({why.removeprefix('Value error, ')}); "
                "use five fields: minute hour day-of-month month day-of-week, e.g. '0 2 * * *'")
    return ""


def prefect_api_url() -> str:
    """The API URL Prefect will use: the environment, else the active Prefect profile."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    try:
        from prefect.settings import get_current_settings

        return str(get_current_settings().api.url or "")
    except Exception:  # noqa: BLE001 - an unreadable profile: treat as unset
        return ""


def check(cron: str | None, params: str | None) -> None:
    if cron is None:  # the schedule params.yaml gives (the command reports config errors itself)
        from avo.config import ConfigError, load_config

        try:
            cron = load_config(params).evolve.serve_cron
        except ConfigError as e:
            fail(str(e))
    problem = cron_problem(cron)
    if problem:
        fail(problem)
    if not prefect_api_url():
        fail("`avo serve` needs a Prefect server to fire its schedule, and PREFECT_API_URL is not set: "
             + START_SERVER)


def guarded(serve):
    @functools.wraps(serve)
    def wrapper(*args, **kwargs):
        check(kwargs.get("cron"), kwargs.get("params"))
        return serve(*args, **kwargs)

    return wrapper
