"""Sampling episodes: the "generation" half of every GRPO step.

An *episode* is a prompt, then model turns and environment replies (``workbench.envs``) until the
environment says done; a plain completion is the one-turn episode, so there is one sampler:
``sample_episodes``. ``sample_group`` (prompts in, ``group_size`` completions each out) is that
sampler with ``SingleTurnEnv``.

All ``P * group_size`` episodes advance turn by turn *in one batch*, with a plain
key/value-cached decoding loop -- the loop ``model.generate`` runs, written out so a learner can
read it -- and the savings that matter for GRPO:

* siblings share their prompt, so each distinct prompt is prefilled once and its keys/values are
  copied to its ``group_size`` rows (``DynamicCache.batch_select_indices``);
* a row whose turn has ended leaves the batch, so later tokens are computed only for the rows
  still running (the rest of the batch is not padded along to the longest completion);
* an episode that goes on keeps its keys/values: they are set aside when its turn ends, and the
  next turn starts by feeding only its last token and the environment's reply through that cache;
* turns do not wait for each other (continuous batching): a row whose turn ended rejoins the
  running batch with its reply, its keys/values merged with the live ones, while slower rows are
  still in their own turn; an episode that is done leaves for good.

**Token in, token out.** The ids the model sampled and their log-probs are kept as sampled; the
environment's reply is tokenised once and appended as ids. Nothing is re-tokenised from text, so
the tokens trained on are the tokens the model saw (BPE does not round-trip: ``decode`` then
``encode`` can split a word differently).

Prompts are left-padded so that every sequence's next token sits in the last column; position ids
come from the attention mask so padding does not shift positions. An environment reply of
varying length is left-padded inside its chunk, which leaves masked holes mid-sequence: the
explicit attention mask and position ids make them invisible.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from .envs import Environment, SingleTurnEnv, Step


@dataclass
class Completions:
    """A batch of sampled episodes; row ``i`` belongs to prompt ``i // group_size``.

    The "completion" of a row is everything after its prompt: the model's turns and, in
    multi-turn episodes, the environment's replies between them (``action_mask`` 0).
    """

    prompt_ids: Tensor          # (N, P) left-padded prompt tokens
    prompt_mask: Tensor         # (N, P) 1 for real prompt tokens
    completion_ids: Tensor      # (N, T) right-padded episode tokens (EOS included when sampled)
    completion_mask: Tensor     # (N, T) 1 for the episode's tokens, model's and environment's
    sample_logps: Tensor        # (N, T) log-prob of each sampled token under the sampling policy
    texts: list[str]            # the model's text of each episode (special tokens removed)
    prompts: list[str]          # templated first-prompt text, one per row
    group_size: int
    finished: Tensor            # (N,) True when the last model turn ended by itself (EOS / stop)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    action_mask: Tensor | None = None   # (N, T) 1 = sampled by the model; None = completion_mask
    prompt_index: Tensor | None = None  # (N,) a row with the same prompt (one forward for both)
    turns: list[list[dict]] | None = None   # per row: {"role": "model"|"env", "text", "info"}
    final_info: list[dict] | None = None    # per row: last step's info + "turns", "ended"
    env_seconds: float = 0.0            # time inside Environment.step / reset
    token_budget: int = 0               # the largest episode token budget (0: the widest row)
    max_turns: int = 1                  # the largest model-turn limit among the episodes

    def __post_init__(self):
        if self.action_mask is None:
            self.action_mask = self.completion_mask
        if not self.token_budget:
            self.token_budget = self.completion_ids.shape[1]
        if self.prompt_index is None:       # siblings share their prompt
            n = self.completion_ids.shape[0]
            rows = torch.arange(n, device=self.completion_ids.device)
            self.prompt_index = rows // self.group_size * self.group_size

    @property
    def lengths(self) -> Tensor:
        """(N,) tokens after the prompt, model and environment (what a forward pass costs)."""
        return self.completion_mask.sum(dim=1)

    @property
    def model_lengths(self) -> Tensor:
        """(N,) tokens the model sampled (equal to ``lengths`` for one-turn episodes)."""
        return self.action_mask.sum(dim=1)

    def __len__(self) -> int:
        return self.completion_ids.shape[0]


def render_prompt(tokenizer, prompt, *, tools=None) -> str:
    """A dataset prompt as model input text: chats go through the chat template (which also
    announces ``tools``, function schemas, where it knows how)."""
    if isinstance(prompt, str):
        return prompt
    extra = {"tools": list(tools)} if tools else {}
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True,
                                         **extra)


def sample_token(logits: Tensor, *, temperature: float = 1.0, top_p: float = 1.0,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """One token per row from ``logits`` (B, V); returns (token ids (B,), their log-probs (B,)).

    ``temperature`` 0 means greedy. Log-probs are those of the (tempered) sampling distribution,
    which is what the policy-ratio in GRPO compares against.
    """
    if temperature == 0:
        logps = torch.log_softmax(logits.float(), dim=-1)
        ids = logits.argmax(dim=-1)
        return ids, logps.gather(1, ids[:, None]).squeeze(1)
    logps = torch.log_softmax(logits.float() / temperature, dim=-1)     # (B, V)
    probs = logps.exp()
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(-1) - sorted_p > top_p                 # keep the nucleus
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(1, order, sorted_p)
    ids = torch.multinomial(probs, 1, generator=generator).squeeze(1)   # (B,)
    return ids, logps.gather(1, ids[:, None]).squeeze(1)


def sample_group(model, tokenizer, prompts: list, *, group_size: int, max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, batch_size: int | None = None,
                 generator: torch.Generator | None = None, device=None) -> Completions:
    """Sample ``group_size`` completions for each prompt (str or chat), in batches.

    Returns ``Completions`` with ``len(prompts) * group_size`` rows, siblings adjacent.
    ``temperature=0`` decodes greedily (then ``group_size`` is usually 1).
    ``batch_size`` caps how many sequences decode together (memory); ``None`` = all at once.
    The one-turn case of ``sample_episodes``.
    """
    return sample_episodes(model, tokenizer, [{"prompt": p} for p in prompts],
                           env=SingleTurnEnv, group_size=group_size, max_new_tokens=max_new_tokens,
                           temperature=temperature, top_p=top_p, batch_size=batch_size,
                           generator=generator, device=device)


@torch.no_grad()
def sample_episodes(model, tokenizer, rows: list[dict], *,
                    env: Callable[[], Environment] = SingleTurnEnv, group_size: int,
                    max_new_tokens: int, max_turns: int | None = None,
                    max_episode_tokens: int | None = None, temperature: float = 1.0,
                    top_p: float = 1.0, batch_size: int | None = None,
                    generator: torch.Generator | None = None, device=None) -> Completions:
    """Run ``group_size`` episodes for each dataset row, all advancing together turn by turn.

    rows: dataset rows (each passed to a fresh ``env()``'s ``reset``). Returns ``Completions``
    with ``len(rows) * group_size`` rows, siblings adjacent, plus ``action_mask``, ``turns`` and
    ``final_info``.
    ``max_new_tokens`` bounds each model turn; ``max_turns`` (None: each environment's own)
    bounds the model turns; ``max_episode_tokens`` bounds model + environment tokens after the
    prompt (None: ``max_new_tokens * max_turns``). ``batch_size`` caps how many episodes run
    together (memory); ``None`` = all at once.
    """
    t0 = time.perf_counter()
    device = device or next(model.parameters()).device
    envs, firsts, env_seconds = [], [], 0.0
    for r in rows:
        for _ in range(group_size):
            t_env = time.perf_counter()
            e = env()
            firsts.append(e.reset(r))
            env_seconds += time.perf_counter() - t_env
            envs.append(e)
    texts = [render_prompt(tokenizer, p, tools=e.tool_schemas) for p, e in zip(firsts, envs)]
    chats = [not isinstance(p, str) for p in firsts]
    turn_limits = [max_turns or e.max_turns for e in envs]
    budgets = [episode_budget(max_new_tokens, n, max_episode_tokens) for n in turn_limits]
    batch_size = batch_size or len(texts)
    pieces = []
    for i in range(0, len(texts), batch_size):
        part = slice(i, i + batch_size)
        piece = _run_episodes(model, tokenizer, texts[part], envs[part], chats[part],
                              turn_limits=turn_limits[part], budgets=budgets[part],
                              max_new_tokens=max_new_tokens, temperature=temperature,
                              top_p=top_p, generator=generator, device=device)
        env_seconds += piece.pop("env_seconds")
        pieces.append(piece)
    out = _concat(pieces)
    out.prompts, out.group_size = texts, group_size
    out.prompt_index = _prompt_index(texts, group_size).to(device)
    out.env_seconds, out.token_budget = env_seconds, max(budgets, default=0)
    out.max_turns = max(turn_limits, default=1)
    out.seconds = time.perf_counter() - t0
    return out


def episode_budget(max_new_tokens: int, max_turns: int,
                   max_episode_tokens: int | None = None) -> int:
    """Tokens an episode may hold after its prompt, model and environment ones together:
    ``max_episode_tokens``, or by default ``max_new_tokens`` per model turn (for one turn,
    exactly a completion's budget). Replies are counted in it, so long replies leave the model
    less room: set ``max_episode_tokens`` for environments that talk a lot."""
    return max_episode_tokens or max_new_tokens * max_turns


def _run_episodes(model, tokenizer, prompts: list[str], envs: list[Environment], chats: list[bool],
                  *, turn_limits: list[int], budgets: list[int], max_new_tokens: int,
                  temperature: float, top_p: float, generator, device) -> dict:
    """Every episode of one batch to its end. Rows are episodes; the loop is over decode steps.

    Continuous batching across turns: a row whose turn ends leaves the running batch and waits
    (its keys/values set aside); once the waiting rows are as many as the running ones (or
    nothing runs), the environments read their turns, and the rows that go on are fed their
    reply through their kept cache and rejoin the running batch -- so a turn does not wait for
    the slowest row of the batch. One-turn episodes never rejoin: that is the single-turn loop.
    """
    from transformers import DynamicCache

    eos = _eos_ids(tokenizer, model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    B = len(prompts)
    # siblings share a prompt: prefill each distinct prompt once, then copy its cache to its rows
    unique, row_of = _distinct(prompts)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(unique, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    row_of = torch.tensor(row_of, device=device)                        # (B,) row -> distinct prompt
    unique_ids, unique_mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)  # (U, P)
    prompt_ids, prompt_mask = unique_ids[row_of], unique_mask[row_of]   # (B, P)
    eos_t = torch.tensor(eos, device=device)
    book = _Book(tokenizer, envs, chats, turn_limits=turn_limits, budgets=budgets,
                 max_new_tokens=max_new_tokens, eos=eos, pad=pad, device=device)

    was_training = model.training
    model.eval()
    cache = DynamicCache()
    positions = (unique_mask.cumsum(-1) - 1).clamp(min=0)               # (U, P)
    out = model(input_ids=unique_ids, attention_mask=unique_mask, position_ids=positions,
                past_key_values=cache, use_cache=True, logits_to_keep=1)
    cache.batch_select_indices(row_of)                                  # (U, ...) -> (B, ...)
    logits = out.logits[row_of, -1, :]                                  # (B, V)
    mask, next_pos = prompt_mask, positions[row_of, -1] + 1
    # ``live`` maps the rows decoding now to their episode rows; ``at`` is where each writes
    live = torch.arange(B, device=device)
    at = book.wpos.clone()                                              # (L,)
    keep_cache = _plain_cache(cache)
    rejoin = keep_cache and max(turn_limits) > 1
    with_stops = any(e.stop for e in envs)
    waiting: list[int] = []             # rows whose turn ended, not yet read by their environment
    stash: dict[int, tuple] = {}        # their keys/values, for those that may go on
    while True:
        if live.numel():
            ids, lp = sample_token(logits, temperature=temperature, top_p=top_p,
                                   generator=generator)
            book.tokens[live, at], book.logps[live, at] = ids, lp
            stopped = torch.isin(ids, eos_t)
            if with_stops:
                stopped |= _stop_hits(tokenizer, envs, live, book.tokens, book.start, at + 1)
            ended = stopped | (at + 1 >= book.turn_end[live])
            if bool(ended.any()):
                done = live[ended]
                book.wpos[done] = at[ended] + 1
                book.ended_by[done] = torch.where(stopped[ended], 1, 2)
                resume = ended & stopped & book.may_go_on(live)  # set aside their keys/values
                if bool(resume.any()):
                    idx = resume.nonzero().squeeze(1)
                    stash.update(_stash(cache, live, idx, mask, next_pos, keep_cache))
                waiting += done.tolist()
                keep = (~ended).nonzero().squeeze(1)    # drop the rows whose turn ended
                live, ids, mask, next_pos, at = (live[keep], ids[keep], mask[keep],
                                                 next_pos[keep], at[keep])
                if live.numel():
                    cache.batch_select_indices(keep)
            if live.numel():
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
                out = model(input_ids=ids[:, None], attention_mask=mask,
                            position_ids=next_pos[:, None], past_key_values=cache,
                            use_cache=True)
                logits = out.logits[:, -1, :]
                next_pos = next_pos + 1
                at = at + 1
        # the waiting rows' environments answer, and those that go on rejoin; without a kept
        # cache to merge (or a second turn to take) only once nothing runs: turn by turn
        if waiting and (not live.numel() or (rejoin and _rejoin_now(len(waiting),
                                                                    live.numel()))):
            go_on = book.end_turns(waiting)
            if go_on:
                rows = torch.tensor([i for i, _ in go_on], device=device)
                j_cache, j_mask, j_pos, j_logits = _resume(
                    model, go_on, stash, book.tokens, book.wpos, prompt_ids, prompt_mask,
                    pad=pad, keep_cache=keep_cache, device=device)
                book.append_replies(go_on)
                if live.numel():
                    cache, mask = _merge(cache, mask, j_cache, j_mask)
                    logits = torch.cat([logits, j_logits])                  # (L + R, V)
                    next_pos, live = torch.cat([next_pos, j_pos]), torch.cat([live, rows])
                    at = torch.cat([at, book.wpos[rows]])
                else:
                    cache, mask, logits, next_pos, live = j_cache, j_mask, j_logits, j_pos, rows
                    at = book.wpos[rows]
            for i in waiting:
                stash.pop(i, None)
            waiting = []
        if not live.numel() and not waiting:
            break
    if was_training:
        model.train()
    return {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask, **book.result()}


def _rejoin_now(waiting: int, running: int) -> bool:
    """Whether rows waiting on their environment resume now, beside ``running`` decoding rows.

    A resume is one extra forward (the replies' prefill) and a call of the environments, so
    rows are gathered until they are as many as the running ones: early enough that the batch
    does not shrink to a slow tail, rarely enough that prefills stay few (in
    ``benchmarks/episodes.py``: 4 prefills a batch, against 11 when resuming at every step)."""
    return waiting >= running


class _Book:
    """Per-episode bookkeeping of ``_run_episodes``: the episode tokens (written at each row's
    own position ``wpos``), where the current turn started and may run to, turns and endings."""

    def __init__(self, tokenizer, envs: list[Environment], chats: list[bool], *,
                 turn_limits: list[int], budgets: list[int], max_new_tokens: int,
                 eos: list[int], pad: int, device):
        B, width = len(envs), max(budgets)
        self.tokenizer, self.envs, self.chats = tokenizer, envs, chats
        self.turn_limits, self.budgets, self.max_new_tokens = turn_limits, budgets, max_new_tokens
        self.eos_t, self.pad = torch.tensor(eos, device=device), pad
        self.replies = _Replies(tokenizer, eos)
        self.tokens = torch.full((B, width), pad, dtype=torch.long, device=device)
        self.logps = torch.zeros(B, width, device=device)
        self.env = torch.zeros(B, width, dtype=torch.bool, device=device)     # reply tokens
        self.wpos = torch.zeros(B, dtype=torch.long, device=device)
        self.start = torch.zeros(B, dtype=torch.long, device=device)          # this turn's start
        self.budget_t = torch.tensor(budgets, device=device)
        self.limit = torch.clamp(self.budget_t, max=max_new_tokens)           # this turn's tokens
        self.turn_end = self.start + self.limit                               # ... end position
        self.ended_by = torch.zeros(B, dtype=torch.long, device=device)       # 1 eos/stop, 2 length
        self.model_turns = torch.zeros(B, dtype=torch.long, device=device)    # turns read so far
        self.turn_limits_t = torch.tensor(turn_limits, device=device)
        self.finished = torch.zeros(B, dtype=torch.bool, device=device)
        self.turns: list[list[dict]] = [[] for _ in range(B)]
        self.final: list[dict] = [{} for _ in range(B)]
        self.env_seconds = 0.0

    def may_go_on(self, rows: Tensor) -> Tensor:
        """(R,) whether the turn now ending in each row leaves the episode another turn."""
        return self.model_turns[rows] + 1 < self.turn_limits_t[rows]

    def end_turns(self, rows: list[int]) -> list[tuple[int, list[int]]]:
        """The environments read the turns that ended in ``rows``; returns (row, reply ids) for
        the episodes that go on (the others get their final info)."""
        at = torch.tensor(rows, device=self.wpos.device)
        self.model_turns[at] += 1
        self.finished[at] = self.ended_by[at] == 1
        # per-row facts as plain lists: one transfer each, not one per row
        start, end, by, limit, turns_so_far = (t[at].tolist() for t in (
            self.start, self.wpos, self.ended_by, self.limit, self.model_turns))
        last = self.tokens[at, self.wpos[at] - 1].tolist()
        eos = set(self.eos_t.tolist())
        texts = self.tokenizer.batch_decode(
            [self.tokens[i, a:b] for i, a, b in zip(rows, start, end)], skip_special_tokens=True)
        t_env = time.perf_counter()
        steps = _step_all([self.envs[i] for i in rows], texts)
        self.env_seconds += time.perf_counter() - t_env
        go_on: list[tuple[int, list[int]]] = []
        for k, (i, text, step) in enumerate(zip(rows, texts, steps)):
            self.turns[i].append({"role": "model", "text": text, "info": dict(step.info)})
            n_model = turns_so_far[k]
            ending = (("budget" if limit[k] < self.max_new_tokens else "length") if by[k] == 2
                      else "done" if step.done
                      else "max_turns" if n_model >= self.turn_limits[i] else None)
            reply = []
            if ending is None:
                reply = self.replies.ids(step.feedback, self.envs[i], chat=self.chats[i],
                                         after_eos=last[k] in eos)
                if end[k] + len(reply) + 1 > self.budgets[i]:
                    ending = "budget"                   # no room for the reply and a model token
            if ending is not None:
                self.final[i] = {**step.info, "turns": n_model, "ended": ending}
                continue
            self.turns[i].append({"role": "env", "text": step.feedback or "", "info": {}})
            go_on.append((i, reply))
        return go_on

    def append_replies(self, go_on: list[tuple[int, list[int]]]) -> None:
        """Write each reply after its row's turn; the next turn starts after it."""
        for i, reply in go_on:
            a, n = int(self.wpos[i]), len(reply)
            self.tokens[i, a:a + n] = torch.tensor(reply, dtype=torch.long,
                                                   device=self.tokens.device)
            self.env[i, a:a + n] = True
            self.wpos[i] += n
        rows = torch.tensor([i for i, _ in go_on], device=self.wpos.device)
        self.start[rows] = self.wpos[rows]
        self.limit[rows] = torch.clamp(self.budget_t[rows] - self.wpos[rows],
                                       max=self.max_new_tokens)
        self.turn_end[rows] = self.start[rows] + self.limit[rows]

    def result(self) -> dict:
        steps = int(self.wpos.max())
        completion_mask = (torch.arange(steps, device=self.wpos.device)[None, :]
                           < self.wpos[:, None]).long()                  # (B, T)
        return {"completion_ids": self.tokens[:, :steps], "completion_mask": completion_mask,
                "action_mask": completion_mask * (~self.env[:, :steps]).long(),
                "sample_logps": self.logps[:, :steps], "finished": self.finished,
                "pad": self.pad,
                "turns": self.turns, "final_info": self.final, "env_seconds": self.env_seconds}


def _step_all(envs: list[Environment], texts: list[str]) -> list[Step]:
    """Each environment's reply to its turn; in threads when every one of them allows it."""
    if len(envs) > 1 and all(e.concurrent for e in envs):
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(len(envs), os.cpu_count() or 1)) as pool:
            steps = list(pool.map(lambda pair: pair[0].step(pair[1]), zip(envs, texts)))
    else:
        steps = [e.step(t) for e, t in zip(envs, texts)]
    for e, step in zip(envs, steps):
        if not isinstance(step, Step):
            raise TypeError(f"{type(e).__name__}.step must return a Step, got "
                            f"{type(step).__name__}")
    return steps


def _stop_hits(tokenizer, envs: list[Environment], live: Tensor, tokens: Tensor, start: Tensor,
               ends: Tensor) -> Tensor:
    """(L,) True where the turn of live row ``i`` (tokens ``start[i]:ends[j]``) now contains one
    of its environment's stop strings."""
    hits = torch.zeros(live.numel(), dtype=torch.bool, device=live.device)
    for j, (i, end) in enumerate(zip(live.tolist(), ends.tolist())):
        stops = envs[i].stop
        if not stops:
            continue
        # a stop string shows within its length in tokens (each token decodes to >= 1 character)
        back = max(len(s) for s in stops) + 2
        a = max(int(start[i]), end - back)
        tail = tokenizer.decode(tokens[i, a:end], skip_special_tokens=True)
        hits[j] = any(s in tail for s in stops)
    return hits


def _plain_cache(cache) -> bool:
    """Whether a turn's keys/values can be set aside and joined later (plain full-attention
    layers). Other caches (sliding windows, ...) re-prefill each new turn instead."""
    from transformers.cache_utils import DynamicLayer

    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


def _stash(cache, live: Tensor, idx: Tensor, mask: Tensor, next_pos: Tensor,
           keep_cache: bool) -> dict[int, tuple]:
    """Episode row -> (per-layer (keys, values) of shape (H, L, D), mask (L,), next position)."""
    # copy the rows out (index_select), so the stash does not hold the whole batch's tensors
    kv = [(layer.keys[idx], layer.values[idx]) for layer in cache.layers] if keep_cache else None
    return {int(live[j]): ([(k[r], v[r]) for k, v in kv] if kv else None, mask[j], int(next_pos[j]))
            for r, j in enumerate(idx.tolist())}


def _resume(model, go_on: list[tuple[int, list[int]]], stash: dict, tokens: Tensor, wpos: Tensor,
            prompt_ids: Tensor, prompt_mask: Tensor, *, pad: int, keep_cache: bool, device):
    """Feed each continuing episode's last token + environment reply; returns the new cache,
    attention mask (R, L), next positions (R,) and next-token logits (R, V).

    With a kept cache the chunk is ``[last token] + reply``; without, the whole episode so far
    (prompt, turns, reply) is prefilled again. Chunks are right-aligned (left padding, masked).
    """
    from transformers import DynamicCache

    chunks, starts, past = [], [], []
    for i, reply in go_on:
        last = tokens[i, int(wpos[i]) - 1:int(wpos[i])].tolist()
        if keep_cache:
            kv, m, pos = stash[i]
            chunks.append(last + reply)
            starts.append(pos)
            past.append((kv, m))
        else:
            prompt = prompt_ids[i][prompt_mask[i] == 1].tolist()
            chunks.append(prompt + tokens[i, :int(wpos[i])].tolist() + reply)
            starts.append(0)
    R, E = len(chunks), max(len(c) for c in chunks)
    ids = torch.full((R, E), pad, dtype=torch.long, device=device)
    chunk_mask = torch.zeros(R, E, dtype=torch.long, device=device)
    positions = torch.zeros(R, E, dtype=torch.long, device=device)
    for r, (c, s) in enumerate(zip(chunks, starts)):
        n = len(c)
        ids[r, E - n:] = torch.tensor(c, device=device)
        chunk_mask[r, E - n:] = 1
        positions[r, E - n:] = torch.arange(s, s + n, device=device)
    if keep_cache:
        L = max(m.shape[0] for _, m in past)
        past_mask = torch.zeros(R, L, dtype=torch.long, device=device)
        layers = []
        for li in range(len(past[0][0])):
            k0, v0 = past[0][0][li]
            keys = k0.new_zeros((R, k0.shape[0], L, k0.shape[2]))       # (R, H, L, D)
            values = v0.new_zeros((R, v0.shape[0], L, v0.shape[2]))
            for r, (kv, m) in enumerate(past):
                n = m.shape[0]
                keys[r, :, L - n:], values[r, :, L - n:] = kv[li]
            layers.append((keys, values))
        for r, (_, m) in enumerate(past):
            past_mask[r, L - m.shape[0]:] = m
        lead = int((past_mask.cumsum(1) == 0).sum(1).min())             # columns all padding
        past_mask = past_mask[:, lead:]
        cache = DynamicCache(ddp_cache_data=[(k[:, :, lead:], v[:, :, lead:]) for k, v in layers])
    else:
        past_mask = torch.zeros(R, 0, dtype=torch.long, device=device)
        cache = DynamicCache()
    mask = torch.cat([past_mask, chunk_mask], dim=1)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                past_key_values=cache, use_cache=True, logits_to_keep=1)
    next_pos = positions[:, -1] + 1
    return cache, mask, next_pos, out.logits[:, -1, :]


def _merge(cache, mask: Tensor, other, other_mask: Tensor):
    """The running rows' cache and mask (L, W) joined by rows resumed apart (R, W'): both
    right-aligned (left-padded, masked) to one width, leading all-padding columns dropped."""
    from transformers import DynamicCache

    W = max(mask.shape[1], other_mask.shape[1])

    def left_pad(t: Tensor, width: int, dim: int) -> Tensor:
        if t.shape[dim] == width:
            return t
        shape = list(t.shape)
        shape[dim] = width - t.shape[dim]
        return torch.cat([t.new_zeros(shape), t], dim=dim)

    joined = torch.cat([left_pad(mask, W, 1), left_pad(other_mask, W, 1)])     # (L + R, W)
    lead = int((joined.cumsum(1) == 0).sum(1).min())                    # columns all padding
    layers = [(torch.cat([left_pad(a.keys, W, 2), left_pad(b.keys, W, 2)])[:, :, lead:],
               torch.cat([left_pad(a.values, W, 2), left_pad(b.values, W, 2)])[:, :, lead:])
              for a, b in zip(cache.layers, other.layers)]              # (L + R, H, W, D) each
    return DynamicCache(ddp_cache_data=layers), joined[:, lead:]


class _Replies:
    """Environment feedback -> token ids, rendered once per role by the chat template.

    For a chat, the reply is what the template adds after the model's message when a message
    ``{"role": feedback_role, "content": feedback}`` follows it, up to the next assistant
    header -- found as the difference of two renderings, so any prefix-preserving template works.
    The feedback itself is tokenised with special tokens split, so text cannot forge a turn.
    """

    def __init__(self, tokenizer, eos: list[int]):
        self.tokenizer = tokenizer
        self.eos_texts = [tokenizer.decode([e]) for e in eos]
        self.frames: dict[str, tuple[str, str, str]] = {}
        self.seen: dict[tuple, list[int]] = {}       # (feedback, role, after_eos) -> ids

    def ids(self, feedback: str | None, env: Environment, *, chat: bool, after_eos: bool) -> list[int]:
        role = env.feedback_role if chat else None
        key = (feedback or "", role, after_eos)
        if key not in self.seen:                      # the same reply is tokenised once
            self.seen[key] = self._render(*key)
        return self.seen[key]

    def _render(self, text: str, role: str | None, after_eos: bool) -> list[int]:
        if role is None:                              # inline, right after the model's text
            return self._encode(text, split=True)
        closing, opener, tail = self._frame(role)
        if after_eos:                                 # the model already wrote the EOS part
            closing = next((closing[len(e):] for e in self.eos_texts if closing.startswith(e)),
                           closing)
        return (self._encode(closing + opener, split=False) + self._encode(text, split=True)
                + self._encode(tail, split=False))

    def _encode(self, text: str, *, split: bool) -> list[int]:
        if not text:
            return []
        return self.tokenizer(text, add_special_tokens=False,
                              split_special_tokens=split)["input_ids"]

    def _frame(self, role: str) -> tuple[str, str, str]:
        if role not in self.frames:
            u, a, f = "\x01U\x01", "\x01A\x01", "\x01F\x01"
            chat = [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
            base = self.tokenizer.apply_chat_template(chat, tokenize=False)
            full = self.tokenizer.apply_chat_template(chat + [{"role": role, "content": f}],
                                                      tokenize=False, add_generation_prompt=True)
            if not full.startswith(base) or f not in full[len(base):]:
                raise ValueError(
                    f"the chat template does not extend a conversation by appending (a message "
                    f"with role {role!r} changes what came before), so environment replies cannot "
                    "be appended as tokens; use a prefix-preserving template or feedback_role=None")
            opener, tail = full[len(base):].split(f, 1)
            self.frames[role] = (base[base.rindex(a) + len(a):], opener, tail)
        return self.frames[role]


def _prompt_index(texts: list[str], group_size: int) -> Tensor:
    """(N,) the first row of each sibling group whose prompts all match, else the row itself."""
    index = []
    for g in range(0, len(texts), group_size):
        same = len(set(texts[g:g + group_size])) == 1
        index += [g if same else g + k for k in range(len(texts[g:g + group_size]))]
    return torch.tensor(index)


def _distinct(items: list) -> tuple[list, list[int]]:
    """The distinct items in first-seen order, and for each item the index of its distinct one."""
    index: dict = {}
    row_of = [index.setdefault(x, len(index)) for x in items]
    return list(index), row_of


def _concat(pieces: list[dict]) -> Completions:
    pad = pieces[0]["pad"]

    def cat(key: str, left: bool, value) -> Tensor:
        width = max(p[key].shape[1] for p in pieces)
        padded = []
        for p in pieces:
            t = p[key]
            fill = torch.full((t.shape[0], width - t.shape[1]), value, dtype=t.dtype, device=t.device)
            padded.append(torch.cat([fill, t] if left else [t, fill], dim=1))
        return torch.cat(padded, dim=0)

    turns = [t for p in pieces for t in p["turns"]]
    texts = ["\n".join(t["text"] for t in episode if t["role"] == "model") for episode in turns]
    return Completions(
        prompt_ids=cat("prompt_ids", True, pad), prompt_mask=cat("prompt_mask", True, 0),
        completion_ids=cat("completion_ids", False, pad),
        completion_mask=cat("completion_mask", False, 0),
        sample_logps=cat("sample_logps", False, 0.0), texts=texts, prompts=[], group_size=1,
        finished=torch.cat([p["finished"] for p in pieces]),
        action_mask=cat("action_mask", False, 0), turns=turns,
        final_info=[f for p in pieces for f in p["final_info"]])


def _eos_ids(tokenizer, model) -> list[int]:
    ids = set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (tokenizer.eos_token_id, gen_eos):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(value)
    if not ids:
        raise ValueError("the tokenizer has no eos_token: set tokenizer.eos_token so sampling can stop")
    return sorted(ids)
