"""Where the core hands over to the edge: the names the CLI takes out of flows/.

The core (avo/) never imports agents/ or flows/: they sit above it and import it.
The CLI, though, lives here and must start a flow, so this module names the edge
instead of importing it, and resolves a name at call time:

    from avo.edge import evolve, make_operator, resolve

`evolve` is the Prefect flow (flows/evolve.py), `temporary_api` Prefect's local
API server (flows/api_server.py); everything else comes from the wiring
(flows/wiring.py). An ImportError here means Prefect (or flows/) is missing.
"""
from __future__ import annotations

import importlib

_WHERE = {"evolve": "flows.evolve",  # the evolve flow
          "temporary_api": "flows.api_server",  # Prefect's temporary API in its own session
          "ApiUnavailable": "flows.api_server"}  # ... which did not start
_WIRING = "flows.wiring"  # builds operator, supervisor, tracker from the config


def __getattr__(name: str):
    module = _WHERE.get(name, _WIRING)
    try:
        return getattr(importlib.import_module(module), name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
