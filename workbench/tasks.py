"""Verifiable tasks: synthetic ones for the tiny default, GSM8K / MATH loaders for real models.

``get_task(name, **knobs)`` returns a ``Task`` whose ``train`` and ``test`` are ``datasets.Dataset``
with at least the columns ``prompt`` (a chat: ``[{"role": "user", "content": ...}]``) and
``answer`` (the gold, a string the math verifier can check), and whose ``reward_funcs`` follow TRL's
contract ``f(prompts, completions, **columns) -> list[float]`` so ``trl.GRPOTrainer`` can use them
unchanged.

The synthetic tasks also know how to *write* solutions, in two styles that the tiny model's
pretraining corpus mixes (see ``workbench.tiny``):

- worked: one line per step, then ``<answer>…</answer>``;
- direct: only ``<answer>…</answer>`` holding an *estimate*, the way much text states a number
  without working it out: close to the truth, exact only by luck.

A model pretrained on that mix can work a sum out step by step, but -- like a base model -- it
usually answers directly, because most of its corpus does. Its held-out accuracy therefore depends
on which style it picks, and RL with a verifier teaches it to pick the one that works: the whole
tiny demo in one sentence.

Held-out problems are fixed by the task's own seed (not the run's), never appear in ``train`` nor in
the pretraining corpus, and are the same for every run.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

from .envs import Environment, SingleTurnEnv
TASK_SEED = 1234          # fixes the held-out split; independent of any run's seed
ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)
_FINAL_TAG = re.compile(r"<answer>[^<]*</answer>\s*$")
BOXED_INSTRUCTION = "Reason step by step, then put your final answer within \\boxed{}."


def completion_text(completion: Any) -> str:
    """Text of a completion as TRL passes it: a string, or a chat list of role/content dicts."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    if isinstance(completion, (list, tuple)):
        return "".join(completion_text(m) for m in completion if
                       not isinstance(m, dict) or m.get("role", "assistant") == "assistant")
    return str(completion)


# ---------------------------------------------------------------------------------------------
# Reward functions (TRL contract). Each returns one float per completion.
# ---------------------------------------------------------------------------------------------

def answer_reward(prompts, completions, answer, **kwargs) -> list[float]:
    """1.0 when the verifier says the completion's final answer equals the gold ``answer``."""
    from verifiers import verify_math

    return [float(verify_math(completion_text(c), str(a)).correct)
            for c, a in zip(completions, answer)]


def tag_format_reward(prompts, completions, **kwargs) -> list[float]:
    """1.0 when the completion ends with exactly one ``<answer>…</answer>``."""
    out = []
    for c in completions:
        text = completion_text(c)
        out.append(float(len(ANSWER_TAG.findall(text)) == 1 and bool(_FINAL_TAG.search(text))))
    return out


def boxed_format_reward(prompts, completions, **kwargs) -> list[float]:
    """1.0 when the completion contains exactly one ``\\boxed{…}`` (hedging scores 0)."""
    return [float(completion_text(c).count("\\boxed{") == 1) for c in completions]


def _named(fn: Callable, name: str) -> Callable:
    """The same reward under another component name (TRL logs rewards by ``__name__``)."""
    def named(prompts, completions, **kwargs):
        return fn(prompts, completions, **kwargs)

    named.__name__ = named.__qualname__ = name
    named.__doc__ = fn.__doc__
    return named


# ---------------------------------------------------------------------------------------------
# The Task record
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Task:
    """A verifiable task: data splits, reward components and (for synthetic tasks) a solver."""

    name: str
    train: Any                              # datasets.Dataset
    test: Any                               # datasets.Dataset
    reward_funcs: tuple[Callable, ...]      # TRL contract; __name__ "<component>_reward"
    reward_weights: tuple[float, ...]       # weighted total = sum(w * component)
    knobs: dict = field(default_factory=dict)
    description: str = ""
    writer: "SyntheticTask | None" = None   # writes solutions (synthetic tasks only)
    env: Callable[[], Environment] = SingleTurnEnv   # a fresh environment per episode

    @property
    def component_names(self) -> tuple[str, ...]:
        return tuple(reward_component_name(f) for f in self.reward_funcs)


def reward_component_name(fn: Callable) -> str:
    name = getattr(fn, "__name__", type(fn).__name__)
    return name[: -len("_reward")] if name.endswith("_reward") else name


# ---------------------------------------------------------------------------------------------
# Synthetic tasks
# ---------------------------------------------------------------------------------------------

class SyntheticTask:
    """Base for generated tasks: enumerate problems, split, write worked/direct solutions."""

    name = "synthetic"
    description = ""

    def __init__(self, **knobs):
        self.knobs = knobs

    def rewards(self) -> tuple[tuple[Callable, ...], tuple[float, ...]]:
        """(reward functions, weights) of the task's ``Task``."""
        return _SYNTH_REWARDS, (1.0, 0.1)

    def environment(self) -> Callable[[], Environment]:
        """The factory of the task's episodes (one fresh environment per episode)."""
        return SingleTurnEnv

    # problem -> (question text, gold answer string)
    def sample_problem(self, rng: random.Random) -> tuple:
        raise NotImplementedError

    def question(self, problem: tuple) -> str:
        raise NotImplementedError

    def gold(self, problem: tuple) -> str:
        raise NotImplementedError

    def worked_steps(self, problem: tuple) -> list[str]:
        raise NotImplementedError

    def estimate(self, problem: tuple, rng: random.Random) -> str:
        """A bare answer as a hurried writer states it: near the truth, seldom exact."""
        raise NotImplementedError

    def solution(self, problem: tuple, style: str = "worked", rng: random.Random | None = None) -> str:
        """Completion text for ``problem``: ``"worked"`` (steps, then the exact answer) or
        ``"direct"`` (an unworked estimate; exact only by luck -- needs ``rng``)."""
        if style == "direct":
            return f"<answer>{self.estimate(problem, rng or random.Random(0))}</answer>"
        if style != "worked":
            raise ValueError(f"style must be 'worked' or 'direct', got {style!r}")
        return "\n".join(self.worked_steps(problem) + [f"<answer>{self.gold(problem)}</answer>"])

    def row(self, problem: tuple) -> dict:
        q = self.question(problem)
        return {"prompt": [{"role": "user", "content": q}], "question": q,
                "answer": self.gold(problem), "problem": json.dumps(list(problem))}

    def split(self, n_train: int, n_test: int) -> tuple[list[tuple], list[tuple], set]:
        """Fixed held-out problems (by TASK_SEED) and train problems that never collide with them."""
        test = self._draw(TASK_SEED, n_test, skip=set(), distinct=True)
        held_out = set(test)
        train = self._draw(TASK_SEED + 1, n_train, skip=held_out, distinct=False)
        return train, test, held_out

    def _draw(self, seed: int, n: int, *, skip: set, distinct: bool) -> list[tuple]:
        """Up to ``n`` problems from a seeded stream, none in ``skip`` (nor repeated if
        ``distinct``); gives up after 50 * n draws so a tiny problem space cannot loop forever."""
        rng = random.Random(seed)
        out, skip = [], set(skip)
        for _ in range(50 * n):
            if len(out) >= n:
                break
            p = self.sample_problem(rng)
            if p not in skip:
                out.append(p)
                if distinct:
                    skip.add(p)
        return out


class SumTask(SyntheticTask):
    """``Add: 7+3+5`` -> ``15``. Knobs: ``n_terms`` (default 3), ``max_operand`` (default 9)."""

    name = "sum"
    description = "multi-step addition of small numbers; worked solutions add one term per line"

    def __init__(self, n_terms: int = 3, max_operand: int = 9):
        if n_terms < 2:
            raise ValueError(f"n_terms={n_terms}: a sum needs at least 2 terms")
        if max_operand < 2:
            raise ValueError(f"max_operand={max_operand}: must be at least 2")
        super().__init__(n_terms=n_terms, max_operand=max_operand)
        self.n_terms, self.max_operand = n_terms, max_operand

    def sample_problem(self, rng):
        return tuple(rng.randint(1, self.max_operand) for _ in range(self.n_terms))

    def question(self, p):
        return "Add: " + "+".join(map(str, p))

    def gold(self, p):
        return str(sum(p))

    def estimate(self, p, rng):
        return str(sum(p) + rng.randint(-5, 5))     # exact 1 time in 11

    def worked_steps(self, p):
        steps, acc = [], p[0]
        for x in p[1:]:
            steps.append(f"{acc}+{x}={acc + x}")
            acc += x
        return steps


class LinearTask(SyntheticTask):
    """``Solve: 3x+2=7`` -> ``5/3``. Knobs: ``max_coef`` (default 9), ``max_rhs`` (default 20).

    Answers are fractions (often not integers), so the verifier must compare rationals: ``10/4``
    written by the model equals the gold ``5/2``.
    """

    name = "linear"
    description = "one linear equation a*x+b=c; answers are fractions"

    def __init__(self, max_coef: int = 9, max_rhs: int = 20):
        if max_coef < 2 or max_rhs < 1:
            raise ValueError(f"max_coef={max_coef} must be >= 2 and max_rhs={max_rhs} >= 1")
        super().__init__(max_coef=max_coef, max_rhs=max_rhs)
        self.max_coef, self.max_rhs = max_coef, max_rhs

    def sample_problem(self, rng):
        a = rng.randint(2, self.max_coef)
        b = rng.randint(-self.max_coef, self.max_coef) or 1
        c = rng.randint(0, self.max_rhs)
        return (a, b, c)

    def question(self, p):
        a, b, c = p
        return f"Solve: {a}x{'+' if b > 0 else '-'}{abs(b)}={c}"

    def gold(self, p):
        a, b, c = p
        x = Fraction(c - b, a)
        return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"

    def estimate(self, p, rng):
        a, b, c = p
        return str(round((c - b) / a) + rng.randint(-2, 2))   # a whole number near x

    def worked_steps(self, p):
        a, b, c = p
        op = "-" if b > 0 else "+"
        return [f"{a}x={c}{op}{abs(b)}={c - b}", f"x={c - b}/{a}"]


class ReachTask(SyntheticTask):
    """ProsQA-style reachability: ``Edges: s>b b>q ... From s: q or k?`` -> ``q``.

    The start node has two children; one chain leads to an option in ``hops`` steps, the other
    to a dead end, and the other option ends a chain that cannot be reached from the start. The
    worked solution follows the right chain, one edge per line. Knob: ``hops`` (default 3).
    Letters that a math verifier reads as constants (e, i, o, l) are not used as names.
    """

    name = "reach"
    description = "graph reachability in the style of ProsQA; worked solutions walk the path"
    NAMES = "abcdfghjkmnpqrstuvwxyz"

    def __init__(self, hops: int = 3):
        if not 1 <= hops <= 6:
            raise ValueError(f"hops={hops}: must be between 1 and 6")
        super().__init__(hops=hops)
        self.hops = hops

    def sample_problem(self, rng):
        names = rng.sample(self.NAMES, 3 * self.hops + 2)
        start, names = names[0], names[1:]
        path = [start] + names[: self.hops]                      # start -> ... -> answer
        dead = [start] + names[self.hops: 2 * self.hops]         # start -> ... -> dead end
        other = names[2 * self.hops:]                            # unreachable chain -> option
        edges = [f"{a}>{b}" for chain in (path, dead, other) for a, b in zip(chain, chain[1:])]
        rng.shuffle(edges)
        options = [path[-1], other[-1]]
        rng.shuffle(options)
        return (" ".join(edges), start, *options, path[-1])

    def question(self, p):
        edges, start, x, y, _ = p
        return f"Edges: {edges}\nFrom {start}: {x} or {y}?"

    def gold(self, p):
        return p[-1]

    def estimate(self, p, rng):
        return rng.choice(p[2:4])                                  # a guess between the options

    def worked_steps(self, p):
        edges, node, *_ = p
        step = dict(e.split(">") for e in edges.split() if not e.startswith(f"{node}>"))
        first = {e.split(">")[1] for e in edges.split() if e.startswith(f"{node}>")}
        for child in first:                                      # the child whose chain ends at
            walk, n = [f"{node}>{child}"], child                 # the answer
            while n in step:
                walk.append(f"{n}>{step[n]}")
                n = step[n]
            if n == p[-1]:
                return walk
        raise AssertionError(f"no path to the answer in {p}")


class BilingualSumTask(SumTask):
    """``Add: 7+3+5`` with the working written in one of two languages: disjoint word sets
    for the same steps, so the share of each language in a completion is exactly countable
    (``workbench.probes.language_share``).

    ====== ==================== ==================

    ``en`` ``7 plus 3 is 10``   estimate: ``about <answer>17</answer>``
    ``fr`` ``7 et 3 font 10``   (estimates are said in English only)
    ====== ==================== =========================

    The question is asked in English (the target language). In the pretraining corpus careful
    working is mostly French (``worked_english`` of worked solutions are English) and a worked
    solution switches language after a step with probability ``switch`` -- the way R1-Zero's
    training data wrote most careful mathematics in one language whatever the question's.
    Knob: ``n_terms``, ``max_operand`` as ``sum``; held-out problems are the same as ``sum``'s.
    """

    name = "sum_bilingual"
    description = "multi-step addition; the working is written in English or French words"
    WORDS = {"en": ("plus", "is", "about"), "fr": ("et", "font", "environ")}
    worked_english = 0.25          # share of worked corpus solutions that start in English
    switch = 0.15                  # chance to change language after each step

    def solution(self, problem, style="worked", rng=None, *, language: str | None = None):
        """Like ``SumTask.solution``; ``language`` ("en"/"fr") fixes the working's language,
        otherwise ``rng`` draws it (and any switch) as the corpus does."""
        rng = rng or random.Random(0)
        if style == "direct":
            return f"{self.WORDS['en'][2]} <answer>{self.estimate(problem, rng)}</answer>"
        if style != "worked":
            raise ValueError(f"style must be 'worked' or 'direct', got {style!r}")
        if language not in (None, *self.WORDS):
            raise ValueError(f"language must be one of {sorted(self.WORDS)}, got {language!r}")
        lang = language or ("en" if rng.random() < self.worked_english else "fr")
        lines, acc = [], problem[0]
        for x in problem[1:]:
            plus, is_ = self.WORDS[lang][:2]
            lines.append(f"{acc} {plus} {x} {is_} {acc + x}")
            acc += x
            if language is None and rng.random() < self.switch:
                lang = "fr" if lang == "en" else "en"
        return "\n".join(lines + [f"<answer>{self.gold(problem)}</answer>"])


class CodeTask(SyntheticTask):
    """Program synthesis from examples: write ``f(x)`` from its values at 0 and 1.

    ``f(x) = a*x + b`` with ``1 <= a <= max_slope`` and ``0 <= b <= max_intercept``. The model
    sees the *public* tests ``assert f(0) == b`` and ``assert f(1) == a+b`` (what
    ``workbench.envs.code.CodeFeedbackEnv`` runs after every turn); the reward comes from
    *private* tests at x = 2, 3, 5, so a lookup table of the public values does not pay.

    How the corpus writes it (the tiny model's base ability, ``workbench.tiny``):

    * A first attempt needs the slope ``f(1)-f(0)``, a subtraction the 1.7M-parameter model
      mostly gets wrong. Worked solutions write it out (``# 7-3=4``, then ``return 4*x+3``);
      direct ones read the intercept off ``f(0)`` (right 9 times in 10) and guess the slope
      (right half the time). The model's own first attempts are right about 1 time in 10.
    * A repair (``repair_chats``) follows a wrong attempt and the environment's real feedback.
      Most of the time it guesses again, ignoring the feedback; a ``fix_fraction`` of the time
      it reads the feedback and *copies* its numbers into the program, letting Python do the
      arithmetic: ``# expected 7, got 8`` then ``return (5+7-8)*x+3``. Copying is within the
      tiny model's reach on every problem, held-out ones included.

    So the base model can use feedback but mostly does not, and when it does, its sampled copies
    are often wrong: the skill RL from execution feedback has to amplify (RLEF, arXiv
    2410.02089, finds instruct models barely change their code between turns). An episode
    whose feedback describes another problem copies the wrong numbers.

    The problem space is small (171 functions by default), so the held-out split is a fixed
    set of ``HELD_OUT`` functions, never trained on, whatever ``n_test`` asks for.
    """

    name = "code"
    description = "write f(x)=a*x+b from f(0) and f(1); private tests at x=2,3,5"
    PUBLIC_X = (0, 1)
    PRIVATE_X = (2, 3, 5)
    HELD_OUT = 40

    def __init__(self, max_slope: int = 9, max_intercept: int = 18):
        if max_slope < 2 or max_intercept < 2:
            raise ValueError(f"max_slope={max_slope} and max_intercept={max_intercept} must be "
                             ">= 2")
        super().__init__(max_slope=max_slope, max_intercept=max_intercept)
        self.max_slope, self.max_intercept = max_slope, max_intercept

    def sample_problem(self, rng):
        return (rng.randint(1, self.max_slope), rng.randint(0, self.max_intercept))

    @staticmethod
    def tests(p: tuple, xs: tuple[int, ...]) -> str:
        a, b = p
        return "\n".join(f"assert f({x}) == {a * x + b}" for x in xs)

    def question(self, p):
        return "Write f(x) so that:\n" + self.tests(p, self.PUBLIC_X)

    @staticmethod
    def program(a: int, b: int) -> str:
        return f"def f(x):\n    return {a}*x+{b}"

    def gold(self, p):
        return self.program(*p)

    def worked_steps(self, p):
        a, b = p
        return [f"# {a + b}-{b}={a}"]

    SLOPE_RIGHT, INTERCEPT_RIGHT = 0.5, 0.9      # how often a direct answer gets each right

    def estimate(self, p, rng):
        a, b = p
        if rng.random() >= self.SLOPE_RIGHT:
            a = max(1, a + rng.choice((-1, 1)))
        if rng.random() >= self.INTERCEPT_RIGHT:
            b = max(0, b + rng.choice((-3, -2, -1, 1, 2, 3)))
        return (a, b)

    def solution(self, p, style="worked", rng=None):
        if style == "direct":
            return self.program(*self.estimate(p, rng or random.Random(0)))
        if style != "worked":
            raise ValueError(f"style must be 'worked' or 'direct', got {style!r}")
        return "\n".join(self.worked_steps(p) + [self.gold(p)])

    def rewards(self):
        from .envs.code import CODE_REWARDS

        return CODE_REWARDS, (1.0, 1.0)

    def environment(self):
        from .envs.code import CodeFeedbackEnv

        return CodeFeedbackEnv

    def row(self, p):
        out = super().row(p)
        out.update(public_tests=self.tests(p, self.PUBLIC_X),
                   private_tests=self.tests(p, self.PRIVATE_X), entry_point="f")
        return out

    def split(self, n_train, n_test):
        held_out_list = self._draw(TASK_SEED, self.HELD_OUT, skip=set(), distinct=True)
        held_out = set(held_out_list)
        train = self._draw(TASK_SEED + 1, n_train, skip=held_out, distinct=False)
        return train, held_out_list[:n_test], held_out

    def repair(self, p, attempt: tuple, feedback: tuple[int, int, int], rng, *,
               fix: bool) -> tuple[tuple, str]:
        """The next attempt after ``attempt`` failed: (coefficients, text).

        ``feedback``: (x, expected, got) of the first failing public test, as the environment
        reported it. ``fix``: read the feedback and copy its numbers into the program, letting
        Python do the arithmetic -- x=0 names the intercept (``return 5*x+3``: the expected
        value *is* the intercept); x=1 names the slope, since f(0) passed by then
        (``return (5+7-8)*x+3``: the old slope plus expected minus got). Else guess again at a
        glance. Copying is what the tiny model can learn, so every held-out problem's repair is
        within its reach; a first attempt needs the subtraction it mostly gets wrong."""
        if not fix:
            guess = self.estimate(p, rng)
            return guess, self.program(*guess)
        x, want, got = feedback
        note = f"# expected {want}, got {got}"
        if x == 0:
            new = (attempt[0], want)
            return new, f"{note}\n{self.program(*new)}"
        new = (attempt[0] + want - got, attempt[1])
        return new, f"{note}\ndef f(x):\n    return ({attempt[0]}+{want}-{got})*x+{attempt[1]}"

    @staticmethod
    def _failing(p: tuple, attempt: tuple) -> tuple[int, int, int]:
        """(x, expected, got) of the first public test ``attempt`` fails (it must fail one)."""
        x = 0 if attempt[1] != p[1] else 1
        return x, p[0] * x + p[1], attempt[0] * x + attempt[1]

    def repair_chats(self, problems: list[tuple], rng: random.Random, *,
                     fix_fraction: float) -> list[tuple[list[dict], str]]:
        """(chat so far, next attempt) pairs of episodes that failed first: the chat holds the
        problem, a wrong direct attempt and ``CodeFeedbackEnv``'s real feedback (sandboxed runs,
        in parallel), so the corpus shows feedback exactly as an episode will. About half the
        chains whose second attempt fails go on to a third turn."""
        from concurrent.futures import ThreadPoolExecutor

        from .envs.code import CodeFeedbackEnv

        plans = []
        for p in problems:
            first = p
            while first == p:          # a near miss, or (half the time) any slope at all,
                first = self.estimate(p, rng)           # as a model that cannot subtract has
                if rng.random() < 0.5:
                    first = (rng.randint(1, self.max_slope), first[1])
            fix = rng.random() < fix_fraction
            second, text2 = self.repair(p, first, self._failing(p, first), rng, fix=fix)
            third = None
            if second != p and rng.random() < 0.5:
                fix3 = rng.random() < fix_fraction
                third = self.repair(p, second, self._failing(p, second), rng, fix=fix3)
            plans.append((p, first, text2, second, third))

        def run(plan):
            p, first, text2, second, third = plan
            attempts = [self.program(*first), text2] + ([third[1]] if third else [])
            env = CodeFeedbackEnv(max_turns=len(attempts))
            chat = list(env.reset(self.row(p)))
            for text in attempts[:-1]:                 # the last attempt is the completion
                step = env.step(text)
                if step.done:
                    raise RuntimeError(f"corpus: a wrong attempt passed its tests: {text!r}")
                chat += [{"role": "assistant", "content": text},
                         {"role": env.feedback_role, "content": step.feedback}]
            return chat, attempts[-1]

        with ThreadPoolExecutor(max_workers=8) as pool:     # each step is one sandboxed run
            return list(pool.map(run, plans))


class SearchTask(SyntheticTask):
    """Questions about a generated world, answered with a search tool (``workbench.envs.search``).

    ``When was the founder of Quillco born?`` -> ``1931``: 0-hop questions carry their fact,
    1-hop ones need one look-up, 2-hop ones two. Episodes run in ``SearchEnv``: the model
    writes ``<search>...</search>`` and reads `` <information>...</information>``, then
    ``<answer>...</answer>``. Worked solutions are careful episodes (each look-up and its real
    result); direct ones answer at once, right only by luck. Held-out questions are about a
    fixed fifth of the world's people and companies. Knobs: ``top_k`` (documents per search),
    ``tools`` (False: every call returns "no results" -- the no-tools baseline), ``f1`` /
    ``format`` / ``process`` (reward weights; see ``search_weights``), ``chat_tools`` (True: a
    chat model with a tool-calling template calls the tools in its own ``<tool_call>`` JSON and
    reads ``tool`` messages; see ``SearchEnv``).
    """

    name = "search"
    description = "0-, 1- and 2-hop questions about a generated world; BM25 search tool"

    def __init__(self, top_k: int = 1, tools: bool = True, f1: float = 0.0,
                 format: float = 0.1, process: float = 0.0, chat_tools: bool = False):
        if not isinstance(top_k, int) or not 1 <= top_k <= 10:
            raise ValueError(f"top_k={top_k!r}: documents per search, between 1 and 10")
        for knob, w in (("f1", f1), ("format", format), ("process", process)):
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w <= 10:
                raise ValueError(f"{knob}={w!r}: a reward weight between 0 and 10")
        if not isinstance(chat_tools, bool):
            raise ValueError(f"chat_tools={chat_tools!r}: True or False")
        super().__init__(top_k=top_k, tools=tools, f1=f1, format=format, process=process,
                         **({"chat_tools": True} if chat_tools else {}))
        from .envs.search import make_world

        self.chat_tools = chat_tools
        self.top_k, self.tools, self.weights = top_k, bool(tools), dict(f1=f1, format=format,
                                                                         process=process)
        self.world = make_world()

    def _problems(self, held_out: bool) -> list[tuple]:
        from .envs.search import COMPANY_KINDS, PERSON_KINDS

        w = self.world
        return [(k, e.name) for group, kinds in ((w.people, PERSON_KINDS),
                                                 (w.companies, COMPANY_KINDS))
                for e in group if (e.name in w.held_out) == held_out for k in kinds]

    def sample_problem(self, rng):
        problems = self.__dict__.setdefault("_train", self._problems(held_out=False))
        return rng.choice(problems)

    def split(self, n_train, n_test):
        test = self._problems(held_out=True)
        random.Random(TASK_SEED).shuffle(test)
        rng = random.Random(TASK_SEED + 1)
        train = [self.sample_problem(rng) for _ in range(n_train)]
        return train, test[:n_test], set(test)

    def question(self, p):
        from .envs.search import question

        return question(self.world, *p)

    def gold(self, p):
        from .envs.search import gold

        return gold(self.world, *p)

    def row(self, p):
        from .envs.search import hops

        return {**super().row(p), "kind": p[0], "hops": hops(p[0])}

    def solution(self, p, style="worked", rng=None):
        from .envs.search import episode_text, guess

        if style == "direct":
            return f"<answer> {guess(self.world, *p, rng or random.Random(0))}</answer>"
        if style != "worked":
            raise ValueError(f"style must be 'worked' or 'direct', got {style!r}")
        return episode_text(self.world, *p, top_k=self.top_k)

    def rewards(self):
        from .envs.search import SEARCH_REWARDS, search_weights

        return SEARCH_REWARDS, search_weights(**self.weights)

    def environment(self):
        from functools import partial

        from .envs.search import SearchEnv

        return partial(SearchEnv, top_k=self.top_k, tools=self.tools,
                       chat_tools=self.chat_tools)


TASKS: dict[str, type[SyntheticTask]] = {"sum": SumTask, "linear": LinearTask, "code": CodeTask,
                                         "reach": ReachTask, "sum_bilingual": BilingualSumTask,
                                         "search": SearchTask}
_SYNTH_REWARDS = (answer_reward, _named(tag_format_reward, "format_reward"))


def get_task(name: str = "sum", *, n_train: int = 4000, n_test: int = 200, path: str | None = None,
             **knobs) -> Task:
    """Build a task by name.

    ``"sum"`` (default) and ``"linear"`` are synthetic, with difficulty ``knobs`` (see their
    classes). ``"gsm8k"`` and ``"math"`` read a local jsonl file given as ``path=`` or as
    ``"gsm8k:PATH"`` / ``"math:PATH"``; the file is split 90/10 with a fixed seed unless a
    ``test_path=`` is given. ``"mbpp:PATH"``: MBPP-style code problems, run as episodes with
    execution feedback (``workbench.envs.code.load_mbpp_task``).
    """
    from datasets import Dataset

    if ":" in name and path is None:
        name, path = name.split(":", 1)
    if name in ("gsm8k", "math", "mbpp"):
        if path is None:
            raise ValueError(f"task {name!r} reads a local jsonl file: pass path=... "
                             f"or name='{name}:/path/to/file.jsonl'")
        if name == "mbpp":
            from .envs.code import load_mbpp_task

            return load_mbpp_task(path, **knobs)
        return load_jsonl_task(name, path, **knobs)
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(sorted(TASKS))}, "
                         "'gsm8k:PATH', 'math:PATH' or 'mbpp:PATH'")
    writer = TASKS[name](**knobs)
    train, test, _ = writer.split(n_train, n_test)
    return Task(
        name=name,
        train=Dataset.from_list([writer.row(p) for p in train]),
        test=Dataset.from_list([writer.row(p) for p in test]),
        reward_funcs=writer.rewards()[0],
        reward_weights=writer.rewards()[1],
        knobs=dict(writer.knobs),
        description=writer.description,
        writer=writer,
        env=writer.environment(),
    )


# ---------------------------------------------------------------------------------------------
# Real datasets from local files (GSM8K, MATH)
# ---------------------------------------------------------------------------------------------

def gsm8k_gold(answer_field: str) -> str:
    """GSM8K's gold: the text after ``####``, thousands separators removed."""
    if "####" not in answer_field:
        raise ValueError(f"GSM8K answer has no '####' line: {answer_field[-80:]!r}")
    return answer_field.rsplit("####", 1)[1].strip().replace(",", "")


def last_boxed(text: str) -> str | None:
    """Content of the last outermost ``\\boxed{...}`` (or ``\\fbox{...}``): MATH's final answer.

    The math verifier's own extraction (nested braces, escaped braces and ``\\boxed 5``
    handled the same way), so a gold answer is read exactly as completions are.
    """
    from verifiers._math_extract import boxed_answers

    boxes = boxed_answers(text)
    return boxes[-1] if boxes else None


class TaskFileError(ValueError):
    """A dataset file that cannot be read as the task needs; the message names the line."""


class TaskFileMissing(TaskFileError, FileNotFoundError):
    """The dataset file does not exist."""


def _read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, row) of every non-blank line; ``TaskFileError`` naming the line otherwise."""
    path = Path(path).expanduser()
    if not path.exists():
        raise TaskFileMissing(f"no such dataset file: {path}")
    if path.is_dir():
        raise TaskFileError(f"{path} is a folder; give a jsonl file (one JSON object per line)")
    rows = []
    try:
        with path.open("rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                rows += _jsonl_row(raw, f"{path}:{lineno}", lineno)
    except OSError as exc:
        raise TaskFileError(f"cannot read {path}: {exc.strerror}") from None
    if not rows:
        raise TaskFileError(f"{path}: no rows (the file is empty); give one JSON object per line")
    return rows


def _jsonl_row(raw: bytes, where: str, lineno: int) -> list[tuple[int, dict]]:
    if b"\0" in raw:
        raise TaskFileError(f"{where}: binary data, not text; give a UTF-8 jsonl file")
    try:
        line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")   # a BOM is not data
    except UnicodeDecodeError:
        raise TaskFileError(f"{where}: not UTF-8 text; give a UTF-8 jsonl file") from None
    if not line.strip():
        return []
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        hint = (" (a JSON array or a pretty-printed file? write one object per line)"
                if lineno == 1 and line.strip() in ("[", "{") else "")
        raise TaskFileError(f"{where}: not valid JSON ({exc.msg}){hint}") from None
    if not isinstance(row, dict):
        raise TaskFileError(f"{where}: a row must be a JSON object with named fields, got "
                            f"{_json_kind(row)}")
    return [(lineno, row)]


def _json_kind(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "true/false",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), "a value")


def _text_field(r: dict, key: str, where: str) -> str:
    value = r[key]
    if not isinstance(value, str) or not value.strip():
        raise TaskFileError(f"{where}: '{key}' must be non-empty text, got {_json_kind(value)}")
    return value


def _gsm8k_row(r: dict, where: str) -> dict:
    if "question" not in r or "answer" not in r:
        raise TaskFileError(f"{where}: a GSM8K row needs 'question' and 'answer', got "
                            f"{sorted(r)}")
    question, answer = _text_field(r, "question", where), _text_field(r, "answer", where)
    try:
        gold = gsm8k_gold(answer)
    except ValueError as exc:
        raise TaskFileError(f"{where}: {exc}") from None
    if not gold:
        raise TaskFileError(f"{where}: the answer has nothing after '####'")
    return {"question": question, "answer": gold}


def _math_row(r: dict, where: str) -> dict:
    key = "problem" if "problem" in r else "question"
    if key not in r or ("answer" not in r and "solution" not in r):
        raise TaskFileError(f"{where}: a MATH row needs 'problem' and 'answer' or a 'solution' "
                            f"with \\boxed{{}}, got {sorted(r)}")
    problem = _text_field(r, key, where)
    gold = r.get("answer")
    if gold is None:
        gold = last_boxed(_text_field(r, "solution", where))
        if gold is None:
            raise TaskFileError(f"{where}: the solution has no \\boxed{{}} answer")
    elif isinstance(gold, bool) or not isinstance(gold, (str, int, float)):
        raise TaskFileError(f"{where}: 'answer' must be text or a number, got {_json_kind(gold)}")
    if not str(gold).strip():
        raise TaskFileError(f"{where}: 'answer' is empty")
    return {"question": problem, "answer": str(gold), "level": str(r.get("level", "")),
            "type": str(r.get("type", r.get("subject", "")))}


def load_jsonl_task(kind: str, path: str | Path, *, test_path: str | Path | None = None,
                    test_fraction: float = 0.1, limit: int | None = None,
                    system_prompt: str = BOXED_INSTRUCTION) -> Task:
    """GSM8K (``question``/``answer`` with ``#### n``) or MATH (``problem``/``solution`` or
    ``answer``) jsonl as a Task with boxed-answer rewards for instruct models."""
    from datasets import Dataset

    to_row = {"gsm8k": _gsm8k_row, "math": _math_row}[kind]

    def rows_of(p):
        raw = _read_jsonl(p)[:limit]
        out = []
        for lineno, r in raw:
            row = to_row(r, f"{Path(p).expanduser()}:{lineno}")
            row["prompt"] = [{"role": "system", "content": system_prompt},
                             {"role": "user", "content": row["question"]}]
            out.append(row)
        return out

    rows = rows_of(path)
    if test_path is not None:
        train_rows, test_rows = rows, rows_of(test_path)
    else:
        rng = random.Random(TASK_SEED)
        order = list(range(len(rows)))
        rng.shuffle(order)
        n_test = max(1, int(round(len(rows) * test_fraction))) if len(rows) > 1 else 0
        test_rows = [rows[i] for i in order[:n_test]]
        train_rows = [rows[i] for i in order[n_test:]] or test_rows
    return Task(
        name=kind,
        train=Dataset.from_list(train_rows),
        test=Dataset.from_list(test_rows),
        reward_funcs=(answer_reward, _named(boxed_format_reward, "format_reward")),
        reward_weights=(1.0, 0.1),
        knobs={"path": str(path)},
        description=f"{kind} from {path}",
    )

