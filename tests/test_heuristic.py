"""The heuristic operator (avo.operators.heuristic) — milliseconds, no harness."""
from pathlib import Path

from avo.lineage import Lineage
from avo.operators.base import VaryContext
from avo.operators.heuristic import (BLOCK_SIZES, HeuristicOperator, fits_shared_memory, move_name, parse_move,
                                     read_knobs, set_knobs)

SEED = (Path(__file__).resolve().parents[1] / "kernel_src/attention/seeds/fa2.py").read_text()
CUDA_LINEAGE = Path(__file__).resolve().parents[1] / "kernel_src/attention/lineage/cuda"
FEATURED = SEED.replace("NUM_STAGES = 2\n", "NUM_STAGES = 2\nUSE_TMA = False\nCAUSAL_SPLIT = True\n")


def _op(history=(), device="cuda", kb=None):
    return HeuristicOperator("/nonexistent", knowledge_root=kb, device=device, attempts_reader=lambda: list(history))


def _ctx(slot=0, generation=5, source=SEED, parent=0, directions=()):
    return VaryContext(parent_version=parent, parent_source=source, parent_result=None, generation=generation,
                       slot=slot, directions=list(directions))


def _attempt(name, expected, parent=0, generation=1, status="ok", ratio=1.0, sha="x"):
    return {"generation": generation, "parent": parent, "status": status, "source_sha256": sha,
            "technique": {"name": name, "expected": expected, "measured": {"c1": ratio, "c2": ratio}}}


def test_knobs_are_read_and_rewritten_in_place():
    assert read_knobs(FEATURED) == {"BLOCK_M": 128, "BLOCK_N": 64, "NUM_WARPS": 8, "NUM_STAGES": 2,
                                    "USE_TMA": False, "CAUSAL_SPLIT": True}
    new = set_knobs(SEED, {"BLOCK_N": 128, "NUM_WARPS": 4})
    assert read_knobs(new)["BLOCK_N"] == 128 and "BLOCK_N = 128  # key rows per inner-loop step" in new
    compile(new, "kernel.py", "exec")
    assert parse_move("BLOCK_N=128,USE_TMA=True") == (("BLOCK_N", 128), ("USE_TMA", True))
    assert parse_move("causal loop split") is None


def test_proposals_stay_in_legal_ranges_and_are_distinct_per_slot():
    op = _op()
    seen = set()
    for slot in range(12):
        cand = op.vary(_ctx(slot, source=FEATURED))
        knobs = read_knobs(cand.source)
        assert knobs["BLOCK_M"] in BLOCK_SIZES and knobs["BLOCK_N"] in BLOCK_SIZES
        assert knobs["NUM_WARPS"] in (4, 8) and 1 <= knobs["NUM_STAGES"] <= 5
        assert fits_shared_memory(knobs)
        t = cand.technique
        assert t.name and t.expected and t.why and cand.operator == "heuristic" and cand.parent == 0
        seen.add(cand.sha256)
    assert len(seen) == 12  # slots of one generation never propose the same kernel
    # feature switches are mutated too
    names = {_op().vary(_ctx(s, source=FEATURED)).technique.name for s in range(40)}
    assert any("USE_TMA=True" in n for n in names) and any("CAUSAL_SPLIT=False" in n for n in names)


def test_reproducible_for_a_generation_and_slot():
    a, b = _op().vary(_ctx(3)), _op().vary(_ctx(3))
    assert a.source == b.source and a.technique == b.technique


def test_never_retries_a_setting_already_tried_on_the_same_parent():
    first = _op().vary(_ctx(0))
    history = [_attempt(first.technique.name, first.technique.expected, sha=first.sha256)]
    again = _op(history).vary(_ctx(0))
    assert again.technique.name != first.technique.name and again.sha256 != first.sha256
    # on another parent (another source) the same setting is a new experiment
    other = SEED.replace("BLOCK_M = 128", "BLOCK_M = 64")
    op = _op(history)
    moves = {m for m, _ in op.rank_moves(_ctx(0, source=other, parent=7), read_knobs(other), history)}
    assert parse_move(first.technique.name) in moves
    assert parse_move(first.technique.name) not in {
        m for m, _ in op.rank_moves(_ctx(0), read_knobs(SEED), history)}


def test_prefers_knobs_whose_past_changes_helped():
    history = [
        _attempt("NUM_STAGES=3", "NUM_STAGES 2->3: x", generation=1, ratio=1.20),
        _attempt("NUM_STAGES=4", "NUM_STAGES 3->4: x", parent=1, generation=2, ratio=1.15),
        _attempt("BLOCK_N=128", "BLOCK_N 64->128: x", generation=1, ratio=0.80),
        _attempt("BLOCK_N=32", "BLOCK_N 64->32: x", generation=2, status="incorrect", ratio=0),
    ]
    source = SEED.replace("NUM_STAGES = 2", "NUM_STAGES = 3")
    cand = _op(history).vary(_ctx(0, source=source, parent=1))
    assert "NUM_STAGES=4" in cand.technique.name
    # without that history the knowledge prior favours wider key tiles instead
    assert "BLOCK_N=128" in _op().vary(_ctx(0, source=source, parent=1)).technique.name


def test_only_earlier_generations_steer_a_generation():
    """A resumed generation remakes the proposals it planned, whatever it committed since."""
    planned = _op().vary(_ctx(1, generation=4))
    same_gen = [_attempt(planned.technique.name, planned.technique.expected, generation=4, sha=planned.sha256)]
    assert _op(same_gen).vary(_ctx(1, generation=4)).sha256 == planned.sha256


def test_directions_steer_and_impossible_configs_are_pruned_on_gpu():
    cand = _op().vary(_ctx(0, source=FEATURED, directions=["use TMA tensor descriptors for K/V"]))
    assert "USE_TMA=True" in cand.technique.name
    assert not fits_shared_memory({"BLOCK_M": 128, "BLOCK_N": 256, "NUM_STAGES": 3})


def test_why_cites_the_knowledge_base_when_there_is_one(tmp_path):
    (tmp_path / "pipelining.md").write_text("# Pipelining\n\n## Stages\nMore num stages overlap loads of K and V "
                                            "with the tile matmuls; each stage costs shared memory.\n")
    (tmp_path / "gqa.md").write_text("# GQA\n\n## Packing\nQuery heads of one group share a KV head.\n")
    (tmp_path / "softmax.md").write_text("# Softmax\n\n## Exp2\nBase-2 exponentials cost one MUFU op.\n")
    history = [_attempt("NUM_STAGES=3", "NUM_STAGES 2->3: x", ratio=1.3)]
    cand = _op(history, kb=tmp_path).vary(_ctx(0, source=SEED.replace("NUM_STAGES = 2", "NUM_STAGES = 3"), parent=1))
    assert "NUM_STAGES" in cand.technique.name and "pipelining.md" in cand.technique.why


def test_once_every_near_move_was_tried_the_slots_jump_to_different_kernels():
    """With every single and paired move around a parent tried, each slot gets a jump (three
    knobs at once) of its own: one jump for all slots made twelve slots judge one kernel."""
    op = _op()
    near = [m for m, _ in op.rank_moves(_ctx(0), read_knobs(SEED), [])]
    history = [_attempt(move_name(m), "", sha=f"s{i}") for i, m in enumerate(near)]
    op = _op(history)
    jumps = [m for m, _ in op.rank_moves(_ctx(0), read_knobs(SEED), history)]
    assert len(jumps) >= 12 and not set(jumps) & set(near)
    proposals = [op.vary(_ctx(slot)) for slot in range(12)]
    assert all(len(parse_move(p.technique.name) or ()) >= 2 for p in proposals)  # jumps, not near moves
    assert len({p.sha256 for p in proposals}) == 12
    assert not {p.technique.name for p in proposals} & {h["technique"]["name"] for h in history}


def test_with_fewer_untried_moves_than_slots_the_other_slots_jump():
    """One move near the parent left untried: slot 0 proposes it, the other eleven get jumps of
    their own (all twelve proposed that one move, found in the first generation of an H100 leg)."""
    op = _op()
    near = [m for m, _ in op.rank_moves(_ctx(0), read_knobs(SEED), [])]
    left = near[0]
    history = [_attempt(move_name(m), "", sha=f"s{i}") for i, m in enumerate(near) if m != left]
    op = _op(history)
    proposals = [op.vary(_ctx(slot)) for slot in range(12)]
    assert proposals[0].technique.name == move_name(left)
    assert len({p.sha256 for p in proposals}) == 12
    assert all(len(parse_move(p.technique.name) or ()) >= 2 for p in proposals[1:])  # jumps
    assert not {p.technique.name for p in proposals} & {h["technique"]["name"] for h in history}


def _kernels(op, ctx, knobs, history, slots=12):
    """The knob values of every ranked move's kernel (jumps too, where the slots need them)
    and of the proposals of `slots` slots (which must all differ)."""
    last = _ctx(slots - 1, generation=ctx.generation, source=ctx.parent_source, parent=ctx.parent_version)
    ranked = [{**knobs, **dict(m)} for m, _ in op.rank_moves(last, knobs, history)]
    proposals = [op.vary(_ctx(slot, generation=ctx.generation, source=ctx.parent_source, parent=ctx.parent_version))
                 for slot in range(slots)]
    assert len({p.sha256 for p in proposals}) == slots  # every slot still gets a kernel of its own
    return ranked + [read_knobs(p.source) for p in proposals], proposals


def _holds(kernel, **pair):
    return all(kernel.get(k) == v and type(kernel.get(k)) is type(v) for k, v in pair.items())


def test_a_knob_pair_that_hung_twice_is_never_proposed():
    """Two timeouts (on another parent) held NUM_STAGES=1 with NUM_WARPS=4: no move, single,
    paired or jump, makes a kernel holding both again; each slot still gets its own kernel."""
    history = [_attempt("BLOCK_M=64,NUM_STAGES=1,NUM_WARPS=4", "", parent=7, status="timeout", sha="h1"),
               _attempt("BLOCK_N=128,NUM_STAGES=1,NUM_WARPS=4", "", parent=7, status="timeout", sha="h2")]
    assert "NUM_STAGES=1,NUM_WARPS=4" in {move_name(m) for m, _ in _op().rank_moves(_ctx(0), read_knobs(SEED), [])}
    op = _op(history)
    kernels, proposals = _kernels(op, _ctx(0), read_knobs(SEED), history, slots=20)
    assert not [k for k in kernels if _holds(k, NUM_STAGES=1, NUM_WARPS=4)]
    assert any(_holds(k, NUM_STAGES=1) for k in kernels)  # each setting alone is still tried
    said = [p.technique.why for p in proposals if "NUM_STAGES=1" in p.technique.name]
    assert said and all("Not proposed: NUM_STAGES=1 with NUM_WARPS=4 (hung in 2 attempts" in w for w in said)
    # once every near move was tried, the jumps (three knobs at once) avoid it too
    near = [m for m, _ in op.rank_moves(_ctx(0), read_knobs(SEED), history)]
    tried = history + [_attempt(move_name(m), "", sha=f"s{i}") for i, m in enumerate(near)]
    jumps, _ = _kernels(_op(tried), _ctx(0), read_knobs(SEED), tried)
    assert jumps and not [k for k in jumps if _holds(k, NUM_STAGES=1, NUM_WARPS=4)]


def test_a_hang_pair_counts_when_the_parent_held_one_of_its_settings():
    """Moves that set only NUM_STAGES=1 on a parent with NUM_WARPS=8 hung twice: the pair is
    judged on the whole kernel's knobs, so NUM_STAGES=1 over NUM_WARPS=8 is not proposed."""
    history = [_attempt("BLOCK_M=64,NUM_STAGES=1", "", status="timeout", sha="h1"),
               _attempt("BLOCK_N=128,NUM_STAGES=1", "", status="timeout", sha="h2")]
    kernels, _ = _kernels(_op(history), _ctx(0), read_knobs(SEED), history)
    assert not [k for k in kernels if _holds(k, NUM_STAGES=1, NUM_WARPS=8)]
    assert any(_holds(k, NUM_STAGES=1, NUM_WARPS=4) for k in kernels)  # never hung: still proposed


def test_one_timeout_is_not_enough_to_avoid_a_pair():
    """BLOCK_M=256 with BLOCK_N=128 hung once (maybe a slow compile): still proposed, while
    the pair that hung twice is not."""
    history = [_attempt("BLOCK_M=64,NUM_STAGES=1,NUM_WARPS=4", "", parent=7, status="timeout", sha="h1"),
               _attempt("BLOCK_N=128,NUM_STAGES=1,NUM_WARPS=4", "", parent=7, status="timeout", sha="h2"),
               _attempt("BLOCK_M=256,BLOCK_N=128", "", parent=7, status="timeout", sha="h3")]
    kernels, _ = _kernels(_op(history), _ctx(0), read_knobs(SEED), history)
    assert any(_holds(k, BLOCK_M=256, BLOCK_N=128) for k in kernels)
    assert not [k for k in kernels if _holds(k, NUM_STAGES=1, NUM_WARPS=4)]


def test_a_pair_that_also_ran_ok_is_not_avoided():
    """NUM_STAGES=1 with NUM_WARPS=4 hung twice but also ran fine once: proposed again; the
    pair that hung twice and never ran (BLOCK_M=256 with BLOCK_N=128) is not."""
    history = [_attempt("BLOCK_M=64,NUM_STAGES=1,NUM_WARPS=4", "", parent=7, status="timeout", sha="h1"),
               _attempt("BLOCK_N=128,NUM_STAGES=1,NUM_WARPS=4", "", parent=7, status="timeout", sha="h2"),
               _attempt("NUM_STAGES=1,NUM_WARPS=4", "NUM_STAGES 2->1: x; NUM_WARPS 8->4: x", parent=9, sha="ok1"),
               _attempt("BLOCK_M=256,BLOCK_N=128,NUM_WARPS=4", "", parent=7, status="timeout", sha="h3"),
               _attempt("BLOCK_M=256,BLOCK_N=128,NUM_STAGES=3", "", parent=7, status="timeout", sha="h4")]
    kernels, _ = _kernels(_op(history), _ctx(0), read_knobs(SEED), history)
    assert any(_holds(k, NUM_STAGES=1, NUM_WARPS=4) for k in kernels)
    assert not [k for k in kernels if _holds(k, BLOCK_M=256, BLOCK_N=128)]


def test_on_the_h100_lineage_v4_is_never_moved_to_the_pair_that_deadlocked():
    """The committed cuda lineage: every timeout was a move from v4 with NUM_STAGES=1 and
    WARP_SPECIALIZE=False (a deadlock; the slot and GPU held for the 120 s watchdog)."""
    lineage = Lineage(CUDA_LINEAGE)
    history = lineage.attempts()
    hung = [a for a in history if a["status"] == "timeout" and a["parent"] == 4
            and {("NUM_STAGES", 1), ("WARP_SPECIALIZE", False)} <= set(parse_move(a["technique"]["name"]) or ())]
    assert len(hung) >= 2
    v4 = lineage.get(4).source
    generation = max(int(a.get("generation") or 0) for a in history) + 1
    op = HeuristicOperator(CUDA_LINEAGE, device="cuda")
    ctx = _ctx(0, generation=generation, source=v4, parent=4)
    kernels, _ = _kernels(op, ctx, read_knobs(v4), history)
    assert len(kernels) > 12 + 12  # jumps: no move next to v4 is left untried
    assert not [k for k in kernels if _holds(k, NUM_STAGES=1, WARP_SPECIALIZE=False)]
