"""Environments: the world an *episode* runs in.

An episode is the unit the engine samples and trains on. The model writes a turn; the environment
reads it and answers (or says the episode is over); the model writes the next turn, and so on.
A plain task -- prompt in, one completion, reward -- is the one-turn episode: ``SingleTurnEnv``.

An environment in ten lines (the model must write a digit; it is told "again" until it does)::

    class DigitEnv(Environment):
        max_turns = 3

        def reset(self, row):
            return row["prompt"]                     # the first prompt (text or chat)

        def step(self, text):
            if any(c.isdigit() for c in text):
                return Step(feedback=None, done=True, info={"verdict": "digit"})
            return Step(feedback="again", done=False, info={"verdict": "no digit"})

The engine (``workbench.rollouts.sample_episodes``) makes a fresh environment per episode with the
task's factory (``Task.env``), calls ``reset`` once, then ``step`` after every model turn. Turn by
turn:

* the model's turn ends at EOS, at one of ``stop`` (e.g. ``"</search>"``), or when it runs out of
  tokens (``max_new_tokens`` per turn, or the episode's token budget);
* ``step(text)`` gets that turn's text and returns ``Step(feedback, done, info)``;
* the episode ends when ``done``, after ``max_turns`` turns, when a turn ran out of tokens, or when
  the feedback would not fit in the episode's token budget (environment tokens count too);
* otherwise the feedback is tokenised once and appended as ids -- as a new chat message with role
  ``feedback_role`` rendered by the tokenizer's chat template (chat prompts), or inline right after
  the model's text when ``feedback_role`` is None (Search-R1's ``<information>`` style) -- and the
  model writes the next turn. ``feedback=None`` with ``done=False`` appends an empty message.

Environment tokens are context only: the loss, KL and entropy see model tokens alone. The
environments of one turn reply one after another, or in threads when every one of them sets
``concurrent = True`` (a ``step`` that waits on a subprocess, such as a code sandbox).

Rewards are computed at the end, by the task's reward functions with TRL's contract
``f(prompts, completions, **columns)``: ``completions`` holds the model's text of the episode (its
turns joined by newlines; exactly today's completion for one turn) and two more keyword columns
describe the episode:

* ``turns``: per episode a list of ``{"role": "model" | "env", "text": str, "info": dict}``. A
  model turn's ``info`` is the ``Step.info`` the environment returned for it (its verdict); an
  environment turn is the feedback the model was shown.
* ``final_info``: per episode the ``info`` of its last step, with ``"turns"`` (model turns taken)
  and ``"ended"`` added: ``"length"`` / ``"budget"`` when the last turn ran out of tokens (per
  turn / per episode; this wins over the environment's done), else ``"done"`` or
  ``"max_turns"``.

Reward functions that take ``**kwargs`` can ignore both.
"""
from __future__ import annotations

from dataclasses import dataclass, field

ENDINGS = ("done", "max_turns", "length", "budget")


@dataclass(frozen=True)
class Step:
    """What the environment says after one model turn."""

    feedback: str | None            # what the environment says next; None = nothing
    done: bool                      # the episode ends after this turn
    info: dict = field(default_factory=dict)   # per-turn facts kept in the trace (verdict, ...)


class Environment:
    """One episode's world: a fresh instance per episode (the engine calls the factory per row).

    Subclasses set the class attributes and implement ``step`` (and ``reset`` when the first
    prompt is not simply the row's ``prompt``). State for one episode lives on ``self``.
    """

    max_turns: int = 1                      # model turns at most (the run's settings may override)
    stop: tuple[str, ...] = ()              # strings that end a model turn besides EOS
    feedback_role: str | None = "user"      # a new chat turn with this role; None = inline text
    tool_schemas: tuple | None = None       # function schemas the chat template announces
    concurrent: bool = False                # step() may run in threads beside other episodes'
                                            # (it waits on a subprocess, e.g. a code sandbox)

    def reset(self, row: dict) -> str | list[dict]:
        """The first prompt of the episode for dataset ``row`` (text, or a chat)."""
        return row["prompt"]

    def step(self, text: str) -> Step:
        """The model's turn ``text`` (special tokens removed) -> the environment's reply."""
        raise NotImplementedError


class SingleTurnEnv(Environment):
    """Today's tasks: the prompt, one completion, done."""

    def step(self, text: str) -> Step:
        return Step(feedback=None, done=True)


__all__ = ["ENDINGS", "Environment", "SingleTurnEnv", "Step"]
