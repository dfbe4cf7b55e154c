"""Issue 15, point 4: `SystemError: AST constructor recursion depth mismatch` from
`ast.parse` in concurrent `vary` threads (CPython 3.11 shares the AST conversion's
recursion counter between threads). avo's parsing goes through avo.ast_safe, one
process-wide lock. Under a second."""
import ast
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from avo import ast_safe
from avo.operators import heuristic

SEED = (Path(__file__).resolve().parents[1] / "kernel_src/attention/seeds/fa2.py").read_text()


def _watch_parse(monkeypatch):
    """Replace ast.parse with a slow probe that records how many threads are inside it."""
    real = ast.parse
    state = {"inside": 0, "most": 0}
    guard = threading.Lock()

    def probe(*args, **kwargs):
        with guard:
            state["inside"] += 1
            state["most"] = max(state["most"], state["inside"])
        try:
            time.sleep(0.002)  # widen the window a real parse leaves open to other threads
            return real(*args, **kwargs)
        finally:
            with guard:
                state["inside"] -= 1

    monkeypatch.setattr(ast, "parse", probe)
    return state


def test_heuristic_parsing_never_runs_in_two_threads_at_once(monkeypatch):
    state = _watch_parse(monkeypatch)

    def work(i):
        knobs = heuristic.read_knobs(SEED)
        move = heuristic.parse_move("BLOCK_N=128,NUM_STAGES=3")
        return knobs, move

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(48)))
    assert all(k == results[0][0] and k for k, _ in results)
    assert results[0][1] == (("BLOCK_N", 128), ("NUM_STAGES", 3))
    assert state["most"] == 1, f"{state['most']} threads were inside ast.parse at once"


def test_many_threads_parse_deep_sources_without_error():
    # deep nesting makes the C -> Python AST conversion recurse, where the counter lived
    deep = "x = " + "(" * 60 + "1" + ")" * 60 + "\ny = " + "[" * 40 + "]" * 40 + "\n"
    sources = [SEED, deep, "A = 1\nB = True\n" * 200]
    errors = []

    def work(i):
        try:
            tree = ast_safe.parse(sources[i % len(sources)])
            ast_safe.unparse(tree)
            ast_safe.literal_eval("[1, (2, 3), {'a': True}]")
        except Exception as e:  # noqa: BLE001 - any error fails the test below
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
