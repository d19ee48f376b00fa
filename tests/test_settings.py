"""Settings are validated before any work starts, with messages that say what to change."""
from __future__ import annotations

import dataclasses
from dataclasses import replace

import pytest

from workbench.settings import SettingsError, TrainSettings, resumed_settings, validate_settings


def _with(**grpo):
    s = TrainSettings()
    return replace(s, grpo=replace(s.grpo, **grpo))


def test_defaults_are_valid():
    validate_settings(TrainSettings())


@pytest.mark.parametrize("change, words", [
    (dict(group_size=1), "at least 2"),
    (dict(micro_batch_size=48), "does not divide"),
    (dict(generation_batch_size=12), "splits groups"),
    (dict(loss_type="ppo"), "choose one of"),
    (dict(temperature=0.0), "needs sampling"),
    (dict(beta=-1.0), "cannot be negative"),
    (dict(num_iterations=0), "at least 1"),
])
def test_bad_grpo_settings_say_what_to_change(change, words):
    with pytest.raises(SettingsError, match=words):
        validate_settings(_with(**change))


def test_every_problem_is_listed_at_once():
    with pytest.raises(SettingsError) as err:
        validate_settings(_with(group_size=1, loss_type="x"))
    assert "group_size=1" in str(err.value) and "loss_type='x'" in str(err.value)


def test_missing_model_folder(tmp_path):
    s = TrainSettings()
    s = replace(s, model=replace(s.model, model=str(tmp_path / "nope")))
    with pytest.raises(SettingsError, match="no such model folder"):
        validate_settings(s)


def test_unknown_task():
    s = TrainSettings()
    with pytest.raises(SettingsError, match="unknown"):
        validate_settings(replace(s, task=replace(s.task, name="chess")))


def test_round_trip_through_json():
    s = _with(group_size=4, loss_type="grpo")
    import json

    assert TrainSettings.from_dict(json.loads(s.to_json())) == s


def test_4bit_without_a_way_to_do_it_is_refused_up_front():
    import torch

    s = TrainSettings()
    if not torch.cuda.is_available():
        with pytest.raises(SettingsError, match="unsloth"):
            validate_settings(replace(s, model=replace(s.model, tier="unsloth")))
    with pytest.raises(SettingsError, match="lora=True"):
        validate_settings(replace(s, model=replace(s.model, tier="bnb4", lora=False)))


# ---------------------------------------------------------------------------------------------
# every field of every settings dataclass has a value that is refused, in one line naming it
# ---------------------------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")
BAD = {                         # field -> values validate_settings must refuse
    "model.model": ["", 3],
    "model.tier": ["gguf", None],
    "model.lora": ["yes", 1],
    "model.lora_r": [0, -4, 8.0],
    "model.lora_alpha": [0, -16, "32"],
    "model.lora_dropout": [-0.1, 1.0, NAN],
    "model.dtype": ["fp8", "int4", None],
    "model.gradient_checkpointing": ["no", None],
    "model.max_seq_length": [0, -1, 1e3],
    "task.name": ["chess", "gsm8k:", "math", 7],
    "task.knobs": [{"n_term": 3}, {"n_terms": 1}, {"n_terms": "3"}, {"n_train": 0}, [1]],
    "grpo.group_size": [0, -3, 1, 2.5, True],
    "grpo.prompts_per_step": [0, -1],
    "grpo.generation_batch_size": [0, -8, 12],
    "grpo.max_new_tokens": [0, -5],
    "grpo.temperature": [0.0, -1.0, NAN, INF],
    "grpo.top_p": [0.0, 1.5, NAN],
    "grpo.learning_rate": [0.0, -1e-4, NAN, INF, -INF, "1e-4"],
    "grpo.weight_decay": [-0.1, NAN],
    "grpo.max_grad_norm": [0.0, -1.0, NAN, INF],
    "grpo.loss_type": ["ppo", ""],
    "grpo.scale_rewards": ["false", None],
    "grpo.epsilon_low": [-0.1, 1.0, NAN],
    "grpo.epsilon_high": [-0.1, INF],
    "grpo.beta": [-1.0, NAN, INF],
    "grpo.num_iterations": [0, -1],
    "grpo.micro_batch_size": [0, 48, -64],
    "grpo.max_turns": [0, -2, 1.5],
    "grpo.max_episode_tokens": [0, -1, "64"],
    "grpo.mask_environment_tokens": ["no", 0, None],
    "steps": [0, -10, 1.5],
    "seed": [-1, 2**64, "0"],
    "checkpoint_every": [0, -1],
    "eval_examples": [0, -5],
    "eval_every": [-1],
    "eval_every_examples": [0, -3, 2.5],
    "device": ["tpu", "cuda:x", "", "gpu", 0],
    "threads": [0, -1, 1.5],
}


def _all_fields(cls=TrainSettings, prefix=""):
    for f in dataclasses.fields(cls):
        sub = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(sub):
            yield from _all_fields(type(sub), f"{prefix}{f.name}.")
        else:
            yield prefix + f.name


def _set(s, dotted, value):
    if "." not in dotted:
        return replace(s, **{dotted: value})
    part, name = dotted.split(".")
    return replace(s, **{part: replace(getattr(s, part), **{name: value})})


def test_the_table_covers_every_field():
    """A new settings field must say here which values it refuses."""
    assert set(_all_fields()) == set(BAD)


@pytest.mark.parametrize("dotted, value", [(k, v) for k, vs in BAD.items() for v in vs],
                         ids=lambda x: repr(x)[:20])
def test_every_bad_value_is_refused_in_one_line_that_names_it(dotted, value):
    with pytest.raises(SettingsError) as err:
        validate_settings(_set(TrainSettings(), dotted, value))
    message = str(err.value)
    assert "\n" not in message, message
    field = dotted.split(".")[-1]
    named = field if field != "knobs" else "knob"
    assert named in message or f"{dotted.split('.')[0]}=" in message, message


def test_task_files_are_checked_up_front(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    s = _set(TrainSettings(), "model.model", str(model))
    validate_settings(_set(s, "task.name", f"gsm8k:{model / 'config.json'}"))
    for name, words in [(f"gsm8k:{tmp_path / 'nope.jsonl'}", "no such file"),
                        (f"math:{tmp_path}", "is a folder")]:
        with pytest.raises(SettingsError, match=words):
            validate_settings(_set(s, "task.name", name))
    with pytest.raises(SettingsError, match="tiny model knows only"):
        validate_settings(_set(TrainSettings(), "task.name", f"gsm8k:{model / 'config.json'}"))
    with pytest.raises(SettingsError, match="test_fraction"):
        validate_settings(_set(_set(s, "task.name", f"math:{model / 'config.json'}"),
                               "task.knobs", {"test_fraction": 1.5}))
    mbpp = f"mbpp:{model / 'config.json'}"                  # code problems: their own knobs
    validate_settings(_set(_set(s, "task.name", mbpp), "task.knobs", {"n_public": 2}))
    for knobs, words in [({"n_public": 0}, "n_public=0"), ({"system_prompt": "x"}, "unknown"),
                         ({"limit": "3"}, "limit='3'")]:
        with pytest.raises(SettingsError, match=words):
            validate_settings(_set(_set(s, "task.name", mbpp), "task.knobs", knobs))
    with pytest.raises(SettingsError, match="tiny model knows only"):
        validate_settings(_set(TrainSettings(), "task.name", mbpp))


def test_an_mbpp_file_is_a_task_of_code_feedback_episodes(tmp_path):
    """``mbpp:PATH`` reaches the MBPP loader, and its episodes run in ``CodeFeedbackEnv``."""
    from workbench.envs.code import CodeFeedbackEnv, write_mbpp_sample
    from workbench.tasks import get_task

    path = write_mbpp_sample(tmp_path / "mbpp.jsonl")
    task = get_task(f"mbpp:{path}", test_fraction=0.34)
    assert task.env is CodeFeedbackEnv and len(task.train) + len(task.test) == 3
    env = task.env()
    row = task.test[0]
    env.reset(row)
    step = env.step("```python\n" + row["answer"] + "\n```")     # the reference passes
    assert step.done and step.info["passed"]


def test_cuda_asked_on_a_machine_without_it():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for device in ("cuda", "cuda:0", "cuda:3"):
        with pytest.raises(SettingsError, match="no CUDA GPU"):
            validate_settings(replace(TrainSettings(), device=device))


def test_good_values_pass():
    s = TrainSettings(device="cpu", threads=2, eval_every=5, seed=2**63 - 1)
    s = _set(s, "grpo.max_grad_norm", 1e9)
    validate_settings(_set(s, "task.knobs", {"n_terms": 4, "n_train": 100}))


def test_damaged_settings_dicts_are_refused_by_name():
    good = TrainSettings().to_dict()
    for bad, words in [({**good, "stpes": 3}, "unknown field.*stpes"),
                       ({**good, "grpo": {**good["grpo"], "lr": 1}}, "settings.grpo: unknown.*lr"),
                       ({**good, "model": "tiny"}, "settings.model must be a JSON object"),
                       ([1, 2], "must be a JSON object")]:
        with pytest.raises(SettingsError, match=words):
            TrainSettings.from_dict(bad)
    assert TrainSettings.from_dict({"steps": 3}) == replace(TrainSettings(), steps=3)


def test_resume_keeps_the_run_settings_except_the_safe_ones():
    saved = TrainSettings(steps=10).to_dict()
    assert resumed_settings(saved) == TrainSettings(steps=10)
    more = replace(TrainSettings(), steps=30, threads=1, device="cpu", checkpoint_every=5)
    assert resumed_settings(saved, more) == more
    for changed, words in [(_set(TrainSettings(steps=10), "grpo.learning_rate", 1e-3),
                            "grpo.learning_rate=0.001 .the run has 0.0001"),
                           (TrainSettings(steps=10, seed=1), "seed=1 .the run has 0"),
                           (_set(TrainSettings(steps=10), "task.name", "linear"), "task.name")]:
        with pytest.raises(SettingsError, match=words):
            resumed_settings(saved, changed)
