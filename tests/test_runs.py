"""The run store: atomic files, append-only logs cut back to a checkpoint, readable summaries."""
from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.runs import LOGS, Run, RunStoreError, write_json_atomic

ROOT = Path(__file__).resolve().parents[1]


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


# ---------------------------------------------------------------------------------------------
# resume never trusts a damaged folder: hostile run folders
# ---------------------------------------------------------------------------------------------

def fake_run(path, *, steps=8, every=4, settings=None):
    """A run folder as the trainer leaves it: one metrics and trace line per step, and a
    checkpoint (weights folder + trainer state) every ``every`` steps. Locked by this process."""
    run = Run.create(path, settings or {"a": 1})
    for step in range(1, steps + 1):
        run.append("metrics", [{"step": step, "reward_mean": step / 10, "accuracy": 0.5,
                                "completion_length": 10.0, "step_seconds": 0.1}])
        run.append("traces", [{"step": step, "completion": "x" * step}])
        if step % every == 0:
            tmp = run.new_checkpoint_dir(step)
            (tmp / "weights").mkdir()
            (tmp / "weights" / "model.safetensors").write_bytes(b"w" * 100)
            (tmp / "trainer_state.pt").write_bytes(b"s" * 10)
            run.commit_checkpoint(tmp, step, {"data_position": 2 * step})
    return run


def test_checkpoint_lists_its_files_and_their_sizes(tmp_path):
    run = fake_run(tmp_path / "r")
    state = run.checkpoint_state(run.latest_checkpoint())
    assert state["files"] == {"trainer_state.pt": 10, "weights/model.safetensors": 100}
    assert state["step"] == 8 and state["data_position"] == 16


@pytest.mark.parametrize("damage", ["removed", "latest_garbage", "latest_missing"])
def test_latest_pointer_to_nothing_falls_back_to_the_newest_complete(tmp_path, damage):
    run = fake_run(tmp_path / "r", steps=10)
    latest = run.checkpoint_dir / "latest.json"
    if damage == "removed":                    # latest.json names a folder that is gone
        shutil.rmtree(run.checkpoint_dir / "step-000008")
        want = "step-000004"
    elif damage == "latest_garbage":
        latest.write_bytes(b"\x00\x00{not json")
        want = "step-000008"
    else:
        latest.unlink()
        want = "step-000008"
    point = run.resume_point()
    assert point.checkpoint.name == want and run.latest_checkpoint().name == want
    assert point.state["step"] == int(want[5:])
    if damage != "latest_missing":
        assert any("latest.json" in n for n in point.notes), point.notes


@pytest.mark.parametrize("damage, why", [
    ("cut_weights", "weights/model.safetensors has 50 bytes, 100 were written"),
    ("no_trainer_state", "trainer_state.pt is missing"),
    ("no_state", "state.json missing"),
    ("garbage_state", "state.json damaged"),
    ("wrong_step", "does not describe this step"),
    ("no_sizes", "no log sizes"),
])
def test_partially_written_checkpoint_is_skipped_and_said(tmp_path, damage, why):
    run = fake_run(tmp_path / "r")
    ckpt = run.checkpoint_dir / "step-000008"
    if damage == "cut_weights":
        with open(ckpt / "weights" / "model.safetensors", "r+b") as fh:
            fh.truncate(50)
    elif damage == "no_trainer_state":
        (ckpt / "trainer_state.pt").unlink()
    elif damage == "no_state":
        (ckpt / "state.json").unlink()
    elif damage == "garbage_state":
        (ckpt / "state.json").write_text('{"step": 8, "log_si')
    else:
        state = json.loads((ckpt / "state.json").read_text())
        state = dict(state, step=7) if damage == "wrong_step" else \
            {k: v for k, v in state.items() if k != "log_sizes"}
        (ckpt / "state.json").write_text(json.dumps(state))
    assert why in run.checkpoint_problem(ckpt)
    point = run.resume_point()
    assert point.checkpoint.name == "step-000004", "never step 0 while a good checkpoint exists"
    assert any("step-000008" in n and why in n for n in point.notes), point.notes
    assert run.latest_checkpoint().name == "step-000004"


def test_no_complete_checkpoint_is_refused_and_nothing_changes(tmp_path):
    run = fake_run(tmp_path / "r")
    for ckpt in run.checkpoint_dir.glob("step-*"):
        (ckpt / "trainer_state.pt").unlink()
    before = (run.path / "metrics.jsonl").read_bytes()
    with pytest.raises(RunStoreError, match="none is complete.*nothing safe to resume"):
        run.resume_point()
    assert (run.path / "metrics.jsonl").read_bytes() == before


def test_no_checkpoint_yet_starts_again_from_step_0(tmp_path):
    run = fake_run(tmp_path / "r", steps=3)            # killed before the first checkpoint
    point = run.resume_point()
    assert point.checkpoint is None and point.state is None


@pytest.mark.parametrize("log", ["metrics.jsonl", "traces.jsonl"])
@pytest.mark.parametrize("how", ["cut", "deleted"])
def test_log_shorter_than_its_checkpoint_is_refused_not_padded(tmp_path, log, how):
    run = fake_run(tmp_path / "r")
    path = run.path / log
    if how == "cut":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.unlink()
    before = {n: (run.path / n).read_bytes() for n in LOGS if (run.path / n).exists()}
    with pytest.raises(RunStoreError, match=f"{log} has \\d+ bytes but step-000008 recorded"):
        run.resume_point()
    with pytest.raises(RunStoreError, match="bytes but the checkpoint recorded"):
        run.truncate_logs(run.checkpoint_state(run.latest_checkpoint())["log_sizes"])
    after = {n: (run.path / n).read_bytes() for n in LOGS if (run.path / n).exists()}
    assert after == before, "a refused resume cuts nothing and pads nothing"
    assert all(b"\0" not in data for data in after.values())


@pytest.mark.parametrize("garbage, words", [
    (lambda line: b"\0" * (len(line) - 1) + b"\n", "metrics.jsonl:3 is damaged"),
    (lambda line: b"[3]" + b" " * (len(line) - 4) + b"\n", "metrics.jsonl:3 is damaged .not a JSON object"),
    (lambda line: line.replace(b'"step": 3', b'"step": 9'), "holds steps \\[1, 2, 9, 4"),
    (lambda line: b" " + line, "does not end a line"),
])
def test_garbage_inside_a_log_is_refused_with_its_line(tmp_path, garbage, words):
    run = fake_run(tmp_path / "r")
    path = run.path / "metrics.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = garbage(lines[2])
    path.write_bytes(b"".join(lines))
    with pytest.raises(RunStoreError, match=words):
        run.resume_point()


def test_reading_a_damaged_log_says_where(tmp_path):
    run = fake_run(tmp_path / "r", steps=3)
    with open(run.path / "metrics.jsonl", "ab") as fh:
        fh.write(b"\xff\xfe garbage\n{\"step\": 5}\n")
    with pytest.raises(RunStoreError, match="metrics.jsonl:4 is damaged"):
        run.metrics()


def test_damaged_settings_and_summary_are_named(tmp_path):
    run = fake_run(tmp_path / "r", steps=1)
    (run.path / "summary.json").write_text("{oops")
    with pytest.raises(RunStoreError, match="summary.json is damaged"):
        run.summary()
    (run.path / "settings.json").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(RunStoreError, match="settings.json is damaged"):
        Run.open(run.path).settings
    (run.path / "settings.json").write_text("[1, 2]")
    with pytest.raises(RunStoreError, match="not a JSON object"):
        Run.open(run.path).settings


def test_prune_keeps_complete_checkpoints_and_drops_dead_ones(tmp_path):
    run = fake_run(tmp_path / "r", steps=8, every=4)
    (run.checkpoint_dir / "step-000004" / "trainer_state.pt").unlink()   # damaged, older
    run.commit_checkpoint(run.new_checkpoint_dir(12), 12, {}, keep=2)
    names = sorted(p.name for p in run.checkpoint_dir.iterdir())
    assert names == ["latest.json", "step-000008", "step-000012"]


# ---------------------------------------------------------------------------------------------
# one writer at a time
# ---------------------------------------------------------------------------------------------

HOLD = ("import sys; sys.path.insert(0, sys.argv[2]); from workbench.runs import Run; "
        "r = Run.open(sys.argv[1], lock=True); print('locked', flush=True); sys.stdin.read()")


@contextlib.contextmanager
def held_by_another_process(path):
    """Another process that holds ``path``'s writer lock until the block ends."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(ROOT)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc.pid
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_a_second_writer_process_is_refused_and_told_who(tmp_path):
    run = fake_run(tmp_path / "r")
    run.close()
    before = sorted(p.name for p in run.path.rglob("*"))
    with held_by_another_process(run.path) as pid:
        with pytest.raises(RunStoreError, match=f"being written by process {pid} "):
            Run.open(run.path, lock=True)
        with pytest.raises(RunStoreError, match=f"process {pid}"):
            Run.create(run.path, {"b": 2}, overwrite=True)
        assert sorted(p.name for p in run.path.rglob("*")) == before, "nothing was replaced"
    Run.open(run.path, lock=True).close()             # free again once the other one exits


def test_in_one_process_the_newer_writer_takes_over(tmp_path):
    first = fake_run(tmp_path / "r", steps=1)
    second = Run.open(first.path, lock=True)          # a notebook cell run again
    second.append("metrics", [{"step": 2}])
    with pytest.raises(RunStoreError, match="can no longer write"):
        first.append("metrics", [{"step": 2}])
    assert [m["step"] for m in Run.open(first.path).metrics()] == [1, 2]
