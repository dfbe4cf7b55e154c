"""The resume journal (avo.run_state) — milliseconds."""
import time

from avo.run_state import already_tried, load_or_start, next_generation_number, save, state_path


def test_new_run_starts_after_the_last_generation_in_the_attempts_log(tmp_path):
    path = state_path(tmp_path / ".avo", tmp_path / "lineage")
    assert next_generation_number([]) == 1
    state = load_or_start(path, tmp_path / "lineage", [{"generation": 0}, {"generation": 4}])
    assert (state.generation, state.resumed, state.status) == (5, False, "running")


def test_unfinished_run_resumes_with_slots_and_spending(tmp_path):
    path = state_path(tmp_path / ".avo", tmp_path / "lineage")
    state = load_or_start(path, tmp_path / "lineage", [])
    state.finish_slot(1)
    state.spent.gpu_s = 30.0
    save(path, state)
    again = load_or_start(path, tmp_path / "lineage", [{"generation": 9}])
    assert again.resumed and again.run_id == state.run_id
    assert (again.generation, again.done_slots, again.spent.gpu_s) == (1, [1], 30.0)
    # wall time accumulates across invocations
    time.sleep(0.02)
    save(path, again)
    assert again.spent.wall_s >= state.spent.wall_s + 0.02


def test_finished_run_is_not_resumed(tmp_path):
    path = state_path(tmp_path / ".avo", tmp_path / "lineage")
    state = load_or_start(path, tmp_path / "lineage", [])
    state.status = "finished"
    save(path, state)
    fresh = load_or_start(path, tmp_path / "lineage", [{"generation": 3}])
    assert not fresh.resumed and fresh.run_id != state.run_id and fresh.generation == 4


def test_already_tried_matches_source_device_and_suite():
    attempts = [{"source_sha256": "abc", "device": "cpu", "suite": "cpu", "generation": 2, "status": "ok"}]
    assert already_tried(attempts, "abc", "cpu", "cpu")["generation"] == 2
    assert already_tried(attempts, "abc", "cuda", "avo") is None  # a GPU measurement is new information
    assert already_tried(attempts, "def", "cpu", "cpu") is None
