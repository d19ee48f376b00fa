"""Search agents: the generated world and its held-out split, BM25, the calculator, the
protocol's parser under hostile input, the rewards, and the masking switch."""
from __future__ import annotations

import json
import random
import time

import pytest

from workbench.envs.search import (
    KINDS, MAX_CALC_CHARS, MAX_INFO_CHARS, CalcError, SearchEnv, calculate, em_reward,
    episode_text, exact_match, f1_reward, f1_score, gold, lookups, make_world, normalize_answer,
    parse_action, question, retrieval_reward, search_calls, search_format_reward, world_index)
from workbench.tasks import get_task

WORLD = make_world()


def _turns(*texts):
    """An episode's turns from alternating model / environment texts, run through a SearchEnv."""
    env, turns = SearchEnv(), []
    env.reset({"prompt": "q"})
    for text in texts:
        step = env.step(text)
        turns.append({"role": "model", "text": text, "info": step.info})
        if step.feedback is not None:
            turns.append({"role": "env", "text": step.feedback, "info": {}})
    return turns


# ---------------------------------------------------------------------------------------------
# the world and its questions
# ---------------------------------------------------------------------------------------------

def test_the_world_is_the_same_for_the_same_seed_and_differs_for_another():
    make_world.cache_clear()
    again = make_world()
    assert again.documents == WORLD.documents and again.held_out == WORLD.held_out
    assert make_world(7).documents != WORLD.documents


def test_held_out_questions_never_appear_in_training():
    task = get_task("search", n_train=3000, n_test=200)
    held = {(r["kind"], r["problem"]) for r in task.test}
    assert len(held) == len(task.test) == 200
    train_names = {json.loads(r["problem"])[1] for r in task.train}
    test_names = {json.loads(r["problem"])[1] for r in task.test}
    assert not train_names & test_names and test_names <= WORLD.held_out
    assert {r["hops"] for r in task.test} == {0, 1, 2}


def test_a_careful_episode_retrieves_every_gold_answer():
    """Every 1- and 2-hop question of the world: the careful look-ups' results hold the gold."""
    for kind in KINDS:
        group = WORLD.companies if kind.startswith("found") else WORLD.people
        for e in group:
            text = episode_text(WORLD, kind, e.name)
            seen = " ".join(text.split("<information>")[1:])
            assert KINDS[kind][0] == 0 or gold(WORLD, kind, e.name) in seen, (kind, e.name)
            assert text.count("<search>") == len(lookups(WORLD, kind, e.name))


def test_two_hop_needs_the_first_result_to_make_the_second_query():
    c = WORLD.companies[0]
    first, second = lookups(WORLD, "founder_year", c.name)
    assert c.founder in second and c.founder not in question(WORLD, "founder_year", c.name)


# ---------------------------------------------------------------------------------------------
# BM25 search
# ---------------------------------------------------------------------------------------------

def test_bm25_ranks_the_named_entity_first_and_finds_nothing_for_unknown_words():
    index = world_index()
    p = WORLD.people[5]
    assert index.search(f"{p.name} born", 2)[0] == f"{p.name}: born {p.born} in {p.city}."
    assert index.search("zzzz qqqq", 3) == [] and index.search("", 3) == []
    assert len(index.search("born", 3)) == 3


# ---------------------------------------------------------------------------------------------
# the calculator never evaluates Python, and every expression is bounded
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("expr, value", [("2+3*4", "14"), ("(2+3)*4", "20"), ("7/2", "3.5"),
                                         ("-3+10", "7"), ("1/3", "0.333333"),
                                         ("2024 - 1961", "63"), ("((1))", "1")])
def test_calculator_arithmetic(expr, value):
    assert calculate(expr) == value


@pytest.mark.parametrize("expr, words", [
    ("2**9999", "unexpected"), ("9" * 5000, "too long"), ("9" * 13, "more than 12 digits"),
    ("(" * 30 + "1" + ")" * 30, "nested"), ("999999999999*999999999999", "too large"),
    ("1/0", "division by zero"), ("__import__('os')", "cannot read"), ("", "empty"),
    ("(1+2", "never closed"), ("1+", "too early"), ("1 2", "unexpected"),
    ("1/999999999999/999999999999", "too large"),
])
def test_calculator_refuses_in_one_line(expr, words):
    with pytest.raises(CalcError, match=words) as err:
        calculate(expr)
    assert "\n" not in str(err.value) and len(str(err.value)) < 120


# ---------------------------------------------------------------------------------------------
# the protocol under hostile input: a short observation, never an exception, always bounded
# ---------------------------------------------------------------------------------------------

HOSTILE = [
    "<search>" * 200_000,                                    # 1.6 MB of openers, no closer
    "<search>" + "a " * 500_000 + "</search>",               # a 1 MB query
    "<search><search>nested</search></search>",
    "<search>a<answer>b</answer></search>",
    "</search>", "<search></search>", "<search>   </search>", "<calc>",
    "<calc>" + "(" * 100_000 + "</calc>",
    "<calc>" + "9" * 1_000_000 + "</calc>",
    "<calc>9*" * 20 + "9</calc>",
    "<answer>" + "x" * 1_000_000,
    "<search>\x00\x1b[31m\u202e</search>",
]


@pytest.mark.parametrize("text", HOSTILE, ids=lambda t: repr(t[:24]))
def test_hostile_turns_get_a_bounded_observation(text):
    env = SearchEnv()
    env.reset({"prompt": "q"})
    t0 = time.perf_counter()
    step = env.step(text)
    assert time.perf_counter() - t0 < 1.0
    if step.feedback is not None:
        assert step.feedback.startswith(" <information>")
        assert step.feedback.endswith("</information>")
        assert len(step.feedback) <= MAX_INFO_CHARS + 30
        assert step.feedback.count("<") == 2          # nothing the model wrote reopens a tag
    assert not step.done or step.info["action"] in ("answer", "none")


def test_random_strings_in_tags_never_raise():
    rng = random.Random(0)
    alphabet = "<>/ abcsearchlinformationswer()+-*/0123456789\n"
    env = SearchEnv()
    env.reset({"prompt": "q"})
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        tag = rng.choice(["search", "calc", "answer"])
        for t in (text, f"<{tag}>{text}</{tag}>", f"<{tag}>{text}"):
            step = env.step(t)
            assert step.feedback is None or len(step.feedback) <= MAX_INFO_CHARS + 30


def test_parse_action_takes_the_first_closed_call():
    assert parse_action("<search> Nora Vale</search> <answer>1</answer>").content == "Nora Vale"
    assert parse_action("I think <answer> 1961 </answer>").content == "1961"
    assert parse_action("no tags").kind == "none"
    assert parse_action("<search>x").error == "the search call is never closed"
    assert parse_action("<search></search>").error == "empty search call"
    long = parse_action("<calc>" + "1+" * MAX_CALC_CHARS + "1</calc>")
    assert long.kind == "calc"
    with pytest.raises(CalcError, match="too long"):
        calculate(long.content)


def test_no_tools_baseline_answers_every_call_with_no_results():
    env = SearchEnv(tools=False)
    env.reset({"prompt": "q"})
    assert env.step(f"<search> {WORLD.people[0].name}</search>").feedback == \
        " <information>no results</information>"
    assert env.step("<calc>1+1</calc>").feedback == " <information>no results</information>"


# ---------------------------------------------------------------------------------------------
# rewards
# ---------------------------------------------------------------------------------------------

def test_answer_normalisation_and_partial_credit():
    assert exact_match("The  Nora Vale.", "nora vale") and not exact_match("Nora", "Nora Vale")
    assert f1_score("Nora", "Nora Vale") == pytest.approx(2 / 3)
    assert f1_score("", "1961") == 0.0 and normalize_answer("An Apple!") == "apple"


def test_rewards_read_the_episode_turns():
    p = WORLD.people[0]
    good = _turns(f"<search> {p.name} born</search>", f"<answer> {p.born}</answer>")
    lucky = _turns(f"<answer> {p.born}</answer>")
    half = _turns(f"<search> {p.name} born</search>", f"<answer> {p.name.split()[0]}</answer>")
    messy = _turns("<search></search>", f"<answer>{p.born}</answer>")
    eps = [good, lucky, half, messy]
    answer = [str(p.born)] * 3 + [str(p.born)]
    comps = ["\n".join(t["text"] for t in e if t["role"] == "model") for e in eps]
    assert em_reward(None, comps, answer, turns=eps) == [1.0, 1.0, 0.0, 1.0]
    assert search_format_reward(None, comps, turns=eps) == [1.0, 1.0, 1.0, 0.0]
    assert retrieval_reward(None, comps, answer, turns=eps) == [1.0, 0.0, 1.0, 0.0]
    assert f1_reward(None, comps, [p.name] * 4, turns=eps)[2] == pytest.approx(2 / 3)
    assert [search_calls(e) for e in eps] == [1, 0, 1, 0]
    # without turns (TRL's one text): the last <answer> of the completion
    assert em_reward(None, [comps[0]], answer[:1]) == [1.0]


# ---------------------------------------------------------------------------------------------
# the task, the masking switch and the tiny model's cache key
# ---------------------------------------------------------------------------------------------

def test_search_task_knobs_are_checked():
    task = get_task("search", n_train=10, n_test=5, top_k=3, process=0.5)
    assert task.component_names == ("answer", "f1", "format", "retrieval")
    assert task.reward_weights == (1.0, 0.0, 0.1, 0.5) and task.env().top_k == 3
    for bad in (dict(top_k=0), dict(process=-1), dict(f1="x")):
        with pytest.raises(ValueError):
            get_task("search", n_train=1, n_test=1, **bad)


def test_search_spec_has_its_own_key_and_the_default_key_is_unchanged():
    from workbench.tiny import TinySpec, tiny_spec_for

    assert TinySpec().key() == "ee321b7a5d9c"
    assert tiny_spec_for("search").key() != TinySpec(tasks=("search",)).key() != TinySpec().key()


class _Never(SearchEnv):
    """Every turn gets an observation (the sum model never writes a tag): env tokens guaranteed."""

    def step(self, text):
        from workbench.envs import Step

        return Step(feedback=" <information>no results</information>", done=False, info={})


@pytest.mark.parametrize("masked", [True, False])
def test_the_masking_switch_decides_whether_environment_tokens_get_gradient(
        tiny_policy, monkeypatch, masked):
    import torch

    import workbench.trainer as tr
    from workbench.grpo import grpo_loss
    from workbench.rollouts import sample_episodes
    from workbench.settings import GRPOSettings, TrainSettings

    rows = [dict(r) for r in get_task("sum").test.select(range(3))]
    eps = sample_episodes(tiny_policy.model, tiny_policy.tokenizer, rows, env=_Never,
                          group_size=3, max_new_tokens=12, max_turns=3, max_episode_tokens=60,
                          generator=torch.Generator().manual_seed(0))
    env_tok = (eps.completion_mask == 1) & (eps.action_mask == 0)
    assert env_tok.any()
    g = GRPOSettings(group_size=3, prompts_per_step=3, generation_batch_size=9,
                     micro_batch_size=9, max_grad_norm=1e9, mask_environment_tokens=masked)
    trainer = tr.GRPOTrainer(TrainSettings(grpo=g), None, policy=tiny_policy, verbose=False)
    state = {k: v.clone() for k, v in tiny_policy.model.state_dict().items()}
    seen = []

    def spy(logps, *a, **k):
        logps.retain_grad()
        seen.append(logps)
        return grpo_loss(logps, *a, **k)

    monkeypatch.setattr(tr, "grpo_loss", spy)
    trainer.optimizer.step = lambda: None
    trainer._update(eps, torch.randn(len(eps), generator=torch.Generator().manual_seed(1)))
    tiny_policy.model.load_state_dict(state)
    got = torch.zeros(eps.completion_ids.shape)
    for piece, logps in zip(tr.length_pieces(eps.lengths), seen):
        got[piece, :logps.shape[1]] = logps.grad
    assert got[eps.action_mask == 1].ne(0).any()
    assert got[env_tok].eq(0).all() == masked


# ---------------------------------------------------------------------------------------------
# on the tiny search model (built once, ~1 min on 2 cores, then cached)
# ---------------------------------------------------------------------------------------------

def test_corpus_episodes_hold_the_environment_s_own_observations():
    """The tiny model's pretraining text shows each search result exactly as SearchEnv gives it,
    and never a held-out entity."""
    import dataclasses

    from workbench.tiny import corpus_examples, tiny_spec_for

    corpus = corpus_examples(dataclasses.replace(tiny_spec_for("search"), corpus_size=400))
    searched = [c for _, c in corpus if "<search>" in c]
    assert 0.2 * len(corpus) < len(searched) < 0.8 * len(corpus)
    env = SearchEnv()
    for c in searched[:50]:
        call = c[: c.index("</search>") + len("</search>")]
        assert c.startswith(call + env.step(call).feedback)
    asked = {p[0]["content"] for p, _ in corpus}
    held = set(get_task("search", n_train=1).test["question"])
    assert not asked & held


def test_cli_trains_the_search_task(tmp_path):
    """`train --task search`: multi-turn episodes with their turns in the traces."""
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "run"
    res = subprocess.run(
        [sys.executable, "-m", "workbench", "train", "--task", "search", "--out", str(out),
         "--steps", "2", "--group-size", "2", "--prompts-per-step", "2", "--eval-examples", "4",
         "--max-new-tokens", "16", "--threads", "1"],
        cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "search" and 0 <= summary["accuracy_before"] <= 1
    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    assert len(traces) == 2 * 2 * 2
    for t in traces:
        models = [x for x in t["turns"] if x["role"] == "model"]
        assert 1 <= len(models) <= 4 and "action" in models[0]["info"]
        assert set(t["components"]) == {"answer", "f1", "format", "retrieval"}


def test_command_line_switches_masking_off():
    from workbench.__main__ import _parser, settings_from_args

    args = _parser().parse_args(["train", "--task", "search", "--out", "x",
                                 "--unmask-environment-tokens"])
    s = settings_from_args(args)
    assert s.grpo.mask_environment_tokens is False and s.grpo.max_episode_tokens == 160
    default = settings_from_args(_parser().parse_args(["train", "--out", "x"]))
    assert default.grpo.mask_environment_tokens is True



# ---------------------------------------------------------------------------------------------
# a chat model's own tool-call format (Qwen2.5 / Hermes style), the same tools and rewards
# ---------------------------------------------------------------------------------------------

# Qwen2.5's template, reduced to what matters here: tools announced in the system turn, tool
# results rendered as a user turn wrapped in <tool_response>.
TOOL_TEMPLATE = (
    "{% if tools %}<|im_start|>system\n"
    "{% if messages[0].role == 'system' %}{{ messages[0].content }}\n\n{% endif %}"
    "# Tools\n\n<tools>\n{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}</tools>\n\n"
    "For each function call, return a json object within <tool_call></tool_call> XML tags."
    "<|im_end|>\n"
    "{% elif messages[0].role == 'system' %}<|im_start|>system\n{{ messages[0].content }}"
    "<|im_end|>\n{% endif %}"
    "{% for m in messages %}{% if m.role == 'tool' %}<|im_start|>user\n<tool_response>\n"
    "{{ m.content }}\n</tool_response><|im_end|>\n"
    "{% elif m.role != 'system' %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _call(name, **arguments):
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


@pytest.mark.parametrize("text, kind, content", [
    (_call("search", query="Nora Vale"), "search", "Nora Vale"),
    (_call("calc", expression="3*(4+5)"), "calc", "3*(4+5)"),
    ('<tool_call>{"name": "search", "arguments": "{\\"query\\": \\"x y\\"}"}</tool_call>',
     "search", "x y"),                                     # arguments written as a JSON string
    ("<tool_call>{not json}</tool_call>", "invalid", ""),
    (_call("shell", cmd="rm -rf /"), "invalid", ""),
    (_call("search", q="wrong argument name"), "invalid", ""),
    (_call("search", query=["a list"]), "invalid", ""),
    ('<tool_call>["search"]</tool_call>', "invalid", ""),
    ("<tool_call>" + "[" * 100_000 + "</tool_call>", "invalid", ""),   # deep JSON: refused by
    ('<tool_call>{"name": "search"' + " " * 1_000_000 + "}</tool_call>", "invalid", ""),  # size
    ("<tool_call>" + _call("search", query="doubled opener"), "search", "doubled opener"),
    (_call("search", query="<answer>1</answer>"), "answer", "1"),     # the first closed tag
    ('<tool_call>{"name": "search", "arguments": {"query": "x"}}', "invalid", ""),  # unclosed
])
def test_chat_tool_calls_parse_to_the_same_actions_and_bad_ones_are_refused(text, kind, content):
    t0 = time.perf_counter()
    action = parse_action(text)
    assert time.perf_counter() - t0 < 1.0
    assert action.kind == kind
    if kind == "invalid":
        assert action.error and "\n" not in action.error and len(action.error) < 120
    else:
        assert action.content == content


def test_chat_tools_episode_announces_the_tools_and_answers_as_a_tool_message(tiny_path):
    from transformers import AutoTokenizer

    from workbench.rollouts import _Replies, render_prompt

    tok = AutoTokenizer.from_pretrained(tiny_path)
    tok.chat_template = TOOL_TEMPLATE
    env = SearchEnv(chat_tools=True)
    prompt = env.reset({"prompt": [{"role": "user", "content": "When was Nora Vale born?"}]})
    text = render_prompt(tok, prompt, tools=env.tool_schemas)
    assert '"name": "search"' in text and '"name": "calc"' in text and "<answer>" in text
    assert text.endswith("<|im_start|>assistant\n")

    person = next(e for e in WORLD.people)
    step = env.step(f"I will look it up. {_call('search', query=person.name + ' born')}")
    assert step.info["action"] == "search" and not step.done
    assert "<information>" not in step.feedback and "<" not in step.feedback
    reply = tok.decode(_Replies(tok, [tok.eos_token_id]).ids(step.feedback, env, chat=True,
                                                            after_eos=False))
    assert reply.startswith("<|im_end|>\n<|im_start|>user\n<tool_response>\n")
    assert reply.endswith("</tool_response><|im_end|>\n<|im_start|>assistant\n")
    assert step.feedback in reply

    bad = env.step(_call("shell", cmd="ls"))
    assert bad.feedback.startswith("error: unknown tool") and not bad.done
    end = env.step(f"<answer>{person.born}</answer>")
    assert end.done and end.info["action"] == "answer"
    # the same rewards read chat-format episodes
    turns = [{"role": "model", "text": _call("search", query=person.name + " born"),
              "info": {"action": "search"}},
             {"role": "env", "text": step.feedback, "info": {}},
             {"role": "model", "text": f"<answer>{person.born}</answer>",
              "info": {"action": "answer"}}]
    gold_year = [str(person.born)]
    assert em_reward(["q"], ["x"], gold_year, turns=[turns]) == [1.0]
    assert search_format_reward(["q"], ["x"], turns=[turns]) == [1.0]
    assert search_calls(turns) == 1


def test_chat_tools_knob_reaches_the_environment():
    env = get_task("search", chat_tools=True, n_train=8, n_test=8).env()
    assert env.chat_tools and env.feedback_role == "tool"
    assert get_task("search", n_train=8, n_test=8).env().feedback_role is None
    with pytest.raises(ValueError, match="chat_tools"):
        get_task("search", chat_tools="yes")


def test_sample_episodes_renders_the_announced_tools_into_the_prompt(tiny_path):
    from functools import partial

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workbench.rollouts import sample_episodes

    tok = AutoTokenizer.from_pretrained(tiny_path)
    tok.chat_template = TOOL_TEMPLATE
    model = AutoModelForCausalLM.from_pretrained(tiny_path)
    rows = [{"prompt": [{"role": "user", "content": "When was Nora Vale born?"}]}]
    out = sample_episodes(model, tok, rows, env=partial(SearchEnv, chat_tools=True),
                          group_size=2, max_new_tokens=6)
    assert "<tools>" in out.prompts[0] and '"name": "search"' in out.prompts[0]
    plain = sample_episodes(model, tok, rows, env=SearchEnv, group_size=1, max_new_tokens=6)
    assert "<tools>" not in plain.prompts[0]
