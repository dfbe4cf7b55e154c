"""BM25 retrieval over the knowledge base, and the LangGraph CLI entry points."""
from __future__ import annotations

import importlib.util
import json
import sys

from avo.knowledge import KnowledgeBase, append_learning, split_sections
from tests.agents.conftest import REPO


def test_search_finds_the_right_note():
    kb = KnowledgeBase(REPO / "knowledge_base")
    assert len(kb.notes()) >= 8
    cases = {"GQA head packing KV heads": "gqa-head-packing.md",
             "causal loop split diagonal mask": "causal-masking.md",
             "exp unit MUFU throughput": "hopper-h100.md",
             "lazy rescaling threshold": "online-softmax-and-rescaling.md",
             "scaled_dot_product_attention cached outputs rejected": "harness-rules.md",
             "warp_specialize compile failure": "pipelining-and-warp-specialization.md"}
    for query, note in cases.items():
        hits = kb.search(query, k=3)
        assert hits and hits[0].note == note, (query, [(h.note, h.heading) for h in hits])
        assert hits[0].score > 0 and hits[0].text
    assert kb.search("", k=3) == []


def test_sections_and_appended_learnings_are_searchable(tmp_path):
    (tmp_path / "a.md").write_text("# Title\nintro words\n## Tiles\nblock sizes here\n### Deeper\nwarps\n")
    secs = split_sections("a.md", (tmp_path / "a.md").read_text())
    assert [s.heading for s in secs] == ["Title", "Title > Tiles", "Title > Deeper"]
    kb = KnowledgeBase(tmp_path)
    assert kb.search("zebra") == []
    append_learning(tmp_path, "zebra tiles regress", "BLOCK_N 128 spilled: zebra", source="test")
    hits = kb.search("zebra", k=1)  # the index notices the new note
    assert hits[0].note == "lineage-learnings.md" and hits[0].heading.endswith("zebra tiles regress")


def test_langgraph_json_points_at_compiled_graphs():
    spec = json.loads((REPO / "langgraph.json").read_text())
    for name, target in spec["graphs"].items():
        path, attr = target.split(":")
        mod_spec = importlib.util.spec_from_file_location(f"lg_{name}", REPO / path)
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[mod_spec.name] = module  # as the LangGraph CLI does (dataclasses need it)
        mod_spec.loader.exec_module(module)
        graph = getattr(module, attr)
        assert hasattr(graph, "invoke") and set(graph.get_graph().nodes) >= {"__start__", "__end__"}
