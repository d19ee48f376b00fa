"""A toy environment for tests, benchmarks and the first look at an episode.

``DigitEnv`` asks for a digit and answers ``again`` until the model writes one: deterministic,
instant, and every rule of the protocol shows in it (feedback, done, the turn limit, a verdict in
``info``).
"""
from __future__ import annotations

from . import Environment, Step


class DigitEnv(Environment):
    """Ends as soon as a model turn contains a digit; otherwise replies ``feedback``."""

    def __init__(self, *, max_turns: int = 3, feedback: str = "again",
                 feedback_role: str | None = "user", stop: tuple[str, ...] = ()):
        self.max_turns, self.feedback, self.feedback_role, self.stop = (
            max_turns, feedback, feedback_role, tuple(stop))

    def step(self, text: str) -> Step:
        if any(c.isdigit() for c in text):
            return Step(feedback=None, done=True, info={"verdict": "digit"})
        return Step(feedback=self.feedback, done=False, info={"verdict": "no digit"})


def digit_reward(prompts, completions, turns=None, **kwargs) -> list[float]:
    """1.0 when the episode's last model turn contains a digit (TRL contract)."""
    out = []
    for i, c in enumerate(completions):
        last = [t for t in turns[i] if t["role"] == "model"][-1]["text"] if turns else str(c)
        out.append(float(any(ch.isdigit() for ch in last)))
    return out
