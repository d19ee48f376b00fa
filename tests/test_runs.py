"""The run store: atomic files, append-only logs cut back to a checkpoint, readable summaries."""
from __future__ import annotations

import json

import pytest

from workbench.runs import Run, RunStoreError, write_json_atomic


def test_create_refuses_to_clobber(tmp_path):
    Run.create(tmp_path / "r", {"a": 1})
    with pytest.raises(RunStoreError, match="--resume"):
        Run.create(tmp_path / "r", {"a": 2})
    assert Run.open(tmp_path / "r").settings == {"a": 1}
    Run.create(tmp_path / "r", {"a": 3}, overwrite=True)
    assert Run.open(tmp_path / "r").settings == {"a": 3}


def test_open_needs_a_run(tmp_path):
    with pytest.raises(RunStoreError, match="not a run folder"):
        Run.open(tmp_path)


def test_atomic_json_leaves_no_temporary_files(tmp_path):
    write_json_atomic(tmp_path / "x.json", {"k": [1, 2]})
    write_json_atomic(tmp_path / "x.json", {"k": [3]})
    assert json.loads((tmp_path / "x.json").read_text()) == {"k": [3]}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_logs_are_cut_back_to_a_checkpoint(tmp_path):
    run = Run.create(tmp_path / "r", {})
    run.append("metrics", [{"step": 1}, {"step": 2}])
    tmp = run.new_checkpoint_dir(2)
    (tmp / "weights.bin").write_bytes(b"w")
    ckpt = run.commit_checkpoint(tmp, 2, {"data_position": 16})
    run.append("metrics", [{"step": 3}])
    with open(run.path / "metrics.jsonl", "a") as fh:   # a write torn by SIGKILL
        fh.write('{"step": 4, "rew')
    assert [m["step"] for m in run.metrics()] == [1, 2, 3], "a torn last line is skipped"
    state = run.checkpoint_state(run.latest_checkpoint())
    assert state["step"] == 2 and state["data_position"] == 16 and ckpt.name == "step-000002"
    run.truncate_logs(state["log_sizes"])
    assert [m["step"] for m in run.metrics()] == [1, 2]


def test_old_checkpoints_are_pruned(tmp_path):
    run = Run.create(tmp_path / "r", {})
    for step in (1, 2, 3, 4):
        run.commit_checkpoint(run.new_checkpoint_dir(step), step, {}, keep=2)
    names = sorted(p.name for p in run.checkpoint_dir.iterdir())
    assert names == ["latest.json", "step-000003", "step-000004"]
    assert run.latest_checkpoint().name == "step-000004"


def test_half_written_checkpoint_is_ignored(tmp_path):
    run = Run.create(tmp_path / "r", {})
    run.commit_checkpoint(run.new_checkpoint_dir(1), 1, {})
    run.new_checkpoint_dir(2)                            # killed while filling it
    assert run.latest_checkpoint().name == "step-000001"
