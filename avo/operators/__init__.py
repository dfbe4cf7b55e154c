"""Variation operators: heuristic (no model) and agent (LangGraph, in agents/)."""
