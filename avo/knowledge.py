"""The knowledge base K: markdown notes under knowledge_base/, searched offline.

Each note is split into sections at its markdown headings; a search ranks the
sections with BM25 (rank_bm25), which needs nothing downloaded and answers in
milliseconds. Both operators use it: the agent through its `search_knowledge`
tool, the heuristic operator to pick levers.

    kb = KnowledgeBase("knowledge_base")
    for hit in kb.search("GQA head packing", k=3):
        print(hit.note, hit.heading, hit.score)

Plain Python: no torch, no LangChain. The index is rebuilt when a note changes
(notes are small; a rebuild of ~12 notes takes a few milliseconds).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rank_bm25 import BM25Okapi

LEARNINGS_NOTE = "lineage-learnings.md"
_HEADING = re.compile(r"^(#{1,4})\s+(.*\S)\s*$")
_TOKEN = re.compile(r"[a-z0-9]+")
# Words too common in these notes to tell sections apart.
_STOP = frozenset("""a an and are as at be by can do does for from has have how if in into is it its
of on or per so than that the their then there these this to was what when where which while
with without you your we our not no one more most also only each""".split())


@dataclass(frozen=True)
class Hit:
    note: str  # file name, e.g. "hopper.md"
    heading: str  # "Note title > Section"
    text: str  # the section's text (heading line excluded)
    score: float

    def render(self, max_chars: int = 1500) -> str:
        body = self.text if len(self.text) <= max_chars else self.text[:max_chars] + " […]"
        return f"[{self.note} — {self.heading}] (score {self.score:.2f})\n{body}"


@dataclass(frozen=True)
class Section:
    note: str
    heading: str
    text: str


def tokenize(text: str) -> list[str]:
    """Lower-case alphanumeric words; `tl.dot` -> tl, dot; `BLOCK_N` -> block, n."""
    return [t for t in _TOKEN.findall(text.lower()) if t not in _STOP]


def split_sections(note: str, text: str) -> list[Section]:
    """One section per heading (the text up to the next heading of any level).
    The note's title (its first `#` heading) prefixes every section's heading."""
    title, current, body, out = "", "", [], []

    def flush():
        content = "\n".join(body).strip()
        if content:
            head = " > ".join(h for h in (title, current) if h) or note
            out.append(Section(note, head, content))

    for line in text.splitlines():
        m = _HEADING.match(line)
        if m:
            flush()
            body = []
            if len(m.group(1)) == 1 and not title:
                title, current = m.group(2), ""
            else:
                current = m.group(2)
        else:
            body.append(line)
    flush()
    return out


class KnowledgeBase:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._stamp: tuple | None = None
        self._sections: list[Section] = []
        self._bm25: BM25Okapi | None = None

    def notes(self) -> list[str]:
        return sorted(p.name for p in self.root.glob("*.md")) if self.root.is_dir() else []

    def read(self, note: str) -> str:
        path = self.root / note
        if path.suffix != ".md" or path.parent != self.root or not path.is_file():
            raise FileNotFoundError(f"no note {note!r}; notes: {', '.join(self.notes()) or 'none'}")
        return path.read_text(encoding="utf-8")

    def sections(self) -> list[Section]:
        self._refresh()
        return list(self._sections)

    def search(self, query: str, k: int = 4) -> list[Hit]:
        """The k sections that best match `query` (score > 0), best first."""
        self._refresh()
        words = tokenize(query)
        if not words or self._bm25 is None:
            return []
        scores = self._bm25.get_scores(words)
        ranked = sorted(range(len(scores)), key=lambda i: -scores[i])
        return [Hit(s.note, s.heading, s.text, float(scores[i]))
                for i in ranked[:k] if scores[i] > 0 for s in [self._sections[i]]]

    def _refresh(self) -> None:
        paths = sorted(self.root.glob("*.md")) if self.root.is_dir() else []
        stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
        if stamp == self._stamp:
            return
        sections = [s for p in paths for s in split_sections(p.name, p.read_text(encoding="utf-8"))]
        # the heading counts twice: it names what the section is about
        docs = [tokenize(f"{s.heading} {s.heading} {s.text}") for s in sections]
        self._sections = sections
        self._bm25 = BM25Okapi(docs) if docs else None
        self._stamp = stamp


def append_learning(root: str | Path, title: str, body: str, source: str = "") -> Path:
    """Append one dated section to knowledge_base/lineage-learnings.md (what the
    lineage itself has measured). `source`: who wrote it (operator, supervisor)."""
    path = Path(root) / LEARNINGS_NOTE
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    by = f" ({source})" if source else ""
    section = f"\n## {title.strip()}\n_{stamp}{by}_\n\n{body.strip()}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text("# What avo's lineage has learned\n", encoding="utf-8")
    with path.open("a", encoding="utf-8") as f:
        f.write(section)
    return path
