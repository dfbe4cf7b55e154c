"""The resume journal (avo.run_state) — milliseconds."""
import json
import time

import pytest

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


def test_two_generations_in_flight_round_trip_and_end_in_order(tmp_path):
    """With overlap the journal holds the oldest generation and the one after it."""
    path = state_path(tmp_path / ".avo", tmp_path / "lineage")
    state = load_or_start(path, tmp_path / "lineage", [{"generation": 4}])
    state.finish_slot(2, 5)
    state.finish_slot(0, 6)
    state.finish_slot(3, 6)
    save(path, state)
    again = load_or_start(path, tmp_path / "lineage", [])
    assert (again.generation, again.done_in(5), again.done_in(6)) == (5, [2], [0, 3])
    again.next_generation()  # 5 ended: 6, half done, is the oldest now
    assert (again.generation, again.done_slots, again.done_slots_ahead, again.spent.generations) == (6, [0, 3], [], 1)
    with pytest.raises(ValueError, match="not in flight"):
        again.finish_slot(0, 8)  # never a third generation


def test_a_journal_from_before_overlap_still_loads(tmp_path):
    path = state_path(tmp_path / ".avo", tmp_path / "lineage")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"run_id": "r1", "lineage_root": str(tmp_path / "lineage"), "generation": 7,
                                "status": "running", "done_slots": [1, 3], "spent": {"generations": 2, "gpu_s": 9.0},
                                "since_commit": 1, "directions": [], "stop_reason": "", "started": "", "updated": ""}))
    state = load_or_start(path, tmp_path / "lineage", [])
    assert state.resumed and (state.generation, state.done_in(7), state.done_in(8)) == (7, [1, 3], [])
    assert state.spent.gpu_s == 9.0
