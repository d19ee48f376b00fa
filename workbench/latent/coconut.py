"""Continuous thoughts (Coconut, Hao et al. 2024, arXiv 2412.06769) on a tiny Qwen2 model.

A chain of thought costs one token per step of reasoning, and each token squeezes the model's
state through a single word. Coconut skips the squeeze: after ``<bot>`` the model's *last hidden
state* (after the final norm) is fed straight back as the next input embedding, ``n`` times, then
``<eot>`` and the answer follow as ordinary tokens::

    prompt <bot> [h1] [h2] [h3] <eot> <answer>20</answer>
                  ^ each [h] is the hidden state the model produced one position earlier

Training uses a curriculum (``train_curriculum``): stage 0 is the ordinary chain of thought (with
an empty ``<bot><eot>``); at stage k the first k written steps are replaced by ``k * c`` thoughts
(positions holding the ``<latent>`` token, whose embedding is overwritten); the loss covers only
what stays visible (remaining steps and answer), never the question, markers or thoughts. The
optimiser is reset at each stage, as in the paper.

Three models come out of one build (``ensure_coconut_models``), all from the same stage-0 model:

- ``"cot"``: the stage-0 model, writing every step;
- ``"coconut"``: the curriculum with ``c`` thoughts per step;
- ``"nocot"``: the same curriculum with no thoughts (steps removed, nothing in their place), so it
  ends answering directly -- the control that isolates what the thoughts add.

Differences from the paper, all from scale: a 0.5M-parameter model trained from scratch in under
a minute, two synthetic tasks (3-term sums; ProsQA-style reachability with 2 hops), no
``uniform_prob`` stage mixing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

BOT, EOT, LATENT = "<bot>", "<eot>", "<latent>"
MODES = ("nocot", "cot", "coconut")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class CoconutSpec:
    """Everything that determines the three Coconut-arm models; its hash names the cache folder."""

    tasks: tuple[str, ...] = ("sum", "reach")
    sum_terms: int = 3                # 3 terms -> 2 written steps
    reach_hops: int = 2               # 2 hops -> 2 written steps
    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 3
    num_heads: int = 4
    num_kv_heads: int = 2
    vocab_size: int = 290             # small: node letters stay single tokens (check_node_names)
    max_positions: int = 256
    corpus_size: int = 6000           # training problems (held-out ones never appear)
    c_thought: int = 1                # thoughts per replaced step (paper: 1 ProsQA, 2 GSM8K)
    max_latent_stage: int = 2         # stages 1..2; at stage 2 every step is a thought
    cot_steps: int = 320              # stage 0 (chain of thought) optimiser steps
    stage_steps: int = 60             # optimiser steps per later stage
    batch_size: int = 16              # small batches, more steps: more learnt per CPU second
    learning_rate: float = 5e-3       # stage 0
    stage_learning_rate: float = 1e-3  # stages >= 1 (fresh optimiser each stage)
    init_std: float = 0.1             # about 1/sqrt(hidden); see build_coconut_models
    seed: int = 0

    def key(self) -> str:
        blob = json.dumps([FORMAT_VERSION, dataclasses.asdict(self)], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def n_thoughts(self) -> int:
        """Thoughts the final Coconut model uses: every step replaced, ``c`` per step."""
        return self.max_latent_stage * self.c_thought

    def writers(self) -> list:
        from ..tasks import ReachTask, SumTask

        make = {"sum": lambda: SumTask(n_terms=self.sum_terms),
                "reach": lambda: ReachTask(hops=self.reach_hops)}
        unknown = set(self.tasks) - set(make)
        if unknown:
            raise ValueError(f"unknown task(s) {sorted(unknown)}; choose from {sorted(make)}")
        return [make[name]() for name in self.tasks]


@dataclass(frozen=True)
class Worked:
    """One problem as token pieces: the curriculum cuts ``steps`` from the front."""

    prompt: tuple[int, ...]           # chat prompt, ends with "<|im_start|>assistant\n"
    steps: tuple[tuple[int, ...], ...]  # one written step each, newline included
    answer: tuple[int, ...]           # "<answer>..</answer>" + eos
    gold: str


@dataclass(frozen=True)
class LatentAnswer:
    """What ``answer_with_thoughts`` returns for one prompt."""

    text: str                         # decoded visible completion (steps if any, then answer)
    n_thoughts: int                   # continuous thoughts used (forward passes, no tokens)
    n_tokens: int                     # visible tokens generated (eos included)
    thoughts: object                  # (n_thoughts, hidden) tensor: the fed-back states
    token_ids: tuple[int, ...] = ()   # the visible tokens written (what GRPO scores)

    @property
    def generated(self) -> int:
        """Generated positions, thoughts included (the paper's "# tokens")."""
        return self.n_thoughts + self.n_tokens


# ---------------------------------------------------------------------------------------------
# 1. the feedback loop
# ---------------------------------------------------------------------------------------------

def latent_step(model, thought, *, cache, attention_mask, position_ids):
    """One continuous thought: feed ``thought`` as the next input embedding, return the next one.

    thought: (B, H), the last hidden state (after the final norm) of the previous position.
    cache: the ``DynamicCache`` holding every earlier position; it grows by one.
    attention_mask: (B, past + 1), ones for real positions (left padding is zeros).
    position_ids: (B, 1). Returns (B, H).
    """
    out = model.model(inputs_embeds=thought[:, None, :], attention_mask=attention_mask,
                      position_ids=position_ids, past_key_values=cache, use_cache=True)
    return out.last_hidden_state[:, -1]                               # (B, H)


def forward_with_thoughts(model, input_ids, attention_mask, *, latent_start: int, n_latent: int):
    """Logits for the visible tail of a batch whose ``n_latent`` thoughts start at column
    ``latent_start`` (the same column in every row: prompts are left-padded).

    input_ids, attention_mask: (B, T). Returns (logits (B, T - latent_start - n_latent, V) for the
    positions from ``<eot>`` on, and the thoughts (B, n_latent, H)). Gradients flow through every
    thought, back into the prompt's keys and values (as in the paper, no truncation).
    """
    import torch
    from transformers import DynamicCache

    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)          # (B, T)
    embeds = model.get_input_embeddings()(input_ids)                  # (B, T, H)
    cache = DynamicCache()
    tail = latent_start + n_latent
    prefix = model.model(inputs_embeds=embeds[:, :latent_start],
                         attention_mask=attention_mask[:, :latent_start],
                         position_ids=positions[:, :latent_start], past_key_values=cache,
                         use_cache=True).last_hidden_state
    thought, thoughts = prefix[:, -1], []
    for j in range(latent_start, tail):
        thoughts.append(thought)
        thought = latent_step(model, thought, cache=cache, attention_mask=attention_mask[:, :j + 1],
                              position_ids=positions[:, j:j + 1])
    hidden = model.model(inputs_embeds=embeds[:, tail:], attention_mask=attention_mask,
                         position_ids=positions[:, tail:], past_key_values=cache,
                         use_cache=True).last_hidden_state            # (B, T - tail, H)
    stacked = torch.stack(thoughts, 1) if thoughts else embeds[:, :0]
    return model.lm_head(hidden), stacked


def answer_with_thoughts(model, tokenizer, prompts: list[list[dict]], *, n_thoughts: int,
                         max_new_tokens: int = 40, device=None, temperature: float = 0.0,
                         generator=None) -> list[LatentAnswer]:
    """Greedy answers after ``n_thoughts`` continuous thoughts (0: plain greedy decoding);
    ``temperature`` > 0 samples the visible tokens instead (the thoughts stay deterministic).

    prompts: chats (``[{"role": "user", "content": ...}]``). The model reads
    ``prompt <bot>``, thinks ``n_thoughts`` times through the KV cache (one position each, no
    token), reads ``<eot>`` and writes greedily until ``<|im_end|>``. Returns one
    ``LatentAnswer`` per prompt.
    """
    import torch
    from transformers import DynamicCache

    from ..rollouts import sample_token

    device = device or next(model.parameters()).device
    bot, eot = tokenizer.convert_tokens_to_ids([BOT, EOT])
    rows = [encode_prompt(tokenizer, p) + [bot] for p in prompts]
    width = max(map(len, rows))
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    embed = model.get_input_embeddings()
    cache = DynamicCache()
    next_pos = mask.sum(-1, keepdim=True)                             # (B, 1)
    with torch.no_grad():
        h = model.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1)
                        .clamp(min=0), past_key_values=cache, use_cache=True).last_hidden_state
        thought, thoughts = h[:, -1], []
        for _ in range(n_thoughts):
            thoughts.append(thought)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            thought = latent_step(model, thought, cache=cache, attention_mask=mask,
                                  position_ids=next_pos)
            next_pos = next_pos + 1
        token = torch.full_like(next_pos, eot)                        # (B, 1)
        written, done = [], torch.zeros(len(rows), dtype=torch.bool, device=device)
        for _ in range(max_new_tokens):
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            h = model.model(inputs_embeds=embed(token), attention_mask=mask, position_ids=next_pos,
                            past_key_values=cache, use_cache=True).last_hidden_state
            next_pos = next_pos + 1
            ids, _ = sample_token(model.lm_head(h[:, -1]), temperature=temperature,
                                  generator=generator)                # (B,): 0 = greedy
            token = ids[:, None]                                      # (B, 1)
            written.append(torch.where(done[:, None], tokenizer.pad_token_id, token))
            done |= token[:, 0] == tokenizer.eos_token_id
            if done.all():
                break
    out = torch.cat(written, 1).tolist()
    stacked = torch.stack(thoughts, 1) if thoughts else h.new_zeros(len(rows), 0, h.shape[-1])
    answers = []
    for row, toks in enumerate(out):
        toks = [t for t in toks if t != tokenizer.pad_token_id]
        answers.append(LatentAnswer(
            text=tokenizer.decode(toks, skip_special_tokens=True), n_thoughts=n_thoughts,
            n_tokens=len(toks), thoughts=stacked[row].cpu(), token_ids=tuple(toks)))
    return answers


def encode_prompt(tokenizer, prompt: list[dict]) -> list[int]:
    """Token ids of a chat prompt with the assistant turn opened (the chat template's text)."""
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def nearest_tokens(model, tokenizer, thoughts, *, k: int = 3) -> list[list[tuple[str, float]]]:
    """For each thought (n, H): the ``k`` tokens whose input embeddings are closest in cosine.

    The paper reads its thoughts this way (its Figure 4): a thought that sits near ``180`` and
    ``9`` is "thinking" about those values. Returns, per thought, ``[(token, cosine), ...]``.
    """
    import torch

    table = torch.nn.functional.normalize(model.get_input_embeddings().weight.detach(), dim=-1)
    sims = torch.nn.functional.normalize(thoughts.to(table), dim=-1) @ table.T   # (n, V)
    top = sims.topk(k, dim=-1)
    return [[(tokenizer.convert_ids_to_tokens(int(i)), round(float(s), 3))
             for s, i in zip(vals, idx)] for vals, idx in zip(top.values, top.indices)]


# ---------------------------------------------------------------------------------------------
# 2. the curriculum
# ---------------------------------------------------------------------------------------------

def worked_example(tokenizer, writer, problem) -> Worked:
    """Tokenise a problem's prompt, each written step, and the answer separately."""
    row = writer.row(problem)
    steps = tuple(tuple(tokenizer(s + "\n", add_special_tokens=False)["input_ids"])
                  for s in writer.worked_steps(problem))
    answer = tokenizer(f"<answer>{row['answer']}</answer>", add_special_tokens=False)["input_ids"]
    return Worked(prompt=tuple(encode_prompt(tokenizer, row["prompt"])), steps=steps,
                  answer=tuple(answer) + (tokenizer.eos_token_id,), gold=row["answer"])


def stage_sequence(ex: Worked, *, stage: int, c_thought: int, ids: dict) -> tuple[list, list]:
    """(input ids, labels) of ``ex`` at curriculum ``stage``: the first ``stage`` steps become
    ``stage * c_thought`` ``<latent>`` positions between ``<bot>`` and ``<eot>``; labels are -100
    on the prompt, the markers and the thoughts."""
    visible = [t for step in ex.steps[stage:] for t in step] + list(ex.answer)
    hidden = [ids[BOT]] + [ids[LATENT]] * (stage * c_thought) + [ids[EOT]]
    return (list(ex.prompt) + hidden + visible,
            [-100] * (len(ex.prompt) + len(hidden)) + visible)


def collate(pairs: list[tuple[list, list]], *, prompt_lens: list[int], pad_id: int):
    """Left-pad so every prompt ends at the same column (the thoughts then share columns), then
    right-pad to the longest row. Returns input_ids, attention_mask, labels (B, T) and the column
    right after ``<bot>``."""
    import torch

    lead = max(prompt_lens)
    width = max(lead - n + len(ids) for (ids, _), n in zip(pairs, prompt_lens))
    input_ids = torch.full((len(pairs), width), pad_id)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    labels = torch.full((len(pairs), width), -100)
    for row, ((ids, lab), n) in enumerate(zip(pairs, prompt_lens)):
        s = lead - n
        input_ids[row, s:s + len(ids)] = torch.tensor(ids)
        mask[row, s:s + len(ids)] = 1
        labels[row, s:s + len(ids)] = torch.tensor(lab)
    return input_ids, mask, labels, lead + 1


def curriculum_loss(model, batch: list[Worked], *, stage: int, c_thought: int, ids: dict, pad_id: int):
    """Mean next-token loss over the visible tail of ``batch`` at ``stage``."""
    import torch

    pairs = [stage_sequence(ex, stage=stage, c_thought=c_thought, ids=ids) for ex in batch]
    input_ids, mask, labels, start = collate(pairs, prompt_lens=[len(ex.prompt) for ex in batch],
                                             pad_id=pad_id)
    n_latent = stage * c_thought
    logits, _ = forward_with_thoughts(model, input_ids, mask, latent_start=start,
                                      n_latent=n_latent)                # (B, T - tail, V)
    target = labels[:, start + n_latent + 1:]                         # what each position predicts
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), target.flatten())


def train_curriculum(model, examples: list[Worked], *, stages: list[int], steps: int, lr: float,
                     c_thought: int, batch_size: int, ids: dict, pad_id: int, seed: int,
                     progress=None, desc: str = "") -> list[float]:
    """Train ``steps`` optimiser steps at each stage in ``stages`` (fresh AdamW each stage,
    warm-up then linear decay). Returns the mean loss of each stage's last 20 steps."""
    import torch

    rng = random.Random(seed)
    finals = []
    for stage in stages:
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
        warm = max(1, steps // 10)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min((s + 1) / warm, max(0.05, (steps - s) / max(1, steps - warm))))
        bar = range(steps)
        if progress is not None:
            bar = progress(bar, desc=f"{desc} stage {stage}", leave=False)
        model.train()
        losses = []
        for _ in bar:
            batch = [examples[rng.randrange(len(examples))] for _ in range(batch_size)]
            loss = curriculum_loss(model, batch, stage=stage, c_thought=c_thought, ids=ids,
                                   pad_id=pad_id)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
        finals.append(round(sum(losses[-20:]) / len(losses[-20:]), 4))
    model.eval()
    return finals


# ---------------------------------------------------------------------------------------------
# 3. build, cache, load
# ---------------------------------------------------------------------------------------------

def coconut_path(spec: CoconutSpec | None = None) -> Path:
    from ..tiny import cache_root

    return cache_root() / f"coconut-{(spec or CoconutSpec()).key()}"


def ensure_coconut_models(spec: CoconutSpec | None = None, *, verbose: bool = True) -> Path:
    """Folder holding ``cot/``, ``nocot/`` and ``coconut/`` for ``spec``: built on first use
    (about 50 s on a quiet 2-core machine), then cached; several processes may call it at once."""
    from ..tiny import cached_build

    spec = spec or CoconutSpec()
    return cached_build(coconut_path(spec), lambda out: build_coconut_models(out, spec,
                                                                             verbose=verbose))


def load_coconut(mode: str = "coconut", spec: CoconutSpec | None = None, *, device=None,
                 verbose: bool = True):
    """(model, tokenizer) of one mode: ``"cot"``, ``"nocot"`` or ``"coconut"``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    folder = ensure_coconut_models(spec, verbose=verbose) / mode
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    return (model.to(device) if device else model), AutoTokenizer.from_pretrained(folder)


def check_node_names(tokenizer) -> None:
    """Refuse a tokenizer that merges a graph node's name with ``>`` or a space.

    Qwen2's pre-tokeniser lets one punctuation mark lead a run of letters, so a large BPE
    vocabulary learns ``>d`` for frequent nodes only: ``s>d`` becomes ``s``, ``>d`` while ``g>t``
    stays ``g``, ``>``, ``t``, and looking an edge up turns into a different task per letter.
    Last session's reach models never learned it. A small vocabulary keeps every name one token.
    """
    from ..tasks import ReachTask

    names = ReachTask.NAMES
    text = " ".join(f"{a}>{b}" for a, b in zip(names, names[1:] + names[0]))
    pieces = [p for p in tokenizer.tokenize(text) if p not in ("Ġ", ">")]
    if pieces != list(text.replace(" ", "").replace(">", "")):
        merged = sorted({p for p in pieces if len(p) > 1})
        raise ValueError(f"vocab_size is too large: node names merge into {merged[:8]}; lower it "
                         "so every letter stays one token")


def problems(spec: CoconutSpec, *, n_test: int = 200) -> dict:
    """Held-out problems per task (fixed by the task's seed, never trained on)."""
    return {w.name: (w, w.split(0, n_test)[1]) for w in spec.writers()}


def training_problems(writers: list, n: int, rng: random.Random) -> list[tuple]:
    """``n`` (writer, problem) pairs, tasks taking turns, none of them a held-out problem."""
    held_out = {(w.name, p) for w in writers for p in w.split(0, 200)[1]}
    drawn = []
    while len(drawn) < n:
        w = writers[len(drawn) % len(writers)]
        p = w.sample_problem(rng)
        if (w.name, p) not in held_out:
            drawn.append((w, p))
    return drawn


def build_coconut_models(out: str | Path, spec: CoconutSpec | None = None, *,
                         verbose: bool = True) -> dict:
    """Train the tokenizer, stage 0 (CoT), then the two curricula; save the three models."""
    import copy

    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..tiny import _seeded, render_chat, tiny_config, train_tokenizer

    spec = spec or CoconutSpec()
    out = Path(out)
    t0 = time.time()
    if verbose:
        print(f"Building the Coconut models (cot, nocot, coconut) on {'+'.join(spec.tasks)}: "
              "about 50 s on a quiet 2-core machine, once; cached in", coconut_path(spec))
    drawn = training_problems(spec.writers(), spec.corpus_size, random.Random(spec.seed))
    texts = [render_chat(w.row(p)["prompt"], w.solution(p)) for w, p in drawn]
    tok = train_tokenizer(texts, spec.vocab_size)
    check_node_names(tok)
    tok.add_tokens([BOT, EOT, LATENT], special_tokens=True)
    (out / "cot").mkdir(parents=True)
    tok.save_pretrained(out / "cot")
    tok = AutoTokenizer.from_pretrained(out / "cot")   # train on the ids every user will see
    ids = dict(zip((BOT, EOT, LATENT), tok.convert_tokens_to_ids([BOT, EOT, LATENT])))
    examples = [worked_example(tok, w, p) for w, p in drawn]
    cfg = tiny_config(spec, tok)
    # transformers' default std 0.02 leaves the tied embeddings too small to learn, within this
    # budget, to copy a node letter from the prompt: at 0.02 the reach models answered one letter
    # to every graph (benchmarks/README.md, latent section); at 0.1 they name an option.
    cfg.initializer_range = spec.init_std
    with _seeded(spec.seed):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    common = dict(c_thought=spec.c_thought, batch_size=spec.batch_size, ids=ids,
                  pad_id=tok.pad_token_id, progress=tqdm if verbose else None)
    with _seeded(spec.seed + 1):
        info = {"cot_loss": train_curriculum(model, examples, stages=[0], steps=spec.cot_steps,
                                             lr=spec.learning_rate, seed=spec.seed, desc="CoT",
                                             **common)}
    model.save_pretrained(out / "cot")
    later = list(range(1, spec.max_latent_stage + 1))
    for mode, c in (("coconut", spec.c_thought), ("nocot", 0)):
        branch = copy.deepcopy(model)
        with _seeded(spec.seed + 2):
            info[f"{mode}_loss"] = train_curriculum(
                branch, examples, stages=later, steps=spec.stage_steps, lr=spec.stage_learning_rate,
                seed=spec.seed + 3, desc=mode, **{**common, "c_thought": c})
        branch.save_pretrained(out / mode)
        tok.save_pretrained(out / mode)
    info.update(spec=dataclasses.asdict(spec), parameters=sum(p.numel() for p in model.parameters()),
                vocab=len(tok), seconds=round(time.time() - t0, 1), torch=torch.__version__)
    (out / "build_info.json").write_text(json.dumps(info, indent=2))
    if verbose:
        print(f"Built in {info['seconds']} s: {info['parameters'] / 1e6:.2f}M parameters each; "
              f"final losses cot {info['cot_loss'][-1]}, coconut {info['coconut_loss'][-1]}, "
              f"nocot {info['nocot_loss'][-1]}")
    return info


def evaluate_mode(model, tokenizer, writer, problems_: list, *, n_thoughts: int,
                  batch_size: int = 100, max_new_tokens: int = 40) -> dict:
    """Held-out accuracy (scored by ``verifiers.verify_math``, as for any completion) and mean
    generated positions of one model on ``problems_``."""
    from verifiers import verify_math

    answers = []
    for i in range(0, len(problems_), batch_size):
        chunk = problems_[i:i + batch_size]
        answers += answer_with_thoughts(model, tokenizer, [writer.row(p)["prompt"] for p in chunk],
                                        n_thoughts=n_thoughts, max_new_tokens=max_new_tokens)
    correct = [verify_math(a.text, writer.gold(p)).correct for a, p in zip(answers, problems_)]
    return {"accuracy": sum(correct) / len(correct),
            "tokens": sum(a.n_tokens for a in answers) / len(answers),
            "generated": sum(a.generated for a in answers) / len(answers),
            "answers": answers}
