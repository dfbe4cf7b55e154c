"""The errors the layers tell apart, owned by the core so that agents/ raises them
and flows/ catches them by type (neither imports the other).

What each one does to a run, in the generation flow:
    OperatorUnavailable   configuration (no model, no key, no agent CLI): every slot
                          would fail the same way, so the run stops with one line
    ModelUnavailable      the configured model cannot be used: an OperatorUnavailable
    ProposalFailed        this slot's proposal failed (retries spent, no kernel left):
                          the slot fails, the other slots go on
    BudgetExceeded        the operator's token or dollar budget is spent: the run stops
                          cleanly (finished slots are kept, the journal is saved)
Anything else raised by an operator fails its slot too; an error in the harness or
the lineage (not the candidate: that is a status) stops the run for a resume.
"""
from __future__ import annotations


class OperatorUnavailable(RuntimeError):
    """The operator asked for cannot run here (one line, says what to fix)."""


class ModelUnavailable(OperatorUnavailable):
    """A configured model cannot be used (one line, says what to fix)."""


class ProposalFailed(RuntimeError):
    """One proposal failed for a reason that need not repeat (one line): its slot fails."""


class BudgetExceeded(RuntimeError):
    """The run's token or dollar budget is spent (one line)."""
