"""Episodes: the engine's unit. Single-turn is the one-turn episode, number for number; in longer
episodes environment tokens are context only, the ids trained on are the ids sampled, and runs
resume after SIGKILL exactly."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from workbench.envs import Environment, SingleTurnEnv, Step
from workbench.envs.toy import DigitEnv
from workbench.rollouts import Completions, sample_episodes, sample_group
from workbench.settings import SettingsError, TrainSettings, validate_settings
from workbench.tasks import get_task
from workbench.trainer import GRPOTrainer

ROOT = Path(__file__).resolve().parents[1]
REPLY = "\n<|im_start|>user\nagain<|im_end|>\n<|im_start|>assistant\n"   # ChatML, after EOS


class Again(Environment):
    """Says "again" until the turn's text has an even length (a deterministic coin)."""

    max_turns = 3

    def step(self, text):
        done = len(text) % 2 == 0
        return Step(feedback=None if done else "again", done=done, info={"even": done})


class Never(Environment):
    """Never satisfied: every episode runs to its turn or token limit."""

    max_turns = 3

    def step(self, text):
        return Step(feedback="again", done=False, info={"n": len(text)})


def _rows(n=4):
    return [dict(r) for r in get_task("sum").test.select(range(n))]


def _episodes(policy, env, *, n=4, group_size=4, seed=0, **kw):
    kw.setdefault("max_new_tokens", 24)
    return sample_episodes(policy.model, policy.tokenizer, _rows(n), env=env,
                           group_size=group_size, generator=torch.Generator().manual_seed(seed),
                           **kw)


# ---------------------------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(group_size=4, max_new_tokens=48),
                                dict(group_size=4, max_new_tokens=16, batch_size=6),
                                dict(group_size=1, max_new_tokens=40, temperature=0.0)])
def test_one_turn_episodes_are_the_single_turn_sampler_exactly(tiny_policy, kw):
    from _single_turn_reference import reference_sample_group

    model, tok = tiny_policy.model, tiny_policy.tokenizer
    prompts = list(get_task("sum").train["prompt"][:5])
    ref = reference_sample_group(model, tok, prompts, generator=torch.Generator().manual_seed(3),
                                 **kw)
    got = sample_group(model, tok, prompts, generator=torch.Generator().manual_seed(3), **kw)
    assert torch.equal(got.action_mask, got.completion_mask)
    start = 0
    for piece in ref:
        rows = slice(start, start + piece["completion_ids"].shape[0])
        T = piece["completion_ids"].shape[1]
        for key in ("completion_ids", "completion_mask", "sample_logps"):
            assert torch.equal(getattr(got, key)[rows, :T], piece[key]), key
            assert not getattr(got, "completion_mask")[rows, T:].any()
        assert torch.equal(got.finished[rows], piece["finished"])
        P = piece["prompt_ids"].shape[1]
        assert torch.equal(got.prompt_ids[rows, -P:], piece["prompt_ids"])
        start = rows.stop
    assert all(len(t) == 1 and t[0]["role"] == "model" for t in got.turns)
    assert [f["ended"] for f in got.final_info] == [
        "done" if f else "length" for f in got.finished.tolist()]


def test_episodes_take_turns_and_replies_are_appended_as_chat_ids(tiny_policy):
    tok = tiny_policy.tokenizer
    eps = _episodes(tiny_policy, Again, n=4, group_size=4)
    reply = tok(REPLY, add_special_tokens=False)["input_ids"]
    taken = [f["turns"] for f in eps.final_info]
    assert len(set(taken)) > 1, "the fixture must mix one-turn and longer episodes"
    for i, turns in enumerate(eps.turns):
        roles = [t["role"] for t in turns]
        assert roles == ["model", "env"] * (len(roles) // 2) + ["model"]
        assert len(roles) // 2 + 1 == eps.final_info[i]["turns"] <= 3
        ended = eps.final_info[i]["ended"]
        even = len(turns[-1]["text"]) % 2 == 0
        assert turns[-1]["info"] == {"even": even}
        if ended == "done":
            assert even
        elif ended == "max_turns":
            assert not even and len(roles) == 5
        n = int(eps.completion_mask[i].sum())
        ids, act = eps.completion_ids[i, :n].tolist(), eps.action_mask[i, :n].tolist()
        # environment spans are exactly the rendered reply, with action 0 and no log-prob
        spans, j = [], 0
        while j < n:
            k = j
            while k < n and act[k] == act[j]:
                k += 1
            spans.append((act[j], ids[j:k]))
            j = k
        env_spans = [s for a, s in spans if a == 0]
        assert env_spans == [reply] * (len(turns) // 2)
        assert eps.sample_logps[i, :n][torch.tensor(act) == 0].eq(0).all()
        model_text = [tok.decode(s, skip_special_tokens=True) for a, s in spans if a == 1]
        assert model_text == [t["text"] for t in turns if t["role"] == "model"]
    assert eps.texts[0] == "\n".join(t["text"] for t in eps.turns[0] if t["role"] == "model")


def test_kept_cache_gives_the_log_probs_of_a_full_forward(tiny_policy, monkeypatch):
    """Turns resumed through the kept keys/values (replies left-padded, holes masked) sample
    with the log-probs one plain forward of prompt + episode gives; greedy episodes are the
    same with the cache kept or every turn prefilled again."""
    import workbench.rollouts as ro
    from workbench.grpo import token_logps

    model = tiny_policy.model
    eps = _episodes(tiny_policy, Never, n=3, group_size=3, max_new_tokens=40)
    assert (eps.completion_mask.sum(1) > eps.action_mask.sum(1)).sum() >= 3   # multi-turn
    ids = torch.cat([eps.prompt_ids, eps.completion_ids], dim=1)
    mask = torch.cat([eps.prompt_mask, eps.completion_mask], dim=1)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask,
                       position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
    P = eps.prompt_ids.shape[1]
    full = token_logps(logits[:, P - 1:-1].float(), eps.completion_ids)
    act = eps.action_mask.bool()
    assert float((full[act] - eps.sample_logps[act]).abs().max()) < 1e-4
    greedy = [_episodes(tiny_policy, Never, n=3, group_size=1, temperature=0.0,
                        max_new_tokens=40)]
    monkeypatch.setattr(ro, "_plain_cache", lambda cache: False)            # re-prefill path
    greedy.append(_episodes(tiny_policy, Never, n=3, group_size=1, temperature=0.0,
                            max_new_tokens=40))
    assert greedy[0].final_info[0]["turns"] > 1
    assert torch.equal(greedy[0].completion_ids, greedy[1].completion_ids)
    assert float((greedy[0].sample_logps - greedy[1].sample_logps).abs().max()) < 1e-4


class _Counting(torch.nn.Module):
    """The tiny model, counting its one-token (decode) forwards."""

    def __init__(self, model):
        super().__init__()
        self.model, self.decodes = model, 0
        self.generation_config = model.generation_config

    def forward(self, **kw):
        self.decodes += kw["input_ids"].shape[1] == 1
        return self.model(**kw)


def test_rows_rejoin_without_waiting_for_the_slowest_and_match_episodes_run_alone(tiny_policy):
    """Continuous batching: turns end at different times and rows go on with their next turn
    while others still decode; each greedy episode is token for token the episode run alone.

    Whether that takes fewer decode forwards than turn by turn depends on the turn lengths, so
    it is measured (``benchmarks/episodes.py``: 39 vs 45), not asserted: these six rows took
    fewer where this was written (38 vs 40) and more with the tiny model built on an Intel Xeon,
    whose turns end elsewhere (21 vs 17)."""
    tok = tiny_policy.tokenizer
    rows = _rows(6)
    counting = _Counting(tiny_policy.model)
    kw = dict(env=Never, group_size=1, max_new_tokens=20, temperature=0.0)
    eps = sample_episodes(counting, tok, rows, **kw)
    turn_lengths = []                                       # per row: model tokens of each turn
    for i, row in enumerate(rows):
        alone = sample_episodes(tiny_policy.model, tok, [row], **kw)
        n = int(alone.completion_mask.sum())
        assert int(eps.completion_mask[i].sum()) == n
        for key in ("completion_ids", "action_mask"):
            assert torch.equal(getattr(eps, key)[i, :n], getattr(alone, key)[0, :n]), (i, key)
        assert float((eps.sample_logps[i, :n] - alone.sample_logps[0, :n]).abs().max()) < 1e-4
        assert eps.turns[i] == alone.turns[0] and eps.final_info[i] == alone.final_info[0]
        act = eps.action_mask[i, :n].tolist()
        spans = [len(s) for s in "".join(map(str, act)).split("0") if s]
        turn_lengths.append(spans)
    assert len({tuple(t) for t in turn_lengths}) > 1 and max(map(len, turn_lengths)) > 1
    # at least the longest episode's own forwards (a turn's first token comes from a prefill)
    assert counting.decodes >= max(sum(t) - len(t) for t in turn_lengths)


class _Scripted(torch.nn.Module):
    """The tiny model with its next token dictated: one row, one forward per sampled token."""

    def __init__(self, model, script):
        super().__init__()
        self.model, self.script, self.calls = model, list(script), 0
        self.generation_config = model.generation_config

    def forward(self, **kw):
        out = self.model(**kw)
        forced = torch.full_like(out.logits[:, -1:, :], -1e9)
        forced[..., self.script[self.calls]] = 0.0
        out.logits = torch.cat([out.logits[:, :-1], forced], dim=1)
        self.calls += 1
        return out


def test_token_in_token_out_keeps_a_split_that_bpe_would_merge(tiny_policy):
    """The model writes a word in pieces the tokenizer would merge; the episode keeps those very
    ids (re-tokenising the text would give others), and the environment's reply follows them."""
    tok = tiny_policy.tokenizer
    vocab = tok.get_vocab()
    word = next(w for w, i in sorted(vocab.items(), key=lambda x: x[1])
                if len(w) >= 3 and w.isalpha() and all(c in vocab for c in w))
    pieces = [vocab[c] for c in word]                                 # e.g. "A", "d", "d"
    assert tok(tok.decode(pieces), add_special_tokens=False)["input_ids"] != pieces
    eos = tok.eos_token_id
    digit = tok("7", add_special_tokens=False)["input_ids"]
    scripted = _Scripted(tiny_policy.model, pieces + [eos] + digit + [eos])
    eps = sample_episodes(scripted, tok, _rows(1), env=lambda: DigitEnv(max_turns=3),
                          group_size=1, max_new_tokens=8)
    reply = tok(REPLY, add_special_tokens=False)["input_ids"]
    want = pieces + [eos] + reply + digit + [eos]
    assert eps.completion_ids[0].tolist() == want
    assert eps.action_mask[0].tolist() == [1] * (len(pieces) + 1) + [0] * len(reply) + [1, 1]
    assert [t["text"] for t in eps.turns[0]] == [word, "again", "7"]
    assert eps.final_info[0]["ended"] == "done" and eps.final_info[0]["verdict"] == "digit"
    assert eps.sample_logps[0][eps.action_mask[0] == 1].abs().max() < 1e-6


def test_stop_strings_end_a_turn_and_inline_feedback_follows(tiny_policy):
    """A turn ends at the environment's stop string ("+" here); with ``feedback_role=None`` the
    reply is appended right after the model's text, its special-token look-alikes split."""
    tok = tiny_policy.tokenizer

    class Plus(DigitEnv):
        def step(self, text):
            return Step(feedback=self.feedback, done=False, info={})

    feedback = " ok<|im_end|> "
    eps = _episodes(tiny_policy, lambda: Plus(max_turns=2, feedback=feedback,
                                              feedback_role=None, stop=("+",)), n=4)
    inline = tok(feedback, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    assert tok.eos_token_id not in inline
    stopped = 0
    for i, turns in enumerate(eps.turns):
        first = turns[0]["text"]
        if "+" not in first:
            continue
        stopped += 1
        assert first.endswith("+") and first.count("+") == 1, first
        assert [t["role"] for t in turns] == ["model", "env", "model"]
        env_ids = eps.completion_ids[i][(eps.action_mask[i] == 0)
                                        & (eps.completion_mask[i] == 1)].tolist()
        assert env_ids == inline
    assert stopped >= 2, "the sum prompts should make the model write '+' sometimes"


def test_token_budget_counts_environment_tokens(tiny_policy):
    eps = _episodes(tiny_policy, Never, n=3, group_size=3, max_new_tokens=30,
                    max_episode_tokens=40)
    assert int(eps.completion_mask.sum(1).max()) <= 40
    assert eps.token_budget == 40
    endings = {f["ended"] for f in eps.final_info}
    assert endings <= {"budget", "length", "max_turns"} and "budget" in endings


def test_concurrent_environments_step_in_threads_with_the_same_result(tiny_policy):
    import threading

    seen = set()

    class Slow(Again):
        concurrent = True

        def step(self, text):
            seen.add(threading.get_ident())
            time.sleep(0.01)                              # a sandbox's wait, GIL released
            return super().step(text)

    together = _episodes(tiny_policy, Slow, n=2, group_size=4)
    apart = _episodes(tiny_policy, Again, n=2, group_size=4)
    assert len(seen) > 1
    assert together.turns == apart.turns
    assert torch.equal(together.completion_ids, apart.completion_ids)


def test_sibling_prompts_that_differ_are_not_shared():
    from workbench.rollouts import _prompt_index

    assert _prompt_index(["a", "a", "b", "c"], 2).tolist() == [0, 0, 2, 3]


# ---------------------------------------------------------------------------------------------
# the loss: model tokens only; one-turn numbers unchanged
# ---------------------------------------------------------------------------------------------

def _settings(loss_type="dapo", **grpo):
    s = TrainSettings()
    return replace(s, grpo=replace(s.grpo, loss_type=loss_type, group_size=3, prompts_per_step=3,
                                   micro_batch_size=9, generation_batch_size=9, **grpo))


def test_environment_tokens_get_zero_gradient(tiny_policy, monkeypatch):
    """Through the whole update, d loss / d logp is 0 at every environment token and the update
    equals one plain forward of every row with the loss masked by hand, for each loss type."""
    import workbench.trainer as tr
    from workbench.grpo import grpo_loss, token_logps

    eps = _episodes(tiny_policy, Never, n=3, group_size=3, max_new_tokens=40,
                    max_episode_tokens=70)
    env_tok = (eps.completion_mask == 1) & (eps.action_mask == 0)
    assert env_tok.any()
    adv = torch.randn(len(eps), generator=torch.Generator().manual_seed(1))
    model = tiny_policy.model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for loss_type in ("grpo", "bnpo", "dr_grpo", "dapo"):
        trainer = GRPOTrainer(_settings(loss_type, max_grad_norm=1e9), None, policy=tiny_policy,
                              verbose=False)          # no clipping: the raw gradient
        seen = []

        def spy(logps, *a, **k):
            logps.retain_grad()
            seen.append((logps, k.get("max_completion_length")))
            return grpo_loss(logps, *a, **k)

        monkeypatch.setattr(tr, "grpo_loss", spy)
        grads = []
        trainer.optimizer.step = lambda: grads.append(torch.cat(
            [p.grad.flatten() for p in model.parameters() if p.grad is not None]))
        trainer._update(eps, adv.clone())
        monkeypatch.undo()
        got = torch.zeros(eps.completion_ids.shape)
        for piece, (logps, _) in zip(tr.length_pieces(eps.lengths), seen):
            got[piece, :logps.shape[1]] = logps.grad
        assert got[env_tok].eq(0).all() and got[eps.action_mask == 1].ne(0).any(), loss_type
        # reference: every row whole, one forward, mask = action mask
        model.zero_grad(set_to_none=True)
        ids = torch.cat([eps.prompt_ids, eps.completion_ids], dim=1)
        mask = torch.cat([eps.prompt_mask, eps.completion_mask], dim=1)
        logits = model(input_ids=ids, attention_mask=mask,
                       position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
        P = eps.prompt_ids.shape[1]
        logps = token_logps(logits[:, P - 1:-1].float(), eps.completion_ids)
        grpo_loss(logps, logps.detach(), adv, eps.action_mask, loss_type=loss_type,
                  max_completion_length=eps.token_budget).loss.backward()
        ref = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        model.zero_grad(set_to_none=True)
        model.load_state_dict(state)
        err = float((grads[0] - ref).abs().max() / ref.abs().max())
        assert err < 1e-5, (loss_type, err)


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_one_turn_episode_update_is_the_single_turn_update_exactly(tiny_policy, loss_type):
    """Episode bookkeeping (action mask, prompt index, token budget) changes no bit of a
    one-turn update: two passes with KL give the same weights as the plain completions."""
    eps = _episodes(tiny_policy, SingleTurnEnv, n=3, group_size=3, max_new_tokens=20)
    plain = Completions(prompt_ids=eps.prompt_ids, prompt_mask=eps.prompt_mask,
                        completion_ids=eps.completion_ids, completion_mask=eps.completion_mask,
                        sample_logps=eps.sample_logps, texts=eps.texts, prompts=eps.prompts,
                        group_size=3, finished=eps.finished)
    plain.token_budget = 20                                   # today's max_new_tokens
    adv = torch.randn(len(eps), generator=torch.Generator().manual_seed(4))
    model = tiny_policy.model
    state = {k: v.clone() for k, v in model.state_dict().items()}
    after = []
    for comps in (eps, plain):
        torch.manual_seed(0)
        trainer = GRPOTrainer(_settings(loss_type, num_iterations=2, beta=0.05,
                                        max_new_tokens=20), None, policy=tiny_policy,
                              verbose=False)
        stats = trainer._update(comps, adv.clone())
        after.append(({k: v.clone() for k, v in model.state_dict().items()}, stats))
        model.load_state_dict(state)
    assert after[0][1] == after[1][1]
    assert all(torch.equal(after[0][0][k], after[1][0][k]) for k in state)


# ---------------------------------------------------------------------------------------------
# the trainer: metrics, traces, settings, resume
# ---------------------------------------------------------------------------------------------

def _digit_task(max_turns=3):
    from workbench.envs.toy import digit_reward

    task = get_task("sum", n_train=200, n_test=20)
    return dataclasses.replace(task, env=lambda: DigitEnv(max_turns=max_turns),
                               reward_funcs=task.reward_funcs + (digit_reward,),
                               reward_weights=task.reward_weights + (0.5,))


def test_a_multi_turn_step_records_episodes(tiny_policy, tmp_path):
    s = _settings(max_new_tokens=12)
    s = replace(s, eval_examples=4)
    trainer = GRPOTrainer(s, tmp_path / "run", policy=tiny_policy, task=_digit_task(),
                          verbose=False)
    state = {k: v.clone() for k, v in tiny_policy.model.state_dict().items()}
    try:
        m = trainer.step()
        ev = trainer.evaluate(n=4)
    finally:
        tiny_policy.model.load_state_dict(state)
    for key in ("turns_mean", "turns_max", "model_tokens", "env_tokens", "env_seconds",
                "generation_seconds", "success_by_turn/1", "success_by_turn/3"):
        assert key in m, key
    assert 1 <= m["turns_mean"] <= 3
    assert m["success_by_turn/1"] <= m["success_by_turn/2"] <= m["success_by_turn/3"]
    assert m["completion_length"] == pytest.approx(m["model_tokens"])
    traces = trainer.run.traces(step=1)
    assert len(traces) == 9
    for t in traces:
        assert t["turns"][0]["role"] == "model" and t["ended"] in ("done", "max_turns", "length",
                                                                      "budget")
        assert t["completion"] == "\n".join(x["text"] for x in t["turns"] if x["role"] == "model")
        assert t["length"] + t["env_tokens"] > 0
    assert ev["n"] == 4 and "turns" in ev["examples"][0]


def test_settings_and_command_line_take_max_turns():
    from workbench.__main__ import _parser, settings_from_args

    s = TrainSettings()
    for bad in (dict(max_turns=0), dict(max_episode_tokens=0)):
        with pytest.raises(SettingsError):
            validate_settings(replace(s, grpo=replace(s.grpo, **bad)))
    args = _parser().parse_args(["train", "--out", "x", "--max-turns", "4",
                                 "--max-episode-tokens", "200"])
    g = settings_from_args(args).grpo
    assert (g.max_turns, g.max_episode_tokens) == (4, 200)
    assert TrainSettings.from_dict(json.loads(settings_from_args(args).to_json())).grpo == g


_RESUMABLE = """
import dataclasses, sys
sys.path.insert(0, {tests!r})
from test_episodes import _digit_task
from workbench.settings import TrainSettings
from workbench.trainer import GRPOTrainer
s = TrainSettings()
s = dataclasses.replace(s, steps=10, checkpoint_every=3, eval_examples=4, threads=1,
                        grpo=dataclasses.replace(s.grpo, group_size=3, prompts_per_step=3,
                                                 micro_batch_size=9, generation_batch_size=9,
                                                 max_new_tokens=12))
resume = sys.argv[2] == "resume"
t = GRPOTrainer(s, sys.argv[1], task=_digit_task(), resume=resume,
                verbose=False)
t.train(progress=False)
"""


@pytest.mark.slow
def test_multi_turn_run_resumes_after_sigkill_exactly(tiny_path, tmp_path, start_then_sigkill):
    script = tmp_path / "run.py"
    script.write_text(_RESUMABLE.format(tests=str(ROOT / "tests")))
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    ref = tmp_path / "ref"
    subprocess.run([sys.executable, str(script), str(ref), "new"], check=True, env=env,
                   cwd=ROOT, capture_output=True)
    victim = tmp_path / "victim"                         # killed between checkpoints 3 and 6
    killed_at = start_then_sigkill([sys.executable, str(script), str(victim), "new"], victim,
                                   after_lines=4, log=tmp_path / "victim.log", env=env)
    assert 4 <= killed_at < 10, (tmp_path / "victim.log").read_text()[-3000:]
    res = subprocess.run([sys.executable, str(script), str(victim), "resume"], env=env, cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    from workbench.runs import Run

    got, want = Run.open(victim), Run.open(ref)
    assert [m["step"] for m in got.metrics()] == list(range(1, 11))
    assert [m["reward_mean"] for m in got.metrics()] == [m["reward_mean"] for m in want.metrics()]
    assert [t["turns"] for t in got.traces()] == [t["turns"] for t in want.traces()]
