"""The agentic variation operator as a LangGraph graph: one variation step.

    propose ⇄ tools ──► verify ──ok──────────────► critique ──submit──► submit ─► END
                          │  ▲                        │
                     fail │  │ (bounded)              └─iterate──► propose
                          ▼  │
                      repair ⇄ tools

- propose / repair: the model with tools (agents/tools.py), looping through the
  tools node until it answers without a tool call.
- verify: the harness (never the model's opinion) judges the working kernel.
- critique: reads the measured numbers and compiler stats against the parent,
  decides iterate or submit, and writes the structured record (technique,
  expected effect, measured effect).
- submit: the session's best verified kernel becomes the output.

Run dependencies (model, workbench, harness, budget) travel in the LangGraph
runtime context (`VariationContext`); the state holds only data, so a
checkpointer or Studio can show every step. Bounds: `max_steps` model calls
in propose/repair per session, `max_repairs` per iteration, `max_iterations`.
"""
from __future__ import annotations

import operator
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Literal

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import StructuredTool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.runtime import Runtime
from langgraph.types import Command
from pydantic import BaseModel, Field, ValidationError
from typing_extensions import TypedDict

from agents import prompts
from agents.models import Budget, BudgetExceeded, ModelCallFailed, ModelSpec, Usage, invoke_model
from agents.profiling import take_profile_delta
from agents.tools import ToolError, Workbench, describe_result, make_tools, quote_untrusted
from avo.lineage import measured_effect
from avo.records import EvalResult


# --------------------------------------------------------------------- context
@dataclass(frozen=True)
class Limits:
    max_steps: int = 12  # model calls in propose + repair, per session
    max_repairs: int = 3  # repair rounds after a failed verify, per iteration
    max_iterations: int = 2  # propose → verify → critique rounds per session


@dataclass
class VariationContext:
    """Run dependencies of one session (LangGraph runtime context)."""

    model: Any  # a LangChain chat model that supports bind_tools
    workbench: Workbench
    evaluate: Callable[[str], EvalResult]  # verify: the harness on the whole suite
    spec: ModelSpec | None = None  # for retries and prices; None: defaults, no cost
    usage: Usage = field(default_factory=Usage)
    budget: Budget | None = None
    limits: Limits = field(default_factory=Limits)
    sleep: Callable[[float], None] = time.sleep


# ----------------------------------------------------------------------- state
class VariationState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]  # the propose/repair conversation
    source: str  # the working kernel
    phase: Literal["propose", "repair"]  # where the tools node returns to
    steps: int
    repairs: int
    iterations: int
    attempts: Annotated[list[dict], operator.add]  # every verified kernel: source, result, iteration
    records: Annotated[list[dict], operator.add]  # critique's records, one per iteration
    stop: str  # "" | "budget" | "steps" | "model_error": why the session ended early
    error: str  # the model error that ended the session (stop == "model_error")
    # output
    candidate: dict  # source, technique, verified status/geomean, attempt index


class VariationInput(TypedDict):
    messages: list[AnyMessage]
    source: str


class VariationOutput(TypedDict):
    candidate: dict
    records: list[dict]
    attempts: list[dict]
    stop: str
    error: str


# An answer longer than this is clipped before it joins the conversation (a
# runaway model would otherwise resend it on every later call).
MAX_ANSWER_CHARS = 16_000


class Record(BaseModel):
    """The critique's structured record of one iteration, as the model writes it.
    The stored record (critique's `entry`) adds what was measured, not written:
    status, geomeans, per-config effect and `profile_delta` (the last profile of
    the iteration against the parent's, from profile_kernel; '' when none)."""

    decision: Literal["submit", "iterate"] = Field(description="submit the kernel, or iterate once more")
    technique: str = Field(description="short name of what was tried, e.g. causal-loop-split")
    expected_effect: str = Field(default="", description="what the change was expected to do")
    why: str = Field(default="", description="the reasoning or knowledge-base note behind it")
    lesson: str = Field(default="", description="what the measured numbers show, and the likely cause")


RECORD_TOOL = StructuredTool.from_function(
    lambda **kw: "recorded", name="record", args_schema=Record,
    description="Record the critique of this iteration (call exactly once).")


# ------------------------------------------------------------------ model call
def _call(runtime: Runtime[VariationContext], system: str, messages: list, tools: list) -> AIMessage:
    ctx = runtime.context
    model = ctx.model.bind_tools(tools) if tools else ctx.model
    reply = invoke_model(model, [SystemMessage(system), *messages], spec=ctx.spec, usage=ctx.usage,
                         budget=ctx.budget, sleep=ctx.sleep)
    return _clip_answer(reply)


def _clip_answer(reply: AIMessage) -> AIMessage:
    content = reply.content
    if isinstance(content, str) and len(content) > MAX_ANSWER_CHARS:
        note = (f"\n[avo: this answer was {len(content)} characters; clipped to {MAX_ANSWER_CHARS}. "
                f"Answer briefly and act through tool calls.]")
        return reply.model_copy(update={"content": content[:MAX_ANSWER_CHARS] + note})
    return reply


def _agent_step(state: VariationState, runtime: Runtime[VariationContext], phase: str) -> Command:
    """One model call of propose or repair; tool calls go to the tools node."""
    ctx = runtime.context
    steps = state.get("steps", 0)
    if steps >= ctx.limits.max_steps:
        return Command(update={"stop": "steps"}, goto="verify")
    try:
        reply = _call(runtime, prompts.load(phase), state["messages"], make_tools(None))
    except BudgetExceeded:
        return Command(update={"stop": "budget"}, goto="verify")
    except ModelCallFailed as e:  # retries exhausted: this session ends with what it has
        return Command(update={"stop": "model_error", "error": str(e)}, goto="verify")
    update = {"messages": [reply], "steps": steps + 1, "phase": phase}
    if reply.tool_calls or reply.invalid_tool_calls:
        return Command(update=update, goto="tools")
    return Command(update=update, goto="verify")


# ----------------------------------------------------------------------- nodes
def propose(state: VariationState, runtime: Runtime[VariationContext]) -> Command[Literal["tools", "verify"]]:
    """The model studies the lineage and the knowledge base and edits the kernel."""
    return _agent_step(state, runtime, "propose")


def repair(state: VariationState, runtime: Runtime[VariationContext]) -> Command[Literal["tools", "verify"]]:
    """The model fixes what verify reported (the verdict is the last message)."""
    return _agent_step(state, runtime, "repair")


def tools(state: VariationState, runtime: Runtime[VariationContext]) -> Command[Literal["propose", "repair"]]:
    """Run the last message's tool calls on the workbench; every call gets an
    answer, errors included, so the model can act on them."""
    wb = runtime.context.workbench
    wb.source = state["source"]
    by_name = {t.name: t for t in make_tools(wb)}
    answers = []
    last = state["messages"][-1]
    for call in last.tool_calls:
        answers.append(ToolMessage(_run_tool(by_name, call), tool_call_id=call["id"], name=call["name"]))
    for bad in last.invalid_tool_calls:  # arguments that were not valid JSON: every call gets an answer
        name = bad.get("name") or "?"
        answers.append(ToolMessage(f"error: the arguments of {name} were not a valid JSON object "
                                   f"({str(bad.get('error') or 'unparseable')[:200]}); call it again with "
                                   f"JSON arguments matching its schema", tool_call_id=bad.get("id") or "",
                                   name=name, status="error"))
    return Command(update={"messages": answers, "source": wb.source}, goto=state.get("phase", "propose"))


def _run_tool(by_name: dict, call: dict) -> str:
    tool = by_name.get(call["name"])
    if tool is None:
        return f"error: unknown tool {call['name']!r}; available tools: {', '.join(by_name)}"
    try:
        return str(tool.invoke(call.get("args") or {}))
    except ToolError as e:
        return f"error: {e}"
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'arguments'}: {err['msg']}"
                             for err in e.errors())
        return f"error: bad arguments for {call['name']}: {problems}"
    except Exception as e:  # noqa: BLE001 - a tool failure is data for the model
        return f"error: {call['name']} failed: {type(e).__name__}: {e}"


def verify(state: VariationState, runtime: Runtime[VariationContext]) -> Command[Literal["repair", "critique", "propose", "submit"]]:
    """The harness judges the working kernel; failures go to repair (bounded)."""
    ctx = runtime.context
    source = state["source"]
    attempts = state.get("attempts", [])
    iteration = state.get("iterations", 0)
    if source == ctx.workbench.parent_source:
        note = "no edit was made to the parent kernel; nothing to verify"
        if state.get("stop") or state.get("steps", 0) >= ctx.limits.max_steps:
            return Command(update={"stop": state.get("stop") or "steps"}, goto="submit")
        return Command(update={"messages": [HumanMessage(f"verify: {note}. Edit the kernel with "
                                                         f"edit_kernel, then finish without a tool call.")],
                               "phase": "propose"}, goto="propose")
    if attempts and attempts[-1]["source"] == source:
        result = EvalResult.from_dict(attempts[-1]["result"])  # unchanged since the last verdict
        new = []
    else:
        result = ctx.evaluate(source)
        new = [{"source": source, "result": result.to_dict(), "iteration": iteration}]
        ctx.workbench.session_notes.append(
            f"iteration {iteration}: verify {result.status}"
            + (f", geomean {result.geomean_tflops:.2f}" if result.ok else f" ({result.message})"))
    verdict = HumanMessage("verify (harness verdict):\n" + describe_result(result, ctx.workbench.parent_result))
    update = {"attempts": new, "messages": [verdict]}
    repairs = state.get("repairs", 0)
    if result.ok or state.get("stop"):
        return Command(update=update, goto="critique")
    if repairs < ctx.limits.max_repairs and state.get("steps", 0) < ctx.limits.max_steps:
        return Command(update={**update, "repairs": repairs + 1, "phase": "repair"}, goto="repair")
    return Command(update=update, goto="critique")


def critique(state: VariationState, runtime: Runtime[VariationContext]) -> Command[Literal["propose", "submit"]]:
    """Measured numbers vs the parent -> a structured record, and iterate or submit."""
    ctx = runtime.context
    wb = ctx.workbench
    attempts = state.get("attempts", [])
    iteration = state.get("iterations", 0)
    if not attempts:
        return Command(goto="submit")
    last = attempts[-1]
    result = EvalResult.from_dict(last["result"])
    measured = measured_effect(result, wb.parent_result)
    profile_delta = take_profile_delta(wb)  # the last profile of this iteration, vs the parent ('' if none)
    report = _comparison(result, wb.parent_result, measured, iteration, ctx.limits, profile_delta)
    can_iterate = (iteration + 1 < ctx.limits.max_iterations and not state.get("stop")
                   and state.get("steps", 0) < ctx.limits.max_steps)
    record, reply, note, failed = None, None, "", {}
    try:
        if state.get("stop") == "model_error":  # the model just failed through every retry
            raise ModelCallFailed(state.get("error", "model error"))
        reply = _call(runtime, prompts.load("critique"), [*state["messages"], HumanMessage(report)], [RECORD_TOOL])
        record, note = _parse_record(reply)
    except BudgetExceeded:
        can_iterate, note = False, "budget spent before the critique"
    except ModelCallFailed as e:
        can_iterate, note = False, "the model failed before the critique"
        failed = {"stop": "model_error", "error": state.get("error") or str(e)}
    if record is None:
        faster = result.ok and (not wb.parent_result or result.geomean_tflops > wb.parent_result.geomean_tflops)
        record = Record(decision="iterate" if (can_iterate and not faster) else "submit",
                        technique=_fallback_technique(state), lesson=note)
    decision = record.decision if can_iterate else "submit"
    entry = {"iteration": iteration, "attempt": len(attempts) - 1, "status": result.status,
             "geomean": result.geomean_tflops,
             "parent_geomean": wb.parent_result.geomean_tflops if wb.parent_result else None,
             "measured": measured, "decision": decision, "technique": record.technique,
             "expected_effect": record.expected_effect, "why": record.why, "lesson": record.lesson,
             "profile_delta": profile_delta, "message": result.message}
    messages = [HumanMessage(report)]
    if reply is not None:
        messages.append(reply)
        messages += [ToolMessage("recorded", tool_call_id=c["id"], name=c["name"]) for c in reply.tool_calls]
    wb.session_notes.append(f"iteration {iteration} '{record.technique}': {result.status}, "
                            f"decision {decision}" + (f"; {record.lesson}" if record.lesson else ""))
    if decision == "submit":
        return Command(update={"records": [entry], "messages": messages, **failed}, goto="submit")
    # iterate: continue from the best verified kernel so far (or the parent)
    best = _best_attempt(attempts)
    start = best["source"] if best else wb.parent_source
    which = f"the best verified kernel of this session (iteration {best['iteration']})" if best else "the parent"
    messages.append(HumanMessage(f"Iteration {iteration + 1}: the working kernel is now {which}. "
                                 f"Lesson so far: {record.lesson or '(none)'} Make one more focused change, "
                                 f"then finish without a tool call."))
    return Command(update={"records": [entry], "messages": messages, "source": start,
                           "iterations": iteration + 1, "repairs": 0, "phase": "propose"}, goto="propose")


def submit(state: VariationState, runtime: Runtime[VariationContext]) -> dict:
    """The session's output: its best verified kernel, or its last attempt if none passed."""
    wb = runtime.context.workbench
    attempts = state.get("attempts", [])
    records = state.get("records", [])
    best = _best_attempt(attempts)
    chosen = best or (attempts[-1] if attempts else None)
    if chosen is None:
        return {"candidate": {"source": wb.parent_source, "technique": {"name": "no-change"},
                              "status": "unchanged", "geomean": 0.0, "attempt": None},
                "stop": state.get("stop", ""), "error": state.get("error", "")}
    index = attempts.index(chosen)
    rec = next((r for r in reversed(records) if r["attempt"] <= index and r["iteration"] == chosen["iteration"]),
               records[-1] if records else {})
    result = EvalResult.from_dict(chosen["result"])
    technique = {"name": rec.get("technique") or "unnamed", "expected": rec.get("expected_effect", ""),
                 "why": rec.get("why", ""), "measured": measured_effect(result, wb.parent_result)}
    return {"candidate": {"source": chosen["source"], "technique": technique, "status": result.status,
                          "geomean": result.geomean_tflops, "attempt": index},
            "stop": state.get("stop", ""), "error": state.get("error", "")}


# --------------------------------------------------------------------- helpers
def _comparison(result: EvalResult, parent: EvalResult | None, measured: dict, iteration: int,
                limits: Limits, profile_delta: str = "") -> str:
    lines = [f"critique of iteration {iteration} (of at most {limits.max_iterations}):",
             describe_result(result, parent)]
    if parent is not None:
        lines.append(f"parent: status {parent.status}, geomean {parent.geomean_tflops:.2f} TFLOPS")
        if parent.compile_stats:
            lines.append(f"parent compile stats: {parent.compile_stats}")
    if measured:
        worst = min(measured.items(), key=lambda kv: kv[1])
        best = max(measured.items(), key=lambda kv: kv[1])
        lines.append(f"measured effect vs parent: best {best[0]} {best[1]:.3f}x, worst {worst[0]} {worst[1]:.3f}x")
    elif result.ok:
        lines.append("measured effect vs parent: not comparable (different device, suite or GPU)")
    if profile_delta:  # counters the kernel could fake: shown as its output, not as the harness's numbers
        lines.append(quote_untrusted(profile_delta, 2_000, what="profile delta vs parent (ncu, from profile_kernel)"))
    lines.append("Call `record` once with your decision.")
    return "\n".join(lines)


def _parse_record(reply: AIMessage) -> tuple[Record | None, str]:
    for call in reply.tool_calls:
        if call["name"] == "record":
            try:
                return Record(**(call.get("args") or {})), ""
            except ValidationError as e:
                return None, f"critique record malformed ({e.error_count()} errors)"
    return None, "critique gave no record"


def _fallback_technique(state: VariationState) -> str:
    """The propose answer's first line stands in for a technique name."""
    for m in reversed(state.get("messages", [])):
        if isinstance(m, AIMessage) and not m.tool_calls and isinstance(m.content, str) and m.content.strip():
            return m.content.strip().splitlines()[0][:80]
    return "unnamed"


def _best_attempt(attempts: list[dict]) -> dict | None:
    ok = [a for a in attempts if a["result"]["status"] == "ok"]
    return max(reversed(ok), key=lambda a: a["result"].get("geomean_tflops", 0.0), default=None)


# ----------------------------------------------------------------------- graph
def build_graph():
    builder = StateGraph(VariationState, context_schema=VariationContext,
                         input_schema=VariationInput, output_schema=VariationOutput)
    builder.add_node("propose", propose)
    builder.add_node("tools", tools)
    builder.add_node("verify", verify)
    builder.add_node("repair", repair)
    builder.add_node("critique", critique)
    builder.add_node("submit", submit)
    builder.add_edge(START, "propose")
    builder.add_edge("submit", END)
    return builder.compile(name="variation")


graph = build_graph()
