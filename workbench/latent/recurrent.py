"""Recurrent depth (Geiping et al. 2025, arXiv 2502.05171, "Huginn") on the tiny scale.

Instead of writing more tokens, think *deeper*: the same core block runs r times over a latent
state, so compute grows with r while the parameter count does not::

    e = prelude(embed(tokens))                 # read the input once
    s_0 = 0                                    # (Huginn: noise; ``state_noise`` trains so)
    s_i = core(adapter([s_{i-1}, e]))          # i = 1..r, the input re-injected every time
    logits = coda(s_r)

Training samples r afresh every step (``sample_iterations``: a log-normal Poisson, mean about
``mean_iterations``, as in ``recpre``'s ``randomized_iteration_sampler``) and back-propagates
through the last ``backprop_depth`` iterations only, so memory stays flat however large r is.
At test time r is free: ``forward(iterations=r)``. The adaptive exit (``forward_adaptive``) lets
each position stop on its own, once its next-token distribution stops changing: the KL between
iterations i and i-1 falls below ``threshold``. An exited position keeps its state (later positions
still attend to it, like Huginn's "deepest cache available") and its logits.

The model is a small stand-alone ``torch.nn.Module`` (prelude 1, core 2, coda 1 blocks of
sandwich-normed causal attention + SwiGLU MLP, tied embeddings), trained to answer directly (no
written steps) on the same tasks as the Coconut arm, using the tiny model's tokenizer recipe.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

FORMAT_VERSION = 2                  # 2: embeddings read at unit scale


@dataclass(frozen=True)
class RecurrentSpec:
    """Everything that determines the recurrent-depth model; its hash names the cache folder."""

    tasks: tuple[str, ...] = ("sum", "reach")
    sum_terms: int = 3
    reach_hops: int = 2
    hidden_size: int = 96
    intermediate_size: int = 256
    num_heads: int = 4
    prelude_layers: int = 1
    core_layers: int = 2
    coda_layers: int = 1
    vocab_size: int = 290             # node letters stay single tokens (see check_node_names)
    max_positions: int = 128
    mean_iterations: float = 3.0      # r-bar of the training distribution
    iteration_sigma: float = 0.5      # spread of its log-normal
    max_iterations: int = 16          # training draws are capped here
    backprop_depth: int = 2           # gradients flow through the last this-many iterations
    state_noise: float = 0.0          # training starts the state from N(0, this^2) (Huginn: 1)
    corpus_size: int = 6000
    train_steps: int = 400            # 300 at mean 4 (~10% cheaper) learned sums, not reach
    batch_size: int = 16
    learning_rate: float = 3e-3
    seed: int = 0

    def key(self) -> str:
        blob = json.dumps([FORMAT_VERSION, dataclasses.asdict(self)], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def writers(self) -> list:
        from .coconut import CoconutSpec

        return CoconutSpec(tasks=self.tasks, sum_terms=self.sum_terms,
                           reach_hops=self.reach_hops).writers()


@dataclass(frozen=True)
class AdaptiveOutput:
    """What ``forward_adaptive`` returns."""

    logits: torch.Tensor              # (B, T, V): each position's logits at its exit
    depths: torch.Tensor              # (B, T) int: iterations each position ran (2..max)


# ---------------------------------------------------------------------------------------------
# 1. the model
# ---------------------------------------------------------------------------------------------

class Block(nn.Module):
    """Causal self-attention + SwiGLU MLP, each wrapped in a sandwich norm (norm in, norm out):
    Huginn needed the outer norms to keep a state iterated many times from blowing up."""

    def __init__(self, hidden: int, heads: int, intermediate: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden, bias=False)
        self.proj = nn.Linear(hidden, hidden, bias=False)
        self.gate_up = nn.Linear(hidden, 2 * intermediate, bias=False)
        self.down = nn.Linear(intermediate, hidden, bias=False)
        self.norms = nn.ModuleList(nn.RMSNorm(hidden, eps=1e-6) for _ in range(4))

    def forward(self, x, allowed):
        """x: (B, T, H); allowed: (B, 1, T, T) bool, True where a query may see a key."""
        b, t, h = x.shape
        q, k, v = self.qkv(self.norms[0](x)).view(b, t, 3, self.heads, h // self.heads).unbind(2)
        att = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                             v.transpose(1, 2), attn_mask=allowed)  # (B, nh, T, d)
        x = self.norms[1](x + self.proj(att.transpose(1, 2).reshape(b, t, h)))
        gate, up = self.gate_up(self.norms[2](x)).chunk(2, dim=-1)
        return self.norms[3](x + self.down(F.silu(gate) * up))


class RecurrentDepthLM(nn.Module):
    """prelude -> core iterated r times (input re-injected) -> coda. See the module docstring."""

    def __init__(self, *, vocab: int, hidden: int = 128, heads: int = 4, intermediate: int = 384,
                 prelude: int = 1, core: int = 2, coda: int = 1, max_positions: int = 128):
        super().__init__()
        self.config = dict(vocab=vocab, hidden=hidden, heads=heads, intermediate=intermediate,
                           prelude=prelude, core=core, coda=coda, max_positions=max_positions)
        self.embed = nn.Embedding(vocab, hidden)
        self.position = nn.Embedding(max_positions, hidden)
        make = lambda n: nn.ModuleList(Block(hidden, heads, intermediate) for _ in range(n))  # noqa
        self.prelude, self.core, self.coda = make(prelude), make(core), make(coda)
        self.adapter = nn.Linear(2 * hidden, hidden, bias=False)     # [state, e] -> core input
        self.norm = nn.RMSNorm(hidden, eps=1e-6)
        # Tied table at N(0, 1/hidden) read times sqrt(hidden): unit-scale inputs and O(1) first
        # logits (Huginn's ``embed_scale`` is sqrt(5280)). Read unscaled at std 0.02, the
        # tokens were 1/50 of the first sub-layer's output, which the sandwich norm then
        # renormalised away: the model answered every question alike (test_recurrent_reads_input).
        self.embed_scale = hidden ** 0.5
        nn.init.normal_(self.embed.weight, std=hidden ** -0.5)
        nn.init.normal_(self.position.weight, std=hidden ** -0.5)

    # the three stages -------------------------------------------------------------------------
    def read(self, input_ids, attention_mask=None):
        """Prelude. input_ids: (B, T), attention_mask: (B, T) (left padding allowed).
        Returns e (B, T, H) and the attention pattern (B, 1, T, T)."""
        b, t = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)                   # (B, T)
        causal = torch.ones(t, t, dtype=torch.bool, device=input_ids.device).tril()
        allowed = causal & attention_mask.bool()[:, None, None, :]
        allowed = allowed | torch.eye(t, dtype=torch.bool, device=input_ids.device)  # pads see self
        x = (self.embed(input_ids) + self.position(positions)) * self.embed_scale       # (B, T, H)
        for block in self.prelude:
            x = block(x, allowed)
        return x, allowed

    def think(self, state, e, allowed):
        """One core iteration: s_i = core(adapter([s_{i-1}, e])). All (B, T, H)."""
        x = self.adapter(torch.cat([state, e], dim=-1))
        for block in self.core:
            x = block(x, allowed)
        return x

    def write(self, state, allowed):
        """Coda + final norm + tied head: (B, T, H) -> logits (B, T, V)."""
        for block in self.coda:
            state = block(state, allowed)
        return self.norm(state) @ self.embed.weight.T

    # the loops --------------------------------------------------------------------------------
    def forward(self, input_ids, attention_mask=None, *, iterations: int, backprop_depth=None,
                state_noise: float = 0.0):
        """Logits (B, T, V) after ``iterations`` core iterations; gradients reach only the last
        ``backprop_depth`` of them (all when None). ``iterations=1`` is prelude -> one core
        iteration from the zero state -> coda. ``state_noise`` > 0 starts from Gaussian noise of
        that scale instead (Huginn's training start: an answer must not rely on where the state
        began, so one iteration from noise is not enough)."""
        if iterations < 1:
            raise ValueError(f"iterations={iterations}: at least one core iteration is needed")
        e, allowed = self.read(input_ids, attention_mask)
        state = torch.randn_like(e) * state_noise if state_noise else torch.zeros_like(e)
        free = iterations - (backprop_depth or iterations)
        with torch.no_grad():
            for _ in range(max(0, free)):
                state = self.think(state, e, allowed)
        for _ in range(iterations - max(0, free)):
            state = self.think(state, e, allowed)
        return self.write(state, allowed)

    @torch.no_grad()
    def forward_adaptive(self, input_ids, attention_mask=None, *, threshold: float = 5e-4,
                         max_iterations: int = 32) -> AdaptiveOutput:
        """Per-position exit: a position stops after iteration i >= 2 once
        KL(p_i || p_{i-1}) < ``threshold`` (p: its next-token distribution), else at
        ``max_iterations``. ``threshold=0`` never exits early (same logits as
        ``forward(iterations=max_iterations)``); a huge threshold exits everything at 2."""
        e, allowed = self.read(input_ids, attention_mask)
        state = torch.zeros_like(e)
        active = torch.ones(e.shape[:2], dtype=torch.bool, device=e.device)     # (B, T)
        depths = torch.full(e.shape[:2], max_iterations, device=e.device)
        logits = prev = None
        for i in range(1, max_iterations + 1):
            state = torch.where(active[..., None], self.think(state, e, allowed), state)
            new = self.write(state, allowed)
            logits = new if logits is None else torch.where(active[..., None], new, logits)
            logp = F.log_softmax(new, dim=-1)
            if prev is not None and i < max_iterations:
                kl = (logp.exp() * (logp - prev)).sum(-1).clamp(min=0)              # (B, T)
                exiting = active & (kl < threshold)
                depths[exiting] = i
                active = active & ~exiting
                if not active.any():
                    break
            prev = logp
        return AdaptiveOutput(logits=logits, depths=depths)


def sample_iterations(rng: random.Random, *, mean: float, sigma: float = 0.5, cap: int = 64) -> int:
    """Training depth: tau ~ N(log mean - sigma^2 / 2, sigma), r = Poisson(e^tau) + 1, capped.

    recpre's ``randomized_iteration_sampler``: mostly near ``mean``, with a long tail so the
    model meets deep unrolls too.
    """
    lam = math.exp(rng.gauss(math.log(mean) - sigma ** 2 / 2, sigma))
    # Poisson draw by inversion (lam is small)
    k, p, u = 0, math.exp(-lam), rng.random()
    cum = p
    while u > cum and k < cap:
        k += 1
        p *= lam / k
        cum += p
    return min(k + 1, cap)


# ---------------------------------------------------------------------------------------------
# 2. answers
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DepthAnswer:
    """One greedy answer of the recurrent model."""

    text: str
    n_tokens: int
    depths: tuple[int, ...]           # iterations used for each generated token


@torch.no_grad()
def answer_with_depth(model, tokenizer, prompts: list[list[dict]], *, iterations: int | None = None,
                      threshold: float | None = None, max_iterations: int = 32,
                      max_new_tokens: int = 12) -> list[DepthAnswer]:
    """Greedy answers with a fixed ``iterations`` or, given ``threshold``, the adaptive exit.

    No KV cache: prompts here are short, so every new token re-reads the whole sequence.
    """
    from .coconut import encode_prompt

    if (iterations is None) == (threshold is None):
        raise ValueError("give exactly one of iterations= (fixed depth) or threshold= (adaptive)")
    device = next(model.parameters()).device
    rows = [encode_prompt(tokenizer, p) for p in prompts]
    width = max(map(len, rows))
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=device)
    done = torch.zeros(len(rows), dtype=torch.bool, device=device)
    written, depths = [], []
    for _ in range(max_new_tokens):
        if threshold is None:
            last = model(ids, mask, iterations=iterations)[:, -1]
            depth = torch.full_like(done, iterations, dtype=torch.long)
        else:
            out = model.forward_adaptive(ids, mask, threshold=threshold,
                                         max_iterations=max_iterations)
            last, depth = out.logits[:, -1], out.depths[:, -1]
        token = last.argmax(-1)                                                     # (B,)
        token = torch.where(done, tokenizer.pad_token_id, token)
        written.append(token)
        depths.append(torch.where(done, 0, depth))
        done |= token == tokenizer.eos_token_id
        ids = torch.cat([ids, token[:, None]], 1)
        mask = torch.cat([mask, (~done | (token == tokenizer.eos_token_id)).long()[:, None]], 1)
        if done.all():
            break
    toks, deps = torch.stack(written, 1).tolist(), torch.stack(depths, 1).tolist()
    answers = []
    for t_row, d_row in zip(toks, deps):
        keep = [i for i, t in enumerate(t_row) if t != tokenizer.pad_token_id]
        answers.append(DepthAnswer(
            text=tokenizer.decode([t_row[i] for i in keep], skip_special_tokens=True),
            n_tokens=len(keep), depths=tuple(int(d_row[i]) for i in keep)))
    return answers


def evaluate_depth(model, tokenizer, writer, problems_: list, *, batch_size: int = 100,
                   **how) -> dict:
    """Held-out accuracy (``verifiers.verify_math``) and depths, for ``answer_with_depth(**how)``."""
    from verifiers import verify_math

    answers = []
    for i in range(0, len(problems_), batch_size):
        chunk = problems_[i:i + batch_size]
        answers += answer_with_depth(model, tokenizer, [writer.row(p)["prompt"] for p in chunk],
                                     **how)
    correct = [verify_math(a.text, writer.gold(p)).correct for a, p in zip(answers, problems_)]
    depths = [d for a in answers for d in a.depths]
    return {"accuracy": sum(correct) / len(correct), "depths": depths,
            "mean_depth": sum(depths) / max(1, len(depths)), "answers": answers}


# ---------------------------------------------------------------------------------------------
# 3. build, cache, load
# ---------------------------------------------------------------------------------------------

def recurrent_path(spec: RecurrentSpec | None = None) -> Path:
    from ..tiny import cache_root

    return cache_root() / f"recurrent-{(spec or RecurrentSpec()).key()}"


def ensure_recurrent_model(spec: RecurrentSpec | None = None, *, verbose: bool = True) -> Path:
    """Folder of the recurrent-depth model for ``spec``: built on first use (about 60 s on a quiet
    2-core machine), then cached; several processes may call it at once."""
    from ..tiny import cached_build

    spec = spec or RecurrentSpec()
    return cached_build(recurrent_path(spec),
                        lambda out: build_recurrent_model(out, spec, verbose=verbose))


def load_recurrent(spec: RecurrentSpec | None = None, *, device=None, verbose: bool = True):
    """(model, tokenizer) of the cached recurrent-depth model."""
    return load_folder(ensure_recurrent_model(spec, verbose=verbose), device=device)


def load_folder(folder: str | Path, *, device=None):
    """(model in eval mode, tokenizer) saved by ``build_recurrent_model`` into ``folder``."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    folder = Path(folder)
    model = RecurrentDepthLM(**json.loads((folder / "model_config.json").read_text()))
    model.load_state_dict(load_file(folder / "model.safetensors"))
    model.eval()
    return (model.to(device) if device else model), AutoTokenizer.from_pretrained(folder)


def build_recurrent_model(out: str | Path, spec: RecurrentSpec | None = None, *,
                          verbose: bool = True) -> dict:
    """Tokenizer, model, training with a random depth per step; saved into ``out``."""
    from safetensors.torch import save_file
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    from ..tiny import _seeded, render_chat, train_tokenizer
    from .coconut import check_node_names, training_problems

    spec = spec or RecurrentSpec()
    out = Path(out)
    t0 = time.time()
    if verbose:
        print(f"Building the recurrent-depth model on {'+'.join(spec.tasks)}: about 60 s on a quiet "
              "2-core machine, once; cached in", recurrent_path(spec))
    rng = random.Random(spec.seed)
    chats = [(w.row(p)["prompt"], f"<answer>{w.gold(p)}</answer>")
             for w, p in training_problems(spec.writers(), spec.corpus_size, rng)]
    tok = train_tokenizer([render_chat(p, c) for p, c in chats], spec.vocab_size)
    check_node_names(tok)
    tok.save_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    ids, starts = [], []
    for prompt, completion in chats:
        ids.append(tok(render_chat(prompt, completion), add_special_tokens=False)["input_ids"])
        starts.append(len(tok(render_chat(prompt, ""), add_special_tokens=False)["input_ids"]) - 1)
    with _seeded(spec.seed):
        model = RecurrentDepthLM(
            vocab=len(tok), hidden=spec.hidden_size, heads=spec.num_heads,
            intermediate=spec.intermediate_size, prelude=spec.prelude_layers,
            core=spec.core_layers, coda=spec.coda_layers, max_positions=spec.max_positions)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=0.01,
                            betas=(0.9, 0.98))
    warm = max(1, spec.train_steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(
        (s + 1) / warm, 0.5 * (1 + math.cos(math.pi * min(1.0, s / spec.train_steps)))))
    losses, draws = [], []
    bar = tqdm(range(spec.train_steps), desc="recurrent depth", disable=not verbose, leave=False)
    model.train()
    with _seeded(spec.seed + 1):
        for _ in bar:
            pick = [rng.randrange(len(ids)) for _ in range(spec.batch_size)]
            width = max(len(ids[i]) for i in pick)
            batch = torch.full((len(pick), width), tok.pad_token_id)                 # (B, T)
            target = torch.full((len(pick), width), -100)
            for row, i in enumerate(pick):          # right padding: causal attention ignores it
                batch[row, : len(ids[i])] = torch.tensor(ids[i])
                target[row, starts[i]: len(ids[i])] = torch.tensor(ids[i][starts[i]:])
            r = sample_iterations(rng, mean=spec.mean_iterations, sigma=spec.iteration_sigma,
                                  cap=spec.max_iterations)
            logits = model(batch, iterations=r, backprop_depth=spec.backprop_depth,
                           state_noise=spec.state_noise)
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), target[:, 1:].flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            draws.append(r)
    model.eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "model.safetensors")
    (out / "model_config.json").write_text(json.dumps(model.config))
    info = {"spec": dataclasses.asdict(spec), "loss_first": round(losses[0], 4),
            "loss_last": round(sum(losses[-20:]) / 20, 4),
            "mean_train_iterations": round(sum(draws) / len(draws), 2),
            "parameters": sum(p.numel() for p in model.parameters()),
            "seconds": round(time.time() - t0, 1), "torch": torch.__version__}
    (out / "build_info.json").write_text(json.dumps(info, indent=2))
    if verbose:
        print(f"Built in {info['seconds']} s: {info['parameters'] / 1e6:.2f}M parameters; loss "
              f"{info['loss_first']} -> {info['loss_last']}; mean training depth "
              f"{info['mean_train_iterations']}")
    return info
