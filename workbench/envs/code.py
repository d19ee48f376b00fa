"""RL from code-execution feedback (RLEF, arXiv 2410.02089): write code, run it, read, retry.

An episode, as in the paper (§2.1):

1. the model sees a problem and its *public* tests and writes code;
2. the environment runs the code on the public tests (``verifiers.check_code``, in the sandbox)
   and answers with ``verifiers.execution_feedback``: which test failed, expected vs got, the
   traceback, or a timeout -- capped in size and stripped of control characters;
3. the episode ends when the public tests pass, or after ``max_turns`` model turns (3);
4. the reward is computed at the end from the last turn's code on *private* tests the model never
   sees, so copying expected outputs out of the feedback does not pay (``private_tests_reward``),
   with a small penalty for every turn that held no code (``no_code_reward``).

Every model turn runs in a fresh sandboxed process with time, memory and output limits, so a turn
that hangs or floods output ends as a ``timeout`` / ``runtime_error`` verdict of that episode and
nothing else.

``load_mbpp_task`` reads MBPP-style jsonl (``text``, ``test_list``, ...) for real models.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import Environment, Step

FEEDBACK_CHARS = 600          # what one feedback turn may hold (TRL PR #2810 suggests ~500)
NO_CODE_PENALTY = 0.1         # per model turn without code (RLEF: -0.2 on a +1/-1 scale)
EPISODE_TOKENS = 200          # tiny code task: 3 attempts of ~25 tokens + 2 replies of ~40 fit
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e"
                      r"\u2066-\u2069\ufeff]")


def clean_feedback(text: str, *, max_chars: int = FEEDBACK_CHARS) -> str:
    """``text`` without control characters (newlines and tabs stay), at most ``max_chars`` long.

    Model-made output reaches the next prompt through here: an escape sequence or a bidi override
    in a traceback must not reach a terminal or the tokenizer as-is, and a flood must not eat the
    episode's token budget. The head is kept (the failing test and expected/got come first).
    """
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    if len(text) <= max_chars:
        return text
    cut = " ... [feedback cut]"
    return text[: max_chars - len(cut)] + cut


class CodeFeedbackEnv(Environment):
    """One episode of write -> run public tests -> feedback -> rewrite (a fresh one per episode).

    ``row`` needs ``prompt`` (what the model sees: the problem and its public tests) and
    ``public_tests`` (assert lines, run after every turn). ``random_feedback=True``: the feedback
    is *written* from a run on the row's ``decoy_tests`` (another problem's public tests; see
    ``with_decoys``) -- the RLEF random-feedback ablation; whether the episode is done still
    follows the real public tests.
    """

    feedback_role = "user"

    def __init__(self, *, max_turns: int = 3, timeout_s: float = 2.0, memory_mb: int = 256,
                 feedback_chars: int = FEEDBACK_CHARS, random_feedback: bool = False):
        if max_turns < 1:
            raise ValueError(f"max_turns={max_turns}: an episode needs at least 1 turn")
        self.max_turns, self.timeout_s, self.memory_mb = max_turns, timeout_s, memory_mb
        self.feedback_chars, self.random_feedback = feedback_chars, random_feedback
        self.turn, self.public_tests, self.decoy_tests, self.entry_point = 0, None, None, None

    def reset(self, row: dict):
        if not row.get("public_tests"):
            raise ValueError("a code row needs 'public_tests' (assert lines the model is shown)")
        if self.random_feedback and not row.get("decoy_tests"):
            raise ValueError("random_feedback=True needs rows with 'decoy_tests' (see with_decoys)")
        self.turn, self.public_tests = 0, row["public_tests"]
        self.decoy_tests = row.get("decoy_tests") if self.random_feedback else None
        self.entry_point = row.get("entry_point") or None
        return row["prompt"]

    def step(self, text: str) -> Step:
        verdict = self._check(text, self.public_tests)
        self.turn += 1
        info = {"status": verdict.status, "passed": verdict.passed,
                "tests_passed": verdict.n_passed, "tests": verdict.n_total,
                "has_code": verdict.status != "no_code"}
        done = verdict.passed or self.turn >= self.max_turns
        if done:
            return Step(feedback=None, done=True, info=info)
        if self.decoy_tests is not None:
            verdict = self._check(text, self.decoy_tests)
        return Step(feedback=self.feedback(verdict), done=False, info=info)

    def feedback(self, verdict) -> str:
        """What the model reads after a failing turn: the checker's explanation, made safe."""
        from verifiers import execution_feedback

        return clean_feedback(execution_feedback(verdict), max_chars=self.feedback_chars)

    def _check(self, text: str, tests: str):
        from verifiers import check_code

        return check_code(text, tests=tests, entry_point=self.entry_point,
                          timeout_s=self.timeout_s, memory_mb=self.memory_mb)


# ---------------------------------------------------------------------------------------------
# Rewards (TRL contract), computed at the end of the episode
# ---------------------------------------------------------------------------------------------

def model_turns(completion: Any, turns: list[dict] | None) -> list[str]:
    """The model's turns of one episode; without ``turns`` the completion is one turn."""
    if turns:
        return [t["text"] for t in turns if t["role"] == "model"]
    from ..tasks import completion_text

    return [completion_text(completion)]


def private_tests_reward(prompts, completions, private_tests, turns=None, entry_point=None,
                         **kwargs) -> list[float | None]:
    """1.0 when the episode's *last* model turn passes the private tests, else 0.0.

    The private tests are never shown, so an answer copied out of the public tests' feedback
    fails them. None (left out of the mean) when the sandbox itself failed.
    """
    from verifiers import check_code_many

    n = len(completions)
    eps = entry_point if isinstance(entry_point, list) else [entry_point] * n
    jobs = [dict(completion=model_turns(c, turns[i] if turns else None)[-1], tests=t,
                 entry_point=eps[i] or None, timeout_s=2.0, memory_mb=256)
            for i, (c, t) in enumerate(zip(completions, private_tests))]
    verdicts = check_code_many(jobs)
    return [None if v.status == "infra_error" else float(v.passed) for v in verdicts]


def no_code_reward(prompts, completions, turns=None, **kwargs) -> list[float]:
    """-0.1 for every model turn of the episode with no code in it (RLEF's invalid-code penalty)."""
    from verifiers.code import extract_code

    return [-NO_CODE_PENALTY * sum(extract_code(t) is None
                                   for t in model_turns(c, turns[i] if turns else None))
            for i, c in enumerate(completions)]


# ---------------------------------------------------------------------------------------------
# The RLEF measurement: feedback vs independent samples at an equal budget of attempts
# ---------------------------------------------------------------------------------------------

MODES = ("feedback", "independent", "random_feedback")


@dataclass(frozen=True)
class FeedbackComparison:
    """Success (private tests) at an equal budget of attempts, three ways.

    ``by_attempt[mode][t-1]``: share of episodes solved with a budget of ``t`` attempts:
    ``feedback`` -- one episode, feedback after each failing turn; ``independent`` -- ``t``
    fresh samples of the first prompt, the first that passes the public tests submitted (RLEF's
    1@t without feedback); ``random_feedback`` -- an episode whose feedback describes another
    problem's tests. The last entry is the full budget (RLEF's 1@3 for ``attempts=3``).
    """

    attempts: int
    episodes: int                       # per mode: problems x samples
    by_attempt: dict                    # mode -> tuple of ``attempts`` success rates
    turns_mean: dict                    # mode -> mean attempts used

    def success(self, mode: str) -> float:
        return self.by_attempt[mode][-1]

    def gain(self) -> float:
        """What feedback adds over independent samples at the full budget."""
        return self.success("feedback") - self.success("independent")


def with_decoys(rows: list[dict]) -> list[dict]:
    """Rows with ``decoy_tests``: the public tests of the next problem whose tests differ
    (for the random-feedback ablation)."""
    out = []
    for i, r in enumerate(rows):
        other = next((rows[(i + k) % len(rows)] for k in range(1, len(rows))
                      if rows[(i + k) % len(rows)]["public_tests"] != r["public_tests"]), None)
        if other is None:
            raise ValueError("the random-feedback ablation needs two problems with different tests")
        out.append({**r, "decoy_tests": other["public_tests"]})
    return out


def compare_feedback(model, tokenizer, rows: list[dict], *, attempts: int = 3, samples: int = 4,
                     max_new_tokens: int = 48, max_episode_tokens: int | None = EPISODE_TOKENS,
                     temperature: float = 1.0, seed: int = 0, modes: tuple[str, ...] = MODES,
                     device=None) -> FeedbackComparison:
    """Run ``samples`` episodes per problem in each mode and judge them on private tests.

    rows: code rows (``prompt``, ``public_tests``, ``private_tests``), e.g. a held-out split.
    ``max_new_tokens`` bounds each attempt; ``max_episode_tokens`` a whole feedback episode
    (attempts and feedback together).
    Every mode draws from its own seeded generator, so a mode's numbers do not depend on which
    other modes run. Private checks are run once per distinct (code, tests) pair.
    """
    import torch

    from ..rollouts import sample_episodes

    rows = [dict(r) for r in rows]
    by_attempt, turns_mean = {}, {}
    episodes = len(rows) * samples
    for k, mode in enumerate(modes):
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: choose from {MODES}")
        gen = torch.Generator().manual_seed(seed * 1000 + k)
        if mode == "independent":
            comps = sample_episodes(model, tokenizer, rows, env=lambda: CodeFeedbackEnv(max_turns=1),
                                    group_size=samples * attempts, max_new_tokens=max_new_tokens,
                                    temperature=temperature, generator=gen, device=device)
            runs = [[_turn_of(comps, i * attempts + j) for j in range(attempts)]
                    for i in range(episodes)]             # sample j of a problem = attempt j
        else:
            env_rows = with_decoys(rows) if mode == "random_feedback" else rows
            comps = sample_episodes(
                model, tokenizer, env_rows,
                env=lambda: CodeFeedbackEnv(max_turns=attempts,
                                            random_feedback=mode == "random_feedback"),
                group_size=samples, max_new_tokens=max_new_tokens,
                max_episode_tokens=max_episode_tokens, temperature=temperature, generator=gen,
                device=device)
            runs = [[(t["text"], bool(t["info"].get("passed"))) for t in comps.turns[i]
                     if t["role"] == "model"] for i in range(episodes)]
        private = [rows[i // samples]["private_tests"] for i in range(episodes)]
        solved = _private_passes(runs, private)
        by_attempt[mode] = tuple(sum(_solved_within(run, ok, t) for run, ok in zip(runs, solved))
                                 / episodes for t in range(1, attempts + 1))
        turns_mean[mode] = sum(_attempts_used(run) for run in runs) / episodes
    return FeedbackComparison(attempts=attempts, episodes=episodes, by_attempt=by_attempt,
                              turns_mean=turns_mean)


def _turn_of(comps, row: int) -> tuple[str, bool]:
    """(text, passed public tests) of a one-turn episode."""
    turn = next(t for t in comps.turns[row] if t["role"] == "model") if comps.turns else None
    if turn is None:
        return comps.texts[row], bool(comps.final_info[row].get("passed"))
    return turn["text"], bool(turn["info"].get("passed"))


def _submitted(run: list[tuple[str, bool]], budget: int) -> int:
    """Index of the attempt submitted with ``budget`` attempts: the first that passes the
    public tests, else the last one made."""
    made = run[:budget]
    return next((j for j, (_, ok) in enumerate(made) if ok), len(made) - 1)


def _attempts_used(run) -> int:
    return _submitted(run, len(run)) + 1


def _solved_within(run, private_ok: list[bool], budget: int) -> bool:
    return private_ok[_submitted(run, budget)]


def _private_passes(runs: list[list[tuple[str, bool]]], private: list[str]) -> list[list[bool]]:
    """Private-test verdict of every attempt, each distinct (code, tests) pair checked once."""
    from verifiers import check_code_many
    from verifiers.code import extract_code

    keys = [[(extract_code(text), tests) for text, _ in run] for run, tests in zip(runs, private)]
    texts = {}                                       # one completion text per distinct key
    for run, ks in zip(runs, keys):
        for (text, _), k in zip(run, ks):
            if k[0] is not None:
                texts.setdefault(k, text)
    todo = list(texts)
    verdicts = check_code_many([dict(completion=texts[k], tests=k[1], timeout_s=2.0,
                                     memory_mb=256) for k in todo])
    passed = {k: v.passed for k, v in zip(todo, verdicts)}
    return [[passed.get(k, False) for k in ks] for ks in keys]


# ---------------------------------------------------------------------------------------------
# MBPP-style jsonl for real models
# ---------------------------------------------------------------------------------------------

MBPP_INSTRUCTION = ("You are an expert Python programmer. Write the function the task asks for. "
                    "Your code should be enclosed in triple backticks like so: ```python YOUR CODE "
                    "HERE ```. Use the backticks for your code only.")


def mbpp_rows(path: str | Path, *, n_public: int = 1, limit: int | None = None) -> list[dict]:
    """Rows of an MBPP-style jsonl: ``text`` (the task), ``test_list`` (assert lines), optional
    ``test_setup_code``, ``challenge_test_list``, ``code`` (a reference) and ``task_id``.

    The first ``n_public`` asserts are public (shown, run after each turn); the others and the
    challenge tests are private (the final reward). A row needs at least one private test.
    """
    from ..tasks import _read_jsonl

    rows = []
    for lineno, r in _read_jsonl(path)[:limit]:
        where = f"{path}:{lineno}"
        text, tests = r.get("text") or r.get("prompt"), r.get("test_list")
        if not text or not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
            raise ValueError(f"{where}: an MBPP row needs 'text' and 'test_list' (a list of assert "
                             f"strings), got {sorted(r)}")
        tests = tests + list(r.get("challenge_test_list") or [])
        if len(tests) <= n_public:
            raise ValueError(f"{where}: {len(tests)} tests leave none private with "
                             f"n_public={n_public}")
        setup = (r.get("test_setup_code") or "").strip()
        public, private = tests[:n_public], tests[n_public:]
        question = f"{text}\nYour code should pass these tests:\n" + "\n".join(public)
        rows.append({
            "prompt": [{"role": "system", "content": MBPP_INSTRUCTION},
                       {"role": "user", "content": question}],
            "question": question, "answer": r.get("code", ""),
            "public_tests": "\n".join(([setup] if setup else []) + public),
            "private_tests": "\n".join(([setup] if setup else []) + private),
            "task_id": str(r.get("task_id", lineno)),
        })
    return rows


def load_mbpp_task(path: str | Path, *, test_path: str | Path | None = None,
                   test_fraction: float = 0.1, n_public: int = 1, limit: int | None = None):
    """MBPP-style jsonl as a ``Task`` whose episodes run in ``CodeFeedbackEnv``."""
    from datasets import Dataset

    from ..tasks import TASK_SEED, Task

    rows = mbpp_rows(path, n_public=n_public, limit=limit)
    if test_path is not None:
        train_rows, test_rows = rows, mbpp_rows(test_path, n_public=n_public)
    else:
        order = list(range(len(rows)))
        random.Random(TASK_SEED).shuffle(order)
        n_test = max(1, round(len(rows) * test_fraction)) if len(rows) > 1 else 0
        test_rows = [rows[i] for i in order[:n_test]]
        train_rows = [rows[i] for i in order[n_test:]] or test_rows
    return Task(name="mbpp", train=Dataset.from_list(train_rows),
                test=Dataset.from_list(test_rows), reward_funcs=CODE_REWARDS,
                reward_weights=(1.0, 1.0), knobs={"path": str(path)},
                description=f"MBPP-style code problems from {path}", env=CodeFeedbackEnv)


def _answer_reward(prompts, completions, **kwargs):
    return private_tests_reward(prompts, completions, **kwargs)


_answer_reward.__name__ = "answer_reward"          # accuracy reads the "answer" component
_answer_reward.__doc__ = private_tests_reward.__doc__
CODE_REWARDS = (_answer_reward, no_code_reward)


def write_mbpp_sample(path: str | Path) -> Path:
    """A three-problem MBPP-style file (for tests and the notebook's real-model path)."""
    rows = [
        {"task_id": 1, "text": "Write a function to find the maximum of two numbers.",
         "code": "def max_of_two(a, b):\n    return a if a > b else b",
         "test_list": ["assert max_of_two(1, 2) == 2", "assert max_of_two(5, 3) == 5",
                       "assert max_of_two(-1, -4) == -1"]},
        {"task_id": 2, "text": "Write a function to reverse a string.",
         "code": "def reverse(s):\n    return s[::-1]",
         "test_list": ["assert reverse('abc') == 'cba'", "assert reverse('') == ''",
                       "assert reverse('ab') == 'ba'"]},
        {"task_id": 3, "text": "Write a function that counts the vowels in a string.",
         "code": "def vowels(s):\n    return sum(c in 'aeiou' for c in s.lower())",
         "test_list": ["assert vowels('hello') == 2", "assert vowels('xyz') == 0"],
         "challenge_test_list": ["assert vowels('AEIOU') == 5"]},
    ]
    path = Path(path)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
