"""The embedded tiny model: a real Qwen2-architecture causal LM of 1.7 million parameters,
with a byte-level BPE tokenizer trained here and a ChatML chat template, saved with
``save_pretrained`` and loaded with ``from_pretrained`` like any hub model.

Why it exists: no machine of this project can download weights, and a learner should watch RL
change a model within minutes on a laptop CPU. So the default model is built locally, once, and
cached (``WB_CACHE`` or ``~/.cache/rl-workbench``).

How it is built (deterministic for a given ``TinySpec``; about a minute on 2 CPU cores):

1. **Corpus.** Problems from the synthetic tasks' *training* generators (held-out problems never
   appear), each written as a chat: the user asks, the assistant answers. A fraction
   ``worked_fraction`` of answers show their working one step per line; the rest state only the
   final ``<answer>``, the way much text does.
2. **Tokenizer.** A BPE trained on that corpus with Qwen2's own pre-tokenisation (NFC, its split
   regex, byte-level), so ``AutoTokenizer`` reloads it identically and digits are one token each.
3. **Pretraining.** Next-token prediction on the assistant turns for ``pretrain_steps`` steps.

The result knows how to work a sum step by step but, like a base model, usually does not: greedy
decoding mostly picks the direct style, whose one-shot answers are often wrong. That leaves its
held-out accuracy low but its *sampled* completions sometimes right -- exactly the signal RL with a
verifier can amplify.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen2's pre-tokeniser split pattern (digits are single tokens).
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
               r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class TinySpec:
    """Everything that determines the tiny model; its hash names the cache folder."""

    hidden_size: int = 192            # width; 1.7M parameters in all with the values below
    intermediate_size: int = 512
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    vocab_size: int = 512             # BPE target size (specials included)
    max_positions: int = 256
    tasks: tuple[str, ...] = ("sum",)  # synthetic tasks whose training problems form the corpus
    worked_fraction: float = 0.4      # share of corpus answers that show their working
    corpus_size: int = 24000          # examples in the pretraining corpus
    pretrain_steps: int = 500
    batch_size: int = 64              # examples per pretraining step
    learning_rate: float = 3e-3
    seed: int = 0
    # Fields below are left out of the cache key at their defaults (older keys stay valid).
    repair_fraction: float = 0.0      # share of the corpus that repairs a failed attempt after
    #                                   the environment's feedback (tasks with ``repair_chats``)
    fix_fraction: float = 0.0         # share of those repairs that use the feedback; the rest
    #                                   guess again

    def key(self) -> str:
        fields = dataclasses.asdict(self)
        for name in _KEY_OPTIONAL:
            if fields[name] == _DEFAULTS[name]:
                del fields[name]
        extra = [_feedback_fingerprint(self.tasks)] if self.repair_fraction else []
        if "search" in self.tasks:                  # the corpus holds search results
            extra.append(_search_fingerprint())
        blob = json.dumps([FORMAT_VERSION, fields] + extra, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


_KEY_OPTIONAL = ("repair_fraction", "fix_fraction")
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TinySpec)}

# Tasks whose tiny model needs more than ``TinySpec(tasks=(task,))``: the code task's corpus
# is half repairs after real execution feedback (3 in 10 of them copy the feedback's numbers
# into the program, the rest guess again); its long chats get a smaller batch. 600 steps are
# what it takes for copies to come out right under greedy decoding (400 steps: a sampled fix
# passed 1 time in 9); the build (227-237 s on 2 quiet cores) is over the 100 s target
# (benchmarks/README.md, "RL from execution feedback").
TASK_SPECS: dict[str, TinySpec] = {
    "code": TinySpec(tasks=("code",), worked_fraction=0.15, corpus_size=6000,
                     repair_fraction=0.5, fix_fraction=0.3,
                     pretrain_steps=600, batch_size=32),
    # search: episodes with their real <information> results (~44 tokens an example) on a
    # narrower model (0.85M parameters): a step costs 0.55-0.62 of a default one, so the build
    # is about 60-70 s on 2 quiet cores (measured as a ratio; see benchmarks/README.md)
    "search": TinySpec(tasks=("search",), hidden_size=128, intermediate_size=384,
                       worked_fraction=0.6, corpus_size=6000, pretrain_steps=380,
                       batch_size=32),
}


# Wall seconds of each task's build on a clean 2-core machine (build_info.json of session 6's
# fresh-clone `bash .ci/run`, an Intel Xeon; an AMD EPYC took up to 1.4x longer; README).
BUILD_SECONDS = {"sum": 93, "sum_bilingual": 107, "code": 237, "search": 90}


def tiny_spec_for(task: str) -> TinySpec:
    """The tiny model's spec for a synthetic ``task`` (its own corpus; see ``TASK_SPECS``)."""
    return TASK_SPECS.get(task, TinySpec(tasks=(task,)))


def _feedback_fingerprint(tasks: tuple[str, ...]) -> str:
    """A hash of the functions that write execution feedback and the repairs that read it: the
    corpus holds both, so a change to how feedback or a repair reads must rebuild the model
    that learned them. (The checker's verdict wording feeds it too; changing that needs a
    ``FORMAT_VERSION`` bump.)"""
    import inspect

    from verifiers.code import execution_feedback

    from .envs import code
    from .tasks import TASKS

    funcs = [execution_feedback, code.clean_feedback, code.CodeFeedbackEnv.feedback]
    for name in tasks:
        writer = TASKS[name]
        if hasattr(writer, "repair_chats"):
            funcs += [getattr(writer, f) for f in ("repair_chats", "repair", "_failing",
                                                   "estimate", "program")
                      if hasattr(writer, f)]
    src = "".join(inspect.getsource(f) for f in funcs)
    return hashlib.sha256((src + repr(code.FEEDBACK_CHARS)).encode()).hexdigest()[:12]


def _search_fingerprint() -> str:
    """A hash of what writes the search corpus (the world, its documents, the observations), so
    a change to how a search result reads rebuilds the model that learned to read it."""
    import inspect

    from .envs import search

    parts = [inspect.getsource(f) for f in (
        search.make_world, search.document, search.question, search.lookups, search.gold,
        search.episode_text, search.guess, search.observe, search.cap, search.SearchIndex,
        search.SearchEnv.run_tool)]
    parts.append(inspect.getsource(_mask_inline_observations))
    parts.append(repr((search.KINDS, search.FIRST, search.LAST, search.CITIES, search.CO_HEAD,
                       search.CO_TAIL, search.WORLD_SEED, search.TOP_K)))
    return hashlib.sha256("".join(parts).encode()).hexdigest()[:12]


def cache_root() -> Path:
    return Path(os.environ.get("WB_CACHE", Path.home() / ".cache" / "rl-workbench")).expanduser()


def tiny_path(spec: TinySpec | None = None) -> Path:
    spec = spec or TinySpec()
    return cache_root() / f"tiny-{spec.key()}"


def ensure_tiny_model(spec: TinySpec | None = None, *, verbose: bool = True) -> Path:
    """Folder of the tiny model for ``spec``: built on first use (1.5-4 minutes), then cached.

    Safe to call from several processes at once: one builds, the others wait for it.
    """
    spec = spec or TinySpec()
    known = BUILD_SECONDS.get(spec.tasks[0]) if spec == tiny_spec_for(spec.tasks[0]) else None
    took = (f"about {known / 60:.1f} min on 2 quiet CPU cores, measured" if known else
            "about 1.5-4 min on 2 CPU cores")
    announce = (f"[workbench] building the tiny model for task(s) {', '.join(spec.tasks)} once "
                f"(corpus of {spec.corpus_size}, {spec.pretrain_steps} pretraining steps; {took})"
                if verbose else None)
    return cached_build(tiny_path(spec), lambda out: build_tiny_model(out, spec, verbose=verbose),
                        announce=announce)


def cached_build(path: Path, build, *, announce: str | None = None) -> Path:
    """``path`` once ``build(tmp_folder)`` has filled it (it must write ``build_info.json``).

    Built at most once per machine: a file lock lets one process build while the others wait, and
    the finished folder is moved into place atomically, so no reader sees a half-built model.
    ``announce`` is printed (with the folder) when this process does build.
    """
    if (path / "build_info.json").exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (path / "build_info.json").exists():
            return path
        for stale in path.parent.glob(f".{path.name}-*"):   # left by a build that was killed:
            shutil.rmtree(stale, ignore_errors=True)        # with the lock held, none is live
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
        if announce:
            print(f"{announce} -> {path}", flush=True)
        t0 = time.time()
        try:
            build(tmp)
            os.replace(tmp, path)  # atomic: readers see no half-built model
            if announce:
                print(f"[workbench] built in {time.time() - t0:.0f} s", flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return path


# ---------------------------------------------------------------------------------------------
# 1. corpus
# ---------------------------------------------------------------------------------------------

def corpus_examples(spec: TinySpec) -> list[tuple[list[dict], str]]:
    """(chat prompt, completion) pairs from the tasks' training generators, styles mixed."""
    from .tasks import TASKS

    rng = random.Random(spec.seed)
    writers = [TASKS[name]() for name in spec.tasks]
    held_out = set()
    for w in writers:
        held_out |= {(w.name, p) for p in w.split(0, 200)[1]}
    examples, repairs = [], []
    while len(examples) + len(repairs) < spec.corpus_size:
        w = writers[(len(examples) + len(repairs)) % len(writers)]
        p = w.sample_problem(rng)
        if (w.name, p) in held_out:
            continue
        if spec.repair_fraction and rng.random() < spec.repair_fraction:
            repairs.append((w, p))                  # written below, in one parallel batch
            continue
        style = "worked" if rng.random() < spec.worked_fraction else "direct"
        examples.append((w.row(p)["prompt"], w.solution(p, style, rng)))
    for w in writers:
        mine = [p for owner, p in repairs if owner is w]
        if mine:
            if not hasattr(w, "repair_chats"):
                raise ValueError(f"repair_fraction > 0 but task {w.name!r} writes no repairs")
            examples += w.repair_chats(mine, random.Random(spec.seed + 3),
                                       fix_fraction=spec.fix_fraction)
    return examples


def render_chat(prompt: list[dict], completion: str) -> str:
    """The exact text the chat template produces, plus the completion and its end token."""
    body = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in prompt)
    return f"{body}<|im_start|>assistant\n{completion}<|im_end|>"


# ---------------------------------------------------------------------------------------------
# 2. tokenizer
# ---------------------------------------------------------------------------------------------

def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE with Qwen2's pre-tokenisation, wrapped as a transformers tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=2)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        bos_token=None, unk_token=None, additional_special_tokens=["<|im_start|>"])
    fast.chat_template = CHAT_TEMPLATE
    return fast


# ---------------------------------------------------------------------------------------------
# 3. model + pretraining
# ---------------------------------------------------------------------------------------------

def tiny_config(spec: TinySpec, tokenizer):
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size, num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads, num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_positions, tie_word_embeddings=True,
        rope_theta=10000.0, rms_norm_eps=1e-6, use_cache=True,
        bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_tiny_model(out: str | Path, spec: TinySpec | None = None, *, verbose: bool = True) -> dict:
    """Build corpus, tokenizer and model, pretrain, and save everything into ``out``."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    spec = spec or TinySpec()
    out = Path(out)
    t0 = time.time()
    examples = corpus_examples(spec)
    texts = [render_chat(p, c) for p, c in examples]
    tok = train_tokenizer(texts, spec.vocab_size)
    tok.save_pretrained(out)
    config = tiny_config(spec, tok)
    config.save_pretrained(out)
    # Reload through AutoTokenizer, as every user will, so training sees the same ids they will.
    tok = AutoTokenizer.from_pretrained(out)

    with _seeded(spec.seed):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    ids, labels = encode_corpus(tok, examples, texts)
    info = pretrain(model, ids, labels, spec, pad_id=tok.pad_token_id, verbose=verbose,
                    progress=tqdm)
    model.generation_config = GenerationConfig(
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, do_sample=False,
        max_new_tokens=48)
    model.save_pretrained(out)
    info.update(
        spec=dataclasses.asdict(spec), parameters=sum(p.numel() for p in model.parameters()),
        vocab=len(tok), corpus_examples=len(examples), seconds=round(time.time() - t0, 1),
        torch=torch.__version__,
    )
    (out / "build_info.json").write_text(json.dumps(info, indent=2))
    return info


def _mask_inline_observations(tok, text: str, labels: list[int]) -> list[int]:
    """``labels`` with the tokens of inline ``<information>...</information>`` spans set to
    -100: the environment writes them, so -- as in RL -- the model learns to read them, not
    to produce them (a search result's random year cannot be predicted anyway). Text without
    such spans (every other task) is returned unchanged."""
    if "<information>" not in text:
        return labels
    spans, at = [], 0
    while (a := text.find(" <information>", at)) >= 0:
        b = text.find("</information>", a)
        b = len(text) if b < 0 else b + len("</information>")
        spans.append((a, b))
        at = b
    offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    return [-100 if any(a <= start < b for a, b in spans) else label
            for label, (start, _) in zip(labels, offsets)]


def encode_corpus(tok, examples: list[tuple[list[dict], str]], texts: list[str]
                  ) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids of each rendered chat, and its labels: -100 over the user's turn (and over
    any environment observation inside the answer), the ids elsewhere."""
    ids, labels = [], []
    for (prompt, _), text in zip(examples, texts):
        seq = tok(text, add_special_tokens=False)["input_ids"]
        n_prompt = len(tok(render_chat(prompt, ""), add_special_tokens=False)["input_ids"]) - 1
        ids.append(seq)
        labels.append(_mask_inline_observations(tok, text, [-100] * n_prompt + seq[n_prompt:]))
    return ids, labels


def pretrain(model, ids: list[list[int]], labels: list[list[int]], spec: TinySpec, *, pad_id: int,
             verbose: bool = True, progress=None) -> dict:
    """Next-token pretraining: AdamW, warm-up then cosine decay.

    Each batch holds whole examples padded to its longest one (packing several examples into one
    row lets the model copy digits from the *wrong* example, which ruins arithmetic). ``labels`` is
    ``ids`` with the user's turn masked (-100): the prompt's random digits cannot be predicted,
    so learning them would only add noise.
    """
    import torch

    rng = random.Random(spec.seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=0.01,
                            betas=(0.9, 0.98))
    warmup = max(1, spec.pretrain_steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, spec.pretrain_steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    losses = []
    bar = range(spec.pretrain_steps)
    if progress is not None:
        bar = progress(bar, desc="pretraining tiny model", disable=not verbose)
    with _seeded(spec.seed + 2):
        for step in bar:
            pick = sorted((rng.randrange(len(ids)) for _ in range(spec.batch_size)),
                          key=lambda i: len(ids[i]))
            opt.zero_grad(set_to_none=True)
            total = 0.0
            for half in (pick[: len(pick) // 2], pick[len(pick) // 2:]):   # similar lengths:
                total += _batch_loss(model, ids, labels, half, pad_id) / 2  # little padding
            loss = torch.tensor(total)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            if progress is not None and hasattr(bar, "set_postfix") and step % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    model.eval()
    return {"pretrain_loss_first": round(losses[0], 4),
            "pretrain_loss_last": round(sum(losses[-20:]) / len(losses[-20:]), 4),
            "pretrain_steps": spec.pretrain_steps}


def _batch_loss(model, ids, labels, pick, pad_id) -> float:
    """Backward the mean next-token loss of examples ``pick`` (padded to the longest); return it."""
    import torch

    width = max(len(ids[i]) for i in pick)
    input_ids = torch.full((len(pick), width), pad_id, dtype=torch.long)          # (B, T)
    target = torch.full((len(pick), width), -100, dtype=torch.long)
    mask = torch.zeros((len(pick), width), dtype=torch.long)
    for row, i in enumerate(pick):
        input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
        target[row, : len(ids[i])] = torch.tensor(labels[i])
        mask[row, : len(ids[i])] = 1
    loss = model(input_ids=input_ids, attention_mask=mask, labels=target).loss
    (loss / 2).backward()
    return loss.item()


@contextlib.contextmanager
def _seeded(seed: int):
    import torch

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)
