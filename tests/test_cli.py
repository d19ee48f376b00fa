"""The command line: a user error ends in one ``error:`` line and exit code 2, never a traceback.

Every case here fails before any training (most before the model loads), so the file runs fast.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from test_runs import fake_run, held_by_another_process
from workbench.__main__ import main
from workbench.settings import TrainSettings


def run_cli(capsys, *argv) -> str:
    """``python -m workbench ARGV`` in this process: asserts exit code 2 and one stderr line."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("error: "), err
    return err


@pytest.fixture
def fake_model(tmp_path) -> Path:
    """A folder that passes the settings check for a real model (loading it would fail)."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return folder


# ---------------------------------------------------------------------------------------------
# where the run goes
# ---------------------------------------------------------------------------------------------

def test_out_that_is_a_file(capsys, tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    assert "is a file, not a folder" in run_cli(capsys, "train", "--out", target)
    assert target.read_text() == "mine"
    assert "cannot make the run folder" in run_cli(capsys, "train", "--out", target / "run")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_out_in_a_folder_that_cannot_be_written(capsys, tmp_path):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert "cannot make the run folder" in run_cli(capsys, "train", "--out", locked / "run")
        assert "cannot write in" in run_cli(capsys, "train", "--out", locked)
    finally:
        locked.chmod(0o700)


# ---------------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags, words", [
    (["--group-size", "0"], "group_size=0"),
    (["--group-size", "-4"], "group_size=-4"),
    (["--lr", "nan"], "learning_rate=nan"),
    (["--lr", "inf"], "learning_rate=inf"),
    (["--lr", "-0.1"], "learning_rate=-0.1"),
    (["--beta", "nan"], "beta=nan"),
    (["--beta", "inf"], "beta=inf"),
    (["--threads", "-2"], "threads=-2"),
    (["--threads", "0"], "threads=0"),
    (["--eval-examples", "0"], "eval_examples=0"),
    (["--eval-examples", "-5"], "eval_examples=-5"),
    (["--steps", "0"], "steps=0"),
    (["--checkpoint-every", "0"], "checkpoint_every=0"),
    (["--max-new-tokens", "0"], "max_new_tokens=0"),
    (["--prompts-per-step", "0"], "prompts_per_step=0"),
    (["--device", "tpu"], "device='tpu': unknown"),
    (["--device", "cuda:x"], "device='cuda:x': unknown"),
    (["--seed", "-1"], "seed=-1"),
    (["--task", "chess"], "task='chess': unknown"),
])
def test_bad_flags_are_one_line_before_any_work(capsys, tmp_path, flags, words):
    out = tmp_path / "run"
    assert words in run_cli(capsys, "train", "--out", out, *flags)
    assert not out.exists(), "refused before the run folder was made"


def test_cuda_on_a_machine_without_it(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert "no CUDA GPU" in run_cli(capsys, "train", "--out", tmp_path / "r", "--device", "cuda")
    assert "no CUDA GPU" in run_cli(capsys, "eval", "--device", "cuda:1")


def test_eval_checks_its_flags(capsys):
    assert "--examples 0" in run_cli(capsys, "eval", "--examples", "0")
    assert "threads=-1" in run_cli(capsys, "eval", "--threads", "-1")


# ---------------------------------------------------------------------------------------------
# task files
# ---------------------------------------------------------------------------------------------

GOOD_GSM8K = json.dumps({"question": "1+1?", "answer": "so #### 2"}) + "\n"
BAD_FILES = {                  # name -> (bytes, words in the error)
    "empty": (b"", "no rows"),
    "blank": (b"\n  \n", "no rows"),
    "not_json": (b"question: 1+1\n", ":1: not valid JSON"),
    "json_array": (b'[\n  {"question": "a", "answer": "#### 1"}\n]\n', "write one object per line"),
    "list_row": (GOOD_GSM8K.encode() + b"[1, 2]\n", ":2: a row must be a JSON object"),
    "string_row": (b'"just text"\n', "got a string"),
    "wrong_fields": (b'{"problem": "x", "solution": "y"}\n', "needs 'question' and 'answer'"),
    "question_number": (b'{"question": 12, "answer": "#### 1"}\n', "'question' must be non-empty text"),
    "answer_number": (b'{"question": "q", "answer": 4}\n', "'answer' must be non-empty text"),
    "answer_null": (b'{"question": "q", "answer": null}\n', "got null"),
    "no_hashes": (b'{"question": "q", "answer": "four"}\n', "no '####'"),
    "empty_gold": (b'{"question": "q", "answer": "#### "}\n', "nothing after '####'"),
    "binary": (bytes(range(256)) * 4, "binary data"),
    "latin1": ('{"question": "caf\u00e9", "answer": "#### 1"}\n'.encode("latin-1"), "not UTF-8"),
    "torn": (GOOD_GSM8K.encode() + b'{"question": "q", "ans', ":2: not valid JSON"),
}
BAD_MATH = {
    "math_no_box": (b'{"problem": "p", "solution": "it is 3"}\n', "no \\boxed{} answer"),
    "math_answer_list": (b'{"problem": "p", "answer": [1]}\n', "text or a number"),
    "math_solution_number": (b'{"problem": "p", "solution": 3}\n', "'solution' must be"),
}


@pytest.mark.parametrize("name", [*BAD_FILES, *BAD_MATH])
def test_every_kind_of_bad_task_file(capsys, tmp_path, fake_model, name):
    data, words = {**BAD_FILES, **BAD_MATH}[name]
    kind = "math" if name in BAD_MATH else "gsm8k"
    path = tmp_path / f"{name}.jsonl"
    path.write_bytes(data)
    out = tmp_path / "run"
    err = run_cli(capsys, "train", "--out", out, "--model", fake_model, "--task", f"{kind}:{path}")
    assert words in err and str(path) in err, err
    assert not (out / "settings.json").exists(), "--out stays free for the corrected run"
    err = run_cli(capsys, "eval", "--model", fake_model, "--task", f"{kind}:{path}")
    assert words in err


def test_missing_task_file_and_folder(capsys, tmp_path, fake_model):
    err = run_cli(capsys, "train", "--out", tmp_path / "r", "--model", fake_model,
                  "--task", f"gsm8k:{tmp_path / 'nope.jsonl'}")
    assert "no such file" in err
    assert "is a folder" in run_cli(capsys, "eval", "--model", fake_model,
                                     "--task", f"math:{tmp_path}")


# ---------------------------------------------------------------------------------------------
# run folders: damaged, busy, resumed with other flags
# ---------------------------------------------------------------------------------------------

SETTINGS = TrainSettings(steps=8, checkpoint_every=4, eval_examples=4).to_dict()


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A run folder at step 8 with checkpoints at 4 and 8 (no real weights: nothing loads them
    in these tests, every one of which is refused before the model is loaded)."""
    run = fake_run(tmp_path / "run", settings=SETTINGS)
    run.close()
    return run.path


def test_inspect_of_damaged_runs(capsys, tmp_path, run_dir):
    assert "not a run folder" in run_cli(capsys, "inspect", tmp_path / "nothing")
    assert main(["inspect", str(run_dir)]) == 0 and "step-000008" in capsys.readouterr().out
    (run_dir / "summary.json").write_text('{"steps": ')
    assert "summary.json is damaged" in run_cli(capsys, "inspect", run_dir)
    (run_dir / "summary.json").unlink()
    with open(run_dir / "metrics.jsonl", "ab") as fh:
        fh.write(b"\0" * 40 + b"\n")
    assert "metrics.jsonl:9 is damaged" in run_cli(capsys, "inspect", run_dir)
    for data, words in [(b"{", "settings.json is damaged"), (b'"tiny"', "not a JSON object"),
                        (b'{"stpes": 3}', "unknown field(s) stpes")]:
        (run_dir / "settings.json").write_bytes(data)
        assert words in run_cli(capsys, "inspect", run_dir)
        assert words in run_cli(capsys, "train", "--resume", run_dir)


def test_resume_of_a_run_with_short_logs_changes_nothing(capsys, run_dir):
    metrics = run_dir / "metrics.jsonl"
    metrics.write_bytes(metrics.read_bytes()[:40])
    before = metrics.read_bytes()
    assert "bytes but step-000008 recorded" in run_cli(capsys, "train", "--resume", run_dir)
    assert metrics.read_bytes() == before


def test_resume_with_no_complete_checkpoint(capsys, run_dir):
    for ckpt in (run_dir / "checkpoints").glob("step-*"):
        (ckpt / "state.json").unlink()
    assert "none is complete" in run_cli(capsys, "train", "--resume", run_dir)


@pytest.mark.parametrize("flags, words", [
    (["--lr", "0.5"], "grpo.learning_rate=0.5 (the run has 0.0001)"),
    (["--group-size", "4"], "grpo.group_size=4 (the run has 8)"),
    (["--seed", "3"], "seed=3"),
    (["--task", "linear"], "task.name='linear'"),
    (["--eval-examples", "9"], "eval_examples=9"),
    (["--overwrite"], "give one"),
    (["--steps", "2"], "already at step 8"),
    (["--threads", "0"], "threads=0"),
])
def test_resume_with_conflicting_flags_says_so(capsys, run_dir, flags, words):
    assert words in run_cli(capsys, "train", "--resume", run_dir, *flags)
    assert json.loads((run_dir / "settings.json").read_text()) == SETTINGS


def test_a_second_writer_is_refused(capsys, run_dir):
    before = (run_dir / "metrics.jsonl").read_bytes()
    with held_by_another_process(run_dir) as pid:
        err = run_cli(capsys, "train", "--resume", run_dir)
        assert f"being written by process {pid} " in err
        assert f"process {pid}" in run_cli(capsys, "train", "--out", run_dir, "--overwrite")
    assert (run_dir / "metrics.jsonl").read_bytes() == before
    assert (run_dir / "settings.json").exists()
