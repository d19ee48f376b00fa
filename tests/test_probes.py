"""Faithfulness probes and language share: the arithmetic on fixed inputs, then each probe's
plumbing on the tiny model (rows agree with numbers; fixed traces give the expected shape)."""
from __future__ import annotations

import pytest

from workbench.probes import (Trace, adding_mistake, area_over_curve, biased_hint,
                              corrupt_step, early_answering, filler_tokens, final_answer,
                              held_out, language_drift,
                              language_reward, language_rows, language_share, match_rate,
                              mean_aoc, probe_rows, reading_html, same_answer, switch_rate,
                              trace_steps, verbalisation_rate)
from workbench.tasks import BilingualSumTask, get_task

# ---------------------------------------------------------------------------------------------
# arithmetic on fixed inputs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("matches, aoc", [
    ([1, 1, 1], 0.0),              # answer fixed before any step: post hoc
    ([0, 0, 1], 0.75),             # trapezoids (0+0)/2 and (0+1)/2, each of width 1/2
    ([0, 1], 0.5),
    ([0.5, 1], 0.25),
    ([0, 1, 1, 1], 1 - (0.5 + 1 + 1) / 3),
])
def test_area_over_curve_by_the_trapezoid_rule(matches, aoc):
    assert area_over_curve(matches) == pytest.approx(aoc)


def test_area_over_curve_needs_two_points():
    with pytest.raises(ValueError, match="at least 2 points"):
        area_over_curve([1])


def test_mean_aoc_is_lanhams_length_weighted_average():
    curves = [[0, 1], [1, 1], [0, 0, 1], [0, 1, 1], [0, 0, 0, 1]]
    by_length: dict[int, list] = {}
    for c in curves:
        by_length.setdefault(len(c), []).append(c)
    weighted = 0.0
    for length, group in by_length.items():
        # the mean curve of this length, then its AOC, weighted by the share of traces
        mean_curve = [sum(c[k] for c in group) / len(group) for k in range(length)]
        weighted += area_over_curve(mean_curve) * len(group) / len(curves)
    assert mean_aoc(curves) == pytest.approx(weighted)
    assert mean_aoc([]) is None


def test_match_rate_uses_the_verifier_and_never_matches_a_missing_answer():
    assert match_rate(["15", "10/4", None, "7"], ["15", "5/2", "3", "8"]) == 0.5
    assert match_rate([], []) is None
    with pytest.raises(ValueError):
        match_rate(["1"], [])


def test_switch_rate_counts_only_problems_not_already_at_the_hint():
    plain = ["15", "12", "17", None]
    hinted = ["17", "12", "17", "9"]
    hints = ["17", "14", "17", "9"]
    rate, switched = switch_rate(plain, hinted, hints)
    # eligible: problems 0, 1, 3 (problem 2 already answered 17); switched: 0 and 3
    assert switched == [True, False, False, True]
    assert rate == pytest.approx(2 / 3)
    assert switch_rate(["5"], ["5"], ["5"]) == (None, [False])


def test_verbalisation_rate_among_switched_only():
    completions = ["As you suggested, 17.\n<answer>17</answer>", "<answer>17</answer>",
                   "the hint says 9 <answer>9</answer>", "no mention <answer>3</answer>"]
    switched = [True, True, False, False]
    assert verbalisation_rate(completions, switched) == 0.5
    assert verbalisation_rate(completions, [False] * 4) is None
    assert verbalisation_rate(completions, switched, mentions=lambda t: "17" in t) == 1.0


def test_steps_answers_and_corruption():
    text = "7+3=10\n\n10+5=15\n<answer>15</answer>"
    assert trace_steps(text) == ("7+3=10", "10+5=15")
    assert trace_steps("<answer>4</answer>") == ()
    assert trace_steps("about <answer>17</answer>") == ()          # the answer's own line
    assert trace_steps("7+3=10\nso <answer>10</answer>") == ("7+3=10",)
    assert final_answer(text) == "15"
    assert final_answer("7+3=10\n<answer>12") == "12"            # unclosed, as when forced
    assert final_answer("so \\boxed{5/2}") == "5/2"
    assert final_answer("no answer") is None
    assert corrupt_step("7+3=10", 2) == "7+3=12"
    assert corrupt_step("7 plus 3 is 10", -3) == "7 plus 3 is 7"
    assert corrupt_step("no number", 1) is None
    assert same_answer("10/4", "5/2") and not same_answer(None, "1")


# ---------------------------------------------------------------------------------------------
# language share
# ---------------------------------------------------------------------------------------------

def test_language_share_counts_words_exactly():
    mixed = "7 plus 3 is 10\n10 et 5 font 15\n<answer>15</answer>"
    assert language_share(mixed, "en") == 0.5
    assert language_share(mixed, "fr") == 0.5
    assert language_share("about <answer>17</answer>") == 1.0
    assert language_share("7+3=10\n<answer>10</answer>") is None        # no words: 0/0
    assert language_share("7 plus 3 makes 10") == pytest.approx(1 / 2)   # 'makes': neither


def test_language_rows_tag_every_piece_and_join_back():
    text = "7 plus 3 font 10\n<answer>10</answer>"
    rows = language_rows(text)
    assert "".join(r["text"] for r in rows) == text
    assert [(r["text"], r["language"]) for r in rows if r["language"]] == [
        ("plus", "en"), ("font", "fr")]


def test_language_rows_token_level(policy):
    text = "7 plus 3 is 10\n10 et 5 font 15\n<answer>15</answer>"
    rows = language_rows(text, tokenizer=policy.tokenizer)
    assert "".join(r["text"] for r in rows) == text
    tagged = {r["language"] for r in rows}
    assert {"en", "fr", None} <= tagged
    assert all(r["text"].strip().isalpha() for r in rows if r["language"])


def test_language_reward_follows_trls_contract():
    fn = language_reward("en")
    assert fn.__name__ == "language_reward"
    chats = [[{"role": "assistant", "content": "1 plus 2 is 3\n<answer>3</answer>"}],
             [{"role": "assistant", "content": "1 et 2 font 3\n<answer>3</answer>"}],
             [{"role": "assistant", "content": "<answer>3</answer>"}]]
    assert fn(prompts=[None] * 3, completions=chats, answer=["3"] * 3) == [1.0, 0.0, 0.0]


def test_bilingual_corpus_writes_working_mostly_in_the_second_language():
    import random

    task = get_task("sum_bilingual", n_train=10, n_test=10)
    w = task.writer
    rng = random.Random(0)
    worked = [w.solution(w.sample_problem(rng), "worked", rng) for _ in range(2000)]
    share = sum(language_share(t) for t in worked) / len(worked)
    assert 0.2 < share < 0.45          # 25% start in English, 15% switch after a step
    assert language_share(w.solution((1, 2, 3), "worked", language="fr")) == 0.0
    assert w.solution((1, 2, 3), "worked", language="en") == \
        "1 plus 2 is 3\n3 plus 3 is 6\n<answer>6</answer>"
    assert task.test["question"] == get_task("sum", n_train=10, n_test=10).test["question"]
    assert not set(BilingualSumTask.WORDS["en"]) & set(BilingualSumTask.WORDS["fr"])


# ---------------------------------------------------------------------------------------------
# the probes on the two-language tiny model (notebook 10's): fixed traces in, rows and numbers
# that agree out
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def policy():
    """The two-language tiny model (built once, then cached like the default)."""
    from workbench.models import load_policy

    return load_policy(task="sum_bilingual", verbose=False)


@pytest.fixture(scope="module")
def sum_task():
    return get_task("sum_bilingual", n_train=10, n_test=40)


@pytest.fixture(scope="module")
def worked_traces(sum_task):
    """Correct worked traces written by the task itself (2 steps each, in French)."""
    import json

    rows = list(sum_task.test)[:6]
    return [Trace(prompt=r["prompt"], question=r["question"], gold=r["answer"],
                  completion=sum_task.writer.solution(tuple(json.loads(r["problem"])),
                                                      language="fr"))
            for r in rows]


def test_early_answering_rows_agree_with_its_numbers(policy, sum_task, worked_traces):
    res = early_answering(policy, sum_task, traces=worked_traces)
    assert res.numbers["traces"] == 6 and len(res.rows) == 6 * 3      # k = 0, 1, 2
    curves = [[float(r["match"]) for r in probe_rows(res, i)] for i in range(6)]
    assert all(c[-1] == 1.0 for c in curves)                           # reference = itself
    assert res.numbers["aoc"] == pytest.approx(mean_aoc(curves))
    assert res.curve[-1] == (1.0, 1.0)
    # given a correct worked trace, the tiny model copies its last result into the answer
    assert res.numbers["accuracy"] >= 0.8


def test_adding_mistake_rows_agree_with_its_numbers(policy, sum_task, worked_traces):
    res = adding_mistake(policy, sum_task, traces=worked_traces, seed=1)
    assert len(res.rows) == 6 * 2                                      # one per step position
    changed = [r["changed"] for r in res.rows]
    assert res.numbers["changed"] == pytest.approx(sum(changed) / len(changed))
    for r in res.rows:
        assert r["shown"].count("\n") == r["k"] + 1
        assert r["expected_if_followed"] == str(int(r["reference"]) + r["delta"])
    followed = [r["followed"] for r in res.rows]
    assert res.numbers["followed"] == pytest.approx(sum(followed) / len(followed))


def test_filler_and_hint_numbers_come_from_their_rows(policy, sum_task, worked_traces):
    res = filler_tokens(policy, sum_task, traces=worked_traces)
    assert {r["variant"] for r in res.rows} == {"trace", "none", "filler"}
    fill = [r for r in res.rows if r["variant"] == "filler"]
    assert all(set(r["shown"].strip()) == {".", " "} for r in fill)
    acc = sum(r["correct"] for r in fill) / len(fill)
    assert res.numbers["accuracy_filler"] == pytest.approx(acc)
    hint = biased_hint(policy, sum_task, n=12, seed=3)
    assert len(hint.rows) == 12
    assert all(r["hint"] != r["gold"] for r in hint.rows)
    assert hint.numbers["switched"] == sum(r["switched"] for r in hint.rows)
    assert "I think the answer is" in hint.traces[0].prompt[-1]["content"]
    html = reading_html(worked_traces[0].completion, probes=[(res.name, probe_rows(res, 0))])
    assert "filler tokens" in html and "<table>" in html


def test_biased_hint_needs_a_wrong_answer_for_non_numeric_golds(policy):
    task = get_task("linear", n_train=10, n_test=40)
    fraction = next(i for i, a in enumerate(task.test["answer"]) if "/" in a)
    with pytest.raises(ValueError, match="pass wrong="):
        biased_hint(policy, task, n=fraction + 1)


def test_held_out_judges_as_evaluate_policy_does(policy, sum_task):
    from workbench.trainer import evaluate_policy

    ours = held_out(policy, sum_task, n=20)
    assert ours["accuracy"] == evaluate_policy(policy, sum_task, n=20, max_new_tokens=48)[
        "accuracy"]
    assert ours["language_share"] == 1.0      # greedy, before RL: English estimates


def test_language_drift_measures_the_share_at_weight_zero():
    from dataclasses import replace

    from workbench.models import load_policy
    from workbench.settings import GRPOSettings, TrainSettings

    fresh = load_policy(task="sum_bilingual", verbose=False)
    small = GRPOSettings(group_size=4, prompts_per_step=2, generation_batch_size=8,
                         micro_batch_size=8)
    arm = language_drift(language_weight=0.0, steps=2, policy=fresh, n_eval=8, progress=False,
                         settings=replace(TrainSettings(), grpo=small))
    assert arm.name == "accuracy only" and len(arm.history) == 2
    assert all(0.0 <= h["language_share"] <= 1.0 for h in arm.history)
    assert set(arm.summary()) >= {"share_before", "share_after", "train_share_last"}
