"""Settings are validated before any work starts, with messages that say what to change."""
from __future__ import annotations

from dataclasses import replace

import pytest

from workbench.settings import SettingsError, TrainSettings, validate_settings


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
