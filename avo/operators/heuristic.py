"""The heuristic variation operator: a knowledge-driven search over a kernel's knobs.

No model needed: the offline default, and the baseline the agent must beat.
A kernel exposes UPPERCASE module-level knobs (`BLOCK_M = 128`); this operator
changes one (or, once single moves are used up, two or three) of them within
legal ranges and writes a Technique saying what it expects and why.

How a move is chosen, for the parent the select step gave this slot:
1. enumerate legal moves of the knobs the parent has: a knob the problem declares
   (problem.KNOBS: its legal values, e.g. block sizes 16..256) goes to a
   neighbouring value, a feature switch flips; drop moves the problem says
   cannot launch on this device (problem.fits: shared memory);
2. drop moves already tried on this parent (the attempts log names every
   heuristic attempt by its setting, e.g. "BLOCK_N=128,NUM_WARPS=4") and moves
   whose source was already evaluated anywhere (its hash);
3. score the rest: a prior from the problem's lever table (avo.problem.levers:
   kernel_src/<problem>/levers.py, which the supervisor's rules read too), blended with the measured effect of past changes of the same knob in the
   same direction (log geomean ratio to the parent; failures count against),
   plus a small bonus for knobs seldom tried;
   drop moves whose kernel would hold a pair of knob settings that hung (see hang_pairs);
4. rank with a little seeded noise; slot i of the generation takes the i-th.
Only attempts of earlier generations are read, so every slot of a generation
sees the same history and the proposal for (generation, slot) is reproducible:
a resumed run remakes exactly the proposals the interrupted one had planned.
"""
from __future__ import annotations

import ast
import itertools
import math
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from avo import ast_safe
from avo.candidate import Candidate, Technique, source_sha256
from avo.operators.base import VaryContext
from avo.problem import levers, load_problem

BLOCK_SIZES = load_problem().KNOBS["BLOCK_M"]  # the default problem's (tests read it)
HANG_EVIDENCE = 2  # timed-out attempts a pair of knob settings must share to be avoided
FAIL_LOG_RATIO = -0.10  # what a failed attempt counts as, in log(ratio to parent)
PAIR_PENALTY = 0.015  # prefer single-knob moves: their effect can be read


@dataclass(frozen=True)
class Lever:
    """What is known about one knob: expected effects of raising/lowering it."""

    up: str  # expected effect of raising it / switching it on
    down: str
    why: str
    prior_up: float = 0.0  # prior log-ratio of raising / switching on
    prior_down: float = 0.0


GENERIC_SWITCH = Lever("feature switched on", "feature switched off",
                       "A feature switch of this kernel; its effect is measured, not known.", 0.0, 0.0)


# ---------------------------------------------------------------- knobs in source
def read_knobs(source: str) -> dict[str, int | bool]:
    """Module-level `NAME = <int or bool>` assignments with an UPPERCASE name."""
    knobs: dict[str, int | bool] = {}
    for node in ast_safe.parse(source).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id.isupper() and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, (int, bool))):
            knobs[node.targets[0].id] = node.value.value
    return knobs


def set_knobs(source: str, changes: dict[str, int | bool]) -> str:
    """The source with each knob's module-level value replaced (comments kept)."""
    for name, value in changes.items():
        pattern = re.compile(rf"^({re.escape(name)}\s*=\s*)[^#\n]*?(\s*(#.*)?)$", re.M)
        source, n = pattern.subn(lambda m: f"{m.group(1)}{value!r}{m.group(2)}", source, count=1)
        if n != 1:
            raise ValueError(f"knob {name} not found at module level")
    return source


def move_name(move: tuple) -> str:
    return ",".join(f"{k}={v!r}" for k, v in move)


def parse_move(name: str) -> tuple | None:
    """'BLOCK_N=128,NUM_WARPS=4' -> (('BLOCK_N', 128), ('NUM_WARPS', 4)); None if not a move."""
    try:
        parts = [p.split("=", 1) for p in name.split(",")]
        move = tuple((k.strip(), ast_safe.literal_eval(v.strip())) for k, v in parts)
    except (ValueError, SyntaxError):
        return None
    if not move or not all(k.isupper() and isinstance(v, (int, bool)) for k, v in move):
        return None
    return move


def _neighbours(value: int | bool, legal: tuple | None) -> list[int | bool]:
    """The values next to `value` in the knob's legal values (a switch: the other one)."""
    if isinstance(value, bool):
        return [not value]
    if not legal or value not in legal:
        return []  # an integer knob the problem does not declare: no known legal range, leave it alone
    i = legal.index(value)
    return [legal[j] for j in (i - 1, i + 1) if 0 <= j < len(legal)]


def _base(problem, knob: str) -> str:
    """The knob whose known effects this one shares (BLOCK_M_D64 -> BLOCK_M)."""
    return problem.knob_base(knob) if hasattr(problem, "knob_base") else knob


def _direction(old, new) -> str:
    if isinstance(new, bool):
        return "on" if new else "off"
    return "up" if new > old else "down"


def fits_shared_memory(knobs: dict, problem=None, device: str = "cuda") -> bool:
    """Whether the problem says this setting can launch on the device (shared memory)."""
    problem = problem or load_problem()
    return problem.fits(knobs, device) if hasattr(problem, "fits") else True


# ---------------------------------------------------------------- history
def knob_credit(attempts: list[dict]) -> dict[tuple[str, str], list[float]]:
    """(knob, direction) -> log ratios to the parent of past heuristic attempts."""
    credit: dict[tuple[str, str], list[float]] = {}
    for a in attempts:
        move = parse_move(a.get("technique", {}).get("name", ""))
        if move is None:
            continue
        if a.get("status") == "ok":
            measured = [r for r in a.get("technique", {}).get("measured", {}).values() if r and r > 0]
            if not measured:
                continue  # not comparable with its parent: says nothing
            effect = sum(math.log(r) for r in measured) / len(measured)
        else:
            effect = FAIL_LOG_RATIO
        for knob, value in move:
            # the direction is stored in the technique's `expected` ("BLOCK_N 64->128: ...")
            old = _old_value(a.get("technique", {}).get("expected", ""), knob)
            if isinstance(value, bool):
                direction = _direction(not value, value)
            elif old is None:
                continue
            else:
                direction = _direction(old, value)
            credit.setdefault((knob, direction), []).append(effect / len(move))
    return credit


def hang_pairs(attempts: list[dict], knobs_of) -> dict[frozenset, int]:
    """Pairs of knob settings that hung: {frozenset({(knob, value), (knob, value)}): timeouts}.

    A pair counts when it is in the knob values of at least HANG_EVIDENCE attempts whose
    status is "timeout" and of no attempt that was "ok" (one timeout may be a slow compile).
    An attempt's knob values are its move over its parent's values (`knobs_of(version)`, {}
    where unknown); of a timeout, only pairs with a setting its move made are blamed (its
    parent ran). On the H100, NUM_STAGES=1 with WARP_SPECIALIZE=False deadlocked every time
    and held a GPU for the 120 s watchdog."""
    hung: dict[frozenset, int] = {}
    ran: set[frozenset] = set()
    for a in attempts:
        status = a.get("status")
        if status not in ("ok", "timeout"):
            continue
        move = parse_move(a.get("technique", {}).get("name", ""))
        if move is None:
            if status == "ok" and a.get("version") is not None:  # a committed non-knob change (seed, agent)
                ran.update(_pairs(knobs_of(a["version"])))
            continue
        pairs = _pairs({**knobs_of(a.get("parent")), **dict(move)})
        if status == "ok":
            ran.update(pairs)
        else:
            for pair in pairs:
                if pair & set(move):
                    hung[pair] = hung.get(pair, 0) + 1
    return {pair: n for pair, n in hung.items() if n >= HANG_EVIDENCE and pair not in ran}


def _pairs(knobs: dict) -> set[frozenset]:
    return {frozenset(p) for p in itertools.combinations(knobs.items(), 2)}


def _hangs(knobs: dict, pairs) -> list[frozenset]:
    """The pairs (of hang_pairs) that these knob values hold."""
    items = set(knobs.items())
    return [pair for pair in pairs if pair <= items]


def pair_name(pair: frozenset) -> str:
    return " with ".join(f"{k}={v!r}" for k, v in sorted(pair))


def _old_value(expected: str, knob: str):
    m = re.search(rf"\b{re.escape(knob)} (\S+)->", expected)
    if not m:
        return None
    try:
        return ast_safe.literal_eval(m.group(1))
    except (ValueError, SyntaxError):
        return None


@lru_cache(maxsize=None)
def knob_levers(problem) -> dict[str, Lever]:
    """The problem's knob levers (those with expected effects), by knob name."""
    return {lv["name"]: Lever(lv["up"], lv["down"], lv["why"], lv.get("prior_up", 0.0), lv.get("prior_down", 0.0))
            for lv in levers(problem) if "up" in lv}


def _keywords(problem, knob: str) -> tuple[str, ...]:
    """Words in the supervisor's directions that point at this knob (its lever's keywords)."""
    for lv in levers(problem):
        if lv["name"] == knob and lv.get("keywords"):
            return tuple(lv["keywords"])
    return (knob.lower(),)


def _steer(knob: str, directions: list[str], problem=None) -> float:
    """+0.03 when the supervisor's directions point at this knob; -0.03 when they say avoid it."""
    words = _keywords(problem or load_problem(), knob)
    score = 0.0
    for line in directions:
        text = line.lower()
        if any(w in text for w in words):
            score += -0.03 if text.startswith("avoid") else 0.03
    return score


# ---------------------------------------------------------------- the operator
JUMPS = 64  # distinct three-knob jumps offered once no move near a parent is left untried


class HeuristicOperator:
    name = "heuristic"

    def __init__(self, lineage_root: str | Path, knowledge_root: str | Path | None = None,
                 device: str = "cpu", attempts_reader=None, problem_path: str | Path | None = None):
        self.lineage_root = Path(lineage_root)
        self.problem_path = problem_path  # None: avo.problem's default (attention forward)
        self.knowledge_root = Path(knowledge_root) if knowledge_root else None
        self.device = device
        self._attempts_reader = attempts_reader  # tests inject history; default: the lineage's log
        self._kb = None
        self._knobs_of_version: dict[int, dict] = {}

    @property
    def problem(self):
        """The problem module: its KNOBS (legal values), fits() and register_pressure().
        Loaded by path (cached), so the operator pickles for remote workers."""
        return load_problem(self.problem_path) if self.problem_path else load_problem()

    def _attempts(self) -> list[dict]:
        if self._attempts_reader is not None:
            return self._attempts_reader()
        from avo.lineage import Lineage

        return Lineage(self.lineage_root).attempts()

    def knobs_of(self, version) -> dict:
        """A lineage version's knob values ({} where the lineage does not have it)."""
        if not isinstance(version, int):
            return {}
        if version not in self._knobs_of_version:
            from avo.lineage import Lineage

            lineage = Lineage(self.lineage_root)
            self._knobs_of_version[version] = read_knobs(lineage.get(version).source) if lineage.has(version) else {}
        return self._knobs_of_version[version]

    def hang_pairs(self, ctx: VaryContext, knobs: dict, history: list[dict]) -> dict[frozenset, int]:
        """hang_pairs of this history, the parent's knobs read from its source; pairs the
        parent holds itself are left out (it ran)."""
        def knobs_of(version):
            return knobs if version == ctx.parent_version else self.knobs_of(version)

        parent = set(knobs.items())
        return {pair: n for pair, n in hang_pairs(history, knobs_of).items() if not pair <= parent}

    def vary(self, ctx: VaryContext) -> Candidate:
        records = ctx.population.records() if ctx.population is not None else self._attempts()
        history = [a for a in records if int(a.get("generation") or 0) < ctx.generation]
        knobs = read_knobs(ctx.parent_source)
        ranked = self.rank_moves(ctx, knobs, history)
        if not ranked:
            return Candidate(source=ctx.parent_source, parent=ctx.parent_version, operator="heuristic",
                             technique=Technique(name="no-untried-move",
                                                 why="every legal knob setting near this parent was tried"),
                             generation=ctx.generation, meta={"knobs": {}})
        move, score = ranked[ctx.slot % len(ranked)]
        changes = dict(move)
        source = set_knobs(ctx.parent_source, changes)
        # pairs that hung holding a setting this move makes: why it was not combined with the other
        avoided = [f"{pair_name(pair)} (hung in {n} attempts, ran in none)"
                   for pair, n in sorted(self.hang_pairs(ctx, knobs, history).items(), key=lambda pn: sorted(pn[0]))
                   if pair & set(move)]
        return Candidate(source=source, parent=ctx.parent_version, operator="heuristic",
                         technique=self.technique(move, knobs, avoided), generation=ctx.generation,
                         meta={"knobs": changes, "before": {k: knobs[k] for k in changes},
                               "score": round(score, 5)})

    def rank_moves(self, ctx: VaryContext, knobs: dict, history: list[dict]) -> list[tuple[tuple, float]]:
        tried = {a.get("technique", {}).get("name") for a in history if a.get("parent") == ctx.parent_version}
        tried_shas = {a.get("source_sha256") for a in history} | ctx.judging
        credit = knob_credit(history)
        hangs = self.hang_pairs(ctx, knobs, history)
        rng = random.Random(f"{ctx.seed}:{ctx.generation}:{ctx.parent_version}")
        space = getattr(self.problem, "KNOBS", {})
        singles = [((k, v),) for k, old in sorted(knobs.items())
                   if k in space or isinstance(old, bool) for v in _neighbours(old, space.get(k))]
        widen = bool(ctx.directions)  # the search stagnated: combinations cost less
        candidates = singles + [tuple(sorted(a + b)) for a, b in itertools.combinations(singles, 2)
                                if a[0][0] != b[0][0]]
        scored = []
        for move in candidates:
            after = {**knobs, **dict(move)}
            if not fits_shared_memory(after, self.problem, self.device):
                continue
            if move_name(move) in tried or _hangs(after, hangs):
                continue
            if source_sha256(set_knobs(ctx.parent_source, dict(move))) in tried_shas:
                continue
            score = sum(self._part_score(k, knobs[k], v, credit)
                        + _steer(_base(self.problem, k), ctx.directions, self.problem) for k, v in move)
            score -= PAIR_PENALTY * (len(move) - 1) * (0.3 if widen else 1.0)
            spill = getattr(self.problem, "ACC_REGISTERS", None)
            if self.device == "cuda" and spill and self.problem.register_pressure(after) > spill:
                score -= 0.05
            scored.append((move, score + rng.gauss(0, 0.004)))
        ranked = sorted(scored, key=lambda ms: (-ms[1], move_name(ms[0])))
        if len(ranked) <= ctx.slot and knobs:
            # fewer moves near the parent than slots (or none): jumps, three knobs at once, for the
            # slots past them. Every slot ranks the same moves with the same generator, so slot i
            # takes the i-th: a lineage with one untried move left made all 12 slots propose it
            names = {move_name(move) for move, _ in ranked}
            ranked += [(move, -1.0) for move in self.jumps(ctx, knobs, singles, tried | names, tried_shas, rng,
                                                                    hangs)]
        return ranked

    def jumps(self, ctx: VaryContext, knobs: dict, singles: list, tried: set, tried_shas: set, rng,
              hangs=()) -> list[tuple]:
        """Up to JUMPS distinct untried three-knob moves that fit and hold no pair of `hangs`,
        drawn with `rng` (the same draws in every slot of a generation: the slots take
        different ones by their index)."""
        found: dict[str, tuple] = {}
        for _ in range(20 * JUMPS):
            picks = rng.sample(singles, k=min(3, len(singles)))
            move = tuple(sorted(p[0] for p in {p[0][0]: p for p in picks}.values()))
            name = move_name(move)
            after = {**knobs, **dict(move)}
            if name in tried or name in found or not fits_shared_memory(after, self.problem, self.device) \
                    or _hangs(after, hangs):
                continue
            if source_sha256(set_knobs(ctx.parent_source, dict(move))) not in tried_shas:
                found[name] = move
            if len(found) == JUMPS:
                break
        return list(found.values())  # in the order drawn: sorted by name, BLOCK_M=256 took most slots

    def _part_score(self, knob: str, old, new, credit) -> float:
        lever = knob_levers(self.problem).get(_base(self.problem, knob), GENERIC_SWITCH)
        direction = _direction(old, new)
        prior = lever.prior_up if direction in ("up", "on") else lever.prior_down
        seen = credit.get((knob, direction), [])
        n = len(seen)
        measured = sum(seen) / n if n else 0.0
        # the prior fades as measurements come in; rarely tried knobs get a small bonus
        return prior / (1 + n) + measured * n / (1 + n) + 0.01 / math.sqrt(1 + n)

    def technique(self, move: tuple, knobs: dict, avoided: list[str] = ()) -> Technique:
        parts, whys = [], []
        for knob, new in move:
            lever = knob_levers(self.problem).get(_base(self.problem, knob), GENERIC_SWITCH)
            up = _direction(knobs[knob], new) in ("up", "on")
            parts.append(f"{knob} {knobs[knob]!r}->{new!r}: {lever.up if up else lever.down}")
            whys.append(lever.why)
        note = self._knowledge(" ".join(k for k, _ in move))
        if note:
            whys.append(f"Knowledge base: {note}")
        if avoided:
            whys.append("Not proposed: " + "; ".join(avoided) + ".")
        return Technique(name=move_name(move), expected="; ".join(parts), why=" ".join(whys))

    def _knowledge(self, query: str) -> str:
        """The best knowledge-base section for these knobs, if avo.knowledge exists and the
        problem is one the notes cover (KNOWLEDGE_BASE = False: they are about another)."""
        if self.knowledge_root is None or not self.knowledge_root.is_dir() \
                or not getattr(self.problem, "KNOWLEDGE_BASE", True):
            return ""
        try:
            if self._kb is None:
                from avo.knowledge import KnowledgeBase

                self._kb = KnowledgeBase(self.knowledge_root)
            topic = getattr(self.problem, "NAME", "").split("-")[0]  # "attention", "rmsnorm"
            hits = self._kb.search(query.replace("_", " ").lower() + f" {topic} tile", k=1)
        except Exception:  # the knowledge base is an aid, never a reason to fail a proposal
            return ""
        if not hits:
            return ""
        hit = hits[0]
        text = " ".join(hit.text.split())
        return f"[{hit.note} — {hit.heading}] {text[:240]}" + ("…" if len(text) > 240 else "")
