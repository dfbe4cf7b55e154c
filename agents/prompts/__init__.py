"""Prompts live here as markdown files; this module only reads them.

`load("propose")` returns propose.md; `render("task", **values)` fills a
template's $placeholders (string.Template: braces in kernel code stay intact).
"""
from __future__ import annotations

from pathlib import Path
from string import Template

PROMPTS_DIR = Path(__file__).resolve().parent


def load(name: str, root: Path | None = None) -> str:
    return ((root or PROMPTS_DIR) / f"{name}.md").read_text(encoding="utf-8")


def render(name: str, root: Path | None = None, **values) -> str:
    return Template(load(name, root)).safe_substitute({k: str(v) for k, v in values.items()})
