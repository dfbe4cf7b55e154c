"""Prefect flows: one generation as a task DAG (generation.py) and the evolve
loop (evolve.py). Prefect is imported only here and in these modules.

Importing this package first sets Prefect's defaults unless the user set them:
state under <repo>/.prefect (git-ignored), no analytics, and Prefect's
temporary local API (no server to start). Point PREFECT_API_URL at a real
server to see runs in its UI or to let schedules fire.
"""
import os

from avo.config import repo_root

os.environ.setdefault("PREFECT_HOME", str(repo_root() / ".prefect"))  # the project's, not ~/.prefect
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")  # Prefect's client-side telemetry (and its first-run notice)
# The temporary API needs ~10 s to start on a small machine; give it room.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
