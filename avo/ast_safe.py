"""`ast` calls that are safe from concurrent threads.

CPython 3.11 (and early 3.12) keeps the recursion-depth counter of the
C-AST -> Python-AST conversion in state shared by all threads. Two threads
inside `ast.parse` at once (as the concurrent `vary` tasks of a generation do)
can end in `SystemError: AST constructor recursion depth mismatch`, and the
candidate is lost. Every `ast.parse` / `ast.literal_eval` / `ast.unparse` that
may run in a thread goes through these functions, which hold one process-wide
lock. Parsing a kernel takes milliseconds, so the lock costs nothing visible.

`ast.parse` is looked up at call time (not bound at import), so a test can
watch it being entered.
"""
from __future__ import annotations

import ast
import threading

LOCK = threading.RLock()  # re-entrant: literal_eval calls ast.parse itself


def parse(source: str, filename: str = "<unknown>", mode: str = "exec", **kwargs) -> ast.AST:
    with LOCK:
        return ast.parse(source, filename, mode, **kwargs)


def literal_eval(node_or_string):
    with LOCK:
        return ast.literal_eval(node_or_string)


def unparse(node: ast.AST) -> str:
    with LOCK:
        return ast.unparse(node)
