"""GPU memory: a pre-flight estimate, generation chunk sizes, and a tracker for creep.

``estimate_peak_memory(config, tier=..., ...)`` predicts the peak of
``torch.cuda.max_memory_allocated`` for one GRPO step *before* any work starts, part by part, so
``check_fits`` can refuse a run that will not fit and say which knob to lower. It is arithmetic
on the model's shape, not a measurement; what it assumes is written next to each formula below.

What was checked, and where:

* On CPU (``tests/test_memory.py``), exactly: the activation bytes autograd saves for one
  micro-batch (every saved tensor of a real Qwen2 forward, plain bf16 + LoRA, bnb 4-bit + LoRA,
  and fp32 / bf16 full fine-tuning), the KV-cache bytes of a real ``DynamicCache``, LoRA
  parameter counts of a real peft model, and the 4-bit weight bytes of a real bitsandbytes
  model. Approximately: the peak of a whole training step and of ``sample_group``, measured with
  glibc's malloc counters (within 5% and 15%).
* Not yet on a GPU: CUDA kernels may save slightly different tensors (memory-efficient attention
  pads its log-sum-exp), unsloth's own kernels are modelled from reading them, and the allocator
  adds fragmentation. ``tests/test_gpu.py`` and ``benchmarks/gpu_grpo.py`` check the estimate
  against ``max_memory_allocated`` on a CUDA machine (target: within 15%).

Formulas (bytes; ``h`` hidden size, ``L`` layers, ``nh``/``kv`` query/key-value heads, ``d`` head
dim, ``q = nh*d``, ``k = kv*d``, ``i`` MLP width, ``V`` vocab, ``r`` LoRA rank, ``a`` bytes of one
activation element, ``N = micro_batch * (P + T)`` tokens in a training micro-batch with ``P``
prompt and ``T`` completion tokens):

* **weights** -- plain: every parameter at ``dtype_bytes``. 4-bit (bnb4, unsloth): the seven
  linear layers per block in NF4 with double quantisation, ``0.5 + 1/64 + 4/(64*256)`` bytes per
  weight (4-bit codes, an 8-bit absmax per 64-block, an fp32 absmax per 256 blocks) plus ~1 KB of
  tables per layer; embeddings, lm_head (if untied), norms and q/k/v biases stay unquantised: in
  fp32 for bnb4 (peft's ``prepare_model_for_kbit_training`` casts every non-4-bit parameter to
  fp32) and at ``dtype_bytes`` for unsloth. Plus a dequantisation scratch of two copies of the
  largest linear in bf16 (bitsandbytes dequantises a weight for each matmul of a batch).
* **LoRA** -- ``r * (7h + 2q + 2k + 3i)`` parameters per layer (q, k, v, o, gate, up, down), in
  fp32 (peft casts adapters to fp32): 4 bytes for the weights, 4 for their gradients (training
  phase only) and 8 for AdamW's two moments. Full fine-tuning: every parameter, at
  ``dtype_bytes`` each for weights, gradients and each AdamW moment.
* **activations** (what autograd keeps for backward), per layer and token:
  RMSNorm keeps an fp32 copy of its input, ``2 * 4h`` (+8 for the rsqrt); attention (SDPA with a
  padding mask, so K and V are repeated to ``nh`` heads first) keeps q, k, v, output: ``4q*a``,
  plus an fp32 log-sum-exp ``4nh``; the SwiGLU MLP keeps gate, silu(gate) and up: ``3i*a``.
  LoRA keeps each adapted layer's input for the adapter's gradient: with activations in bf16
  each of the seven layers casts its input to fp32 separately, ``4(5h + q + i)``; with fp32
  activations (bnb4) the inputs are shared, ``a(2h + i)`` (o_proj's input is SDPA's output);
  plus ``7 * 4r`` for the adapters' middle. Per micro-batch: the float attention mask SDPA makes
  from the boolean one, ``micro_batch * (P+T)^2 * a`` per layer, and rotary cos/sin ``2N*d*a``.
  (With LoRA the first layer's input norm keeps nothing -- the frozen embedding needs no
  gradient -- and the final norm keeps as much as one, so the count above is exact; full
  fine-tuning also keeps norm outputs, token ids and lm_head's input.) Activation dtype ``a``:
  4 for bnb4 (fp32 residual stream, see weights), else ``dtype_bytes``. With gradient
  checkpointing: each layer's input ``L*N*h*a`` is kept, and one layer's activations are rebuilt
  at a time during backward (unsloth's checkpointing moves the layer inputs to CPU memory, so
  they are not counted for it). unsloth (assumed, from its kernels): norms ``2(a*h + 4)``, q/k/v
  input ``a*h``, attention ``4q*a + 4nh``, MLP input, gate and up ``a(h + 2i)``.
* **layer scratch** -- what one layer adds while it runs: peft computes the LoRA output, its
  scaled copy and the sum in fp32 (``12*i`` bytes per token with bf16 activations, ``8*i`` with
  fp32, measured on CPU), plus the rebuilt layer with checkpointing.
* **logits** -- the training forward keeps ``T+1`` positions (``logits_to_keep``); the trainer
  converts them to fp32 and divides by the temperature (kept by ``logsumexp`` for backward),
  then ``token_entropy`` makes ``log_softmax``, ``exp`` and their product: four fp32 copies at
  once, ``16 * micro_batch * T * V``. With a 150k vocabulary this is often the peak.
* **KV cache** -- ``2 * L * k * (P+T) * generation_batch * a``, at the end of decoding if no
  completion ends early (finished rows leave the batch, so this is the worst case).
* **sampling scratch** -- the larger of the prefill (``P`` tokens of each distinct prompt: MLP and
  LoRA temporaries, ``(2a+12)*i + (2a+4)*h`` each, plus one layer's float mask) and a decode step
  (the ``(batch, V)`` logits, their fp32 tempered copy and log-softmax, ``batch*V*(a+8)``, plus
  one layer's cache while ``torch.cat`` grows it).
* **overhead** -- what ``max_memory_allocated`` does not see: the CUDA context and cuBLAS
  workspaces (``CUDA_CONTEXT_BYTES``, ~0.5 GiB) and allocator fragmentation (10% of the peak).

The peak: ``weights + LoRA weights + AdamW + max(training, generation)``, where training is
gradients + activations + the larger of logits and layer scratch (the logits live after the last
layer has run) and generation is KV cache + sampling scratch. On CPU, a glibc malloc counter
around a real training step and a real ``sample_group`` put these two phases within 5% and 15%.
``.total`` adds the overhead and is what ``check_fits`` compares with the device.

Left out on purpose (small next to the above, or outside one GRPO step): the no-grad passes for
old/reference log-probs (``num_iterations > 1`` or ``beta > 0``; their peak is below the
training pass), gradient temporaries inside one layer's backward, and memory held by other
processes.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

from .settings import SettingsError

GiB = 1024 ** 3
MiB = 1024 ** 2
CUDA_CONTEXT_BYTES = 512 * MiB     # CUDA context + cuBLAS workspace: not in max_memory_allocated
FRAGMENTATION = 0.10               # allocator slack over the allocated peak (reserved - allocated)
NF4_BYTES_PER_WEIGHT = 0.5 + 1 / 64 + 4 / (64 * 256)   # 4-bit codes + 8-bit absmax + fp32 absmax2
NF4_TABLE_BYTES = 1092             # per 4-bit layer: NF4 code (16 fp32), absmax code (256), offset
LORA_TARGETS = 7                   # q, k, v, o, gate, up, down (workbench.models)
TIERS = ("unsloth", "bnb4", "plain")


# ---------------------------------------------------------------------------------------------
# model shape
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelShape:
    """The numbers of a Qwen2/Llama-style decoder that memory depends on."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool = True
    qkv_bias: bool = True           # Qwen2: q/k/v have biases; Llama: attention_bias (False)

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def linear_weights(self) -> int:
        """Weights of the seven linear layers of all blocks (what 4-bit quantises)."""
        h, q, k, i = self.hidden_size, self.q_dim, self.kv_dim, self.intermediate_size
        return self.num_layers * (h * q + 2 * h * k + q * h + 3 * h * i)

    @property
    def other_weights(self) -> int:
        """Embeddings, lm_head (if untied), norms and q/k/v biases: kept unquantised."""
        h, L = self.hidden_size, self.num_layers
        embed = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        bias = L * (self.q_dim + 2 * self.kv_dim) if self.qkv_bias else 0
        return embed + (2 * L + 1) * h + bias

    @property
    def parameters(self) -> int:
        return self.linear_weights + self.other_weights

    @classmethod
    def from_config(cls, config: Any) -> "ModelShape":
        """From a ``transformers`` config (Qwen2, Llama, Mistral...), a dict, or a ModelShape."""
        if isinstance(config, ModelShape):
            return config
        if isinstance(config, dict):
            from types import SimpleNamespace

            config = SimpleNamespace(**config)
        if hasattr(config, "get_text_config"):
            config = config.get_text_config()
        heads = config.num_attention_heads
        kv = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        model_type = getattr(config, "model_type", "")
        bias = True if model_type == "qwen2" else bool(getattr(config, "attention_bias", False))
        return cls(hidden_size=config.hidden_size, num_layers=config.num_hidden_layers,
                   num_heads=heads, num_kv_heads=kv, head_dim=head_dim,
                   intermediate_size=config.intermediate_size, vocab_size=config.vocab_size,
                   tie_word_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
                   qkv_bias=bias)


# Published shapes (the config.json of Qwen/Qwen2.5-*-Instruct on the hub; checked against
# copies of those files found by code search). All three tie their embeddings.
PUBLISHED_SHAPES: dict[str, ModelShape] = {
    "Qwen2.5-0.5B": ModelShape(hidden_size=896, num_layers=24, num_heads=14, num_kv_heads=2,
                               head_dim=64, intermediate_size=4864, vocab_size=151936),
    "Qwen2.5-1.5B": ModelShape(hidden_size=1536, num_layers=28, num_heads=12, num_kv_heads=2,
                               head_dim=128, intermediate_size=8960, vocab_size=151936),
    "Qwen2.5-3B": ModelShape(hidden_size=2048, num_layers=36, num_heads=16, num_kv_heads=2,
                             head_dim=128, intermediate_size=11008, vocab_size=151936),
}


def qwen2_config(shape: ModelShape | str, **overrides):
    """A ``transformers.Qwen2Config`` for a shape (or a ``PUBLISHED_SHAPES`` name).

    Used to build randomly initialised models with real sizes: no machine here downloads weights.
    """
    from transformers import Qwen2Config

    s = PUBLISHED_SHAPES[shape] if isinstance(shape, str) else shape
    kwargs = dict(vocab_size=s.vocab_size, hidden_size=s.hidden_size,
                  intermediate_size=s.intermediate_size, num_hidden_layers=s.num_layers,
                  num_attention_heads=s.num_heads, num_key_value_heads=s.num_kv_heads,
                  tie_word_embeddings=s.tie_word_embeddings, max_position_embeddings=32768,
                  rope_theta=1000000.0, rms_norm_eps=1e-6, use_cache=True)
    kwargs.update(overrides)
    return Qwen2Config(**kwargs)


def save_random_model(config, folder, *, tokenizer=None, dtype="bfloat16", seed: int = 0):
    """Save a randomly initialised causal LM for ``config`` plus a tokenizer into ``folder``.

    ``tokenizer=None`` trains a small BPE (with a chat template) on the ``sum`` task's prompts in
    about a second. Its vocabulary is far smaller than the model's; sampled ids it does not know
    decode to nothing, and a random model almost never samples EOS, so completions run to
    ``max_new_tokens`` -- the worst case memory has to plan for.
    """
    from pathlib import Path

    import torch
    from transformers import AutoModelForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if tokenizer is None:
        from .tasks import get_task
        from .tiny import train_tokenizer

        task = get_task("sum", n_train=300, n_test=10)
        tokenizer = train_tokenizer([str(r["prompt"]) for r in task.train], 300)
    tokenizer.save_pretrained(folder)
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.bos_token_id = None
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    return folder


# ---------------------------------------------------------------------------------------------
# the parts
# ---------------------------------------------------------------------------------------------

def activation_dtype_bytes(tier: str, dtype_bytes: int) -> int:
    """Bytes per activation element: bnb4 runs its residual stream in fp32 (peft upcasts the
    embeddings and norms), the other tiers in the model dtype."""
    return 4 if tier == "bnb4" else dtype_bytes


def lora_parameters(config, r: int) -> int:
    """Trainable parameters of rank-``r`` LoRA on q, k, v, o, gate, up and down of every layer."""
    s = ModelShape.from_config(config)
    h, q, k, i = s.hidden_size, s.q_dim, s.kv_dim, s.intermediate_size
    return s.num_layers * r * (7 * h + 2 * q + 2 * k + 3 * i)


def weight_bytes(config, *, tier: str, dtype_bytes: int = 2) -> int:
    """Resident bytes of the (frozen) base weights for a loader tier; see the module docstring."""
    s = ModelShape.from_config(config)
    if tier == "plain":
        return s.parameters * dtype_bytes
    kept = 4 if tier == "bnb4" else dtype_bytes            # peft upcasts non-4-bit params
    quant = (int(s.linear_weights * NF4_BYTES_PER_WEIGHT)
             + LORA_TARGETS * s.num_layers * NF4_TABLE_BYTES)
    return quant + s.other_weights * kept


def dequant_scratch_bytes(config, *, tier: str) -> int:
    """Two bf16 copies of the largest 4-bit weight, dequantised for a matmul (0 for plain)."""
    if tier == "plain":
        return 0
    s = ModelShape.from_config(config)
    return 2 * 2 * s.hidden_size * max(s.intermediate_size, s.q_dim)


def layer_activation_bytes_per_token(config, *, tier: str, dtype_bytes: int = 2,
                                     lora_r: int | None = 16) -> int:
    """Bytes autograd keeps per token for one decoder layer (no checkpointing).

    ``lora_r=None`` is full fine-tuning. See the module docstring for each term.
    """
    s = ModelShape.from_config(config)
    h, q, i, nh = s.hidden_size, s.q_dim, s.intermediate_size, s.num_heads
    a = activation_dtype_bytes(tier, dtype_bytes)
    if tier == "unsloth":
        return 2 * (a * h + 4) + a * h + 4 * q * a + 4 * nh + a * (h + 2 * i)
    norms = 2 * 4 * h + 2 * 4                                  # fp32 input copy + rsqrt, twice
    attention = 4 * q * a + 4 * nh                             # q, k, v (repeated), out + lse
    mlp = 3 * i * a                                            # gate, silu(gate), up
    if lora_r is None:                                         # full fine-tune
        inputs = a * (2 * h + i) + 2 * a * h                   # linear inputs + norm outputs
    elif a != 4:                                               # bf16 activations, fp32 adapters
        inputs = 4 * (5 * h + q + i) + LORA_TARGETS * 4 * lora_r
    else:
        inputs = a * (2 * h + i) + LORA_TARGETS * 4 * lora_r
    return norms + attention + mlp + inputs


def activation_bytes(config, *, tier: str, micro_batch_size: int, prompt_tokens: int,
                     completion_tokens: int, gradient_checkpointing: bool = False,
                     dtype_bytes: int = 2, lora_r: int | None = 16) -> tuple[int, int]:
    """(kept, layer_scratch): activation bytes kept for backward for one training micro-batch,
    and the bytes one layer adds on top while it runs: its forward temporaries (peft's LoRA
    output, scaled output and sum in fp32, ``12*i`` per token with bf16 activations, ``8*i``
    with fp32; measured on CPU) and, with gradient checkpointing, its rebuilt activations.

    With LoRA the first layer's input norm keeps nothing (its input, the frozen embedding,
    needs no gradient) and the final norm keeps as much as one layer norm, so ``L`` layers'
    worth of norms in all. Full fine-tuning also keeps the embedding's token ids, each norm's
    output for its weight's gradient, and lm_head's input for the ``T+1`` kept positions.
    """
    s = ModelShape.from_config(config)
    a = activation_dtype_bytes(tier, dtype_bytes)
    seq = prompt_tokens + completion_tokens
    n = micro_batch_size * seq
    per_layer = n * layer_activation_bytes_per_token(s, tier=tier, dtype_bytes=dtype_bytes,
                                                     lora_r=lora_r)
    mask = micro_batch_size * seq ** 2 * a                      # SDPA's float mask, per layer
    rotary = 2 * n * s.head_dim * a
    h = s.hidden_size
    if lora_r is None:                                          # final norm, lm_head input, ids
        final = n * (4 * h + 4 + a * h + 8) + micro_batch_size * (completion_tokens + 1) * h * a
    else:
        final = 0
    i = s.intermediate_size
    if tier == "unsloth":
        temporaries = n * i * 4 * a                             # fused kernels (assumed)
    elif lora_r is None:
        temporaries = n * i * 2 * a
    else:
        temporaries = n * i * (12 if a != 4 else 8)
    if not gradient_checkpointing:
        return s.num_layers * (per_layer + mask) + rotary + final, temporaries
    inputs = 0 if tier == "unsloth" else s.num_layers * n * h * a
    final_norm = n * (4 * h + 4) if lora_r is not None else final
    return inputs + rotary + final_norm, per_layer + mask + temporaries


def logits_bytes(config, *, micro_batch_size: int, completion_tokens: int) -> int:
    """Peak of the training logits: four fp32 (batch, T, V) tensors alive at once."""
    s = ModelShape.from_config(config)
    return 16 * micro_batch_size * completion_tokens * s.vocab_size


def kv_cache_bytes(config, *, batch_size: int, tokens: int, dtype_bytes: int = 2) -> int:
    """``2 * layers * kv_heads * head_dim * tokens * batch * dtype_bytes`` (keys and values)."""
    s = ModelShape.from_config(config)
    return 2 * s.num_layers * s.kv_dim * tokens * batch_size * dtype_bytes


def sampling_scratch_bytes(config, *, tier: str, batch_size: int, prompt_tokens: int,
                           completion_tokens: int, dtype_bytes: int = 2,
                           lora: bool = True, prompts: int | None = None) -> int:
    """Generation memory besides the final KV cache (see the module docstring): the larger of
    the prefill (with its shorter cache) and a decode step. ``prompts``: the distinct prompts
    among the ``batch_size`` rows (siblings share one prefill; default: all distinct)."""
    s = ModelShape.from_config(config)
    u = min(batch_size, prompts or batch_size)
    a = activation_dtype_bytes(tier, dtype_bytes)
    h, i = s.hidden_size, s.intermediate_size
    # prefill: the MLP's silu(gate) and up, and peft's fp32 LoRA output, scaled output and sum
    per_token = ((2 * a + 12) * i if lora and tier != "unsloth" else 3 * a * i) + (2 * a + 4) * h
    prefill = u * prompt_tokens * per_token + u * prompt_tokens ** 2 * a
    total = prompt_tokens + completion_tokens
    full = kv_cache_bytes(s, batch_size=batch_size, tokens=total, dtype_bytes=a)
    at_prefill = kv_cache_bytes(s, batch_size=u, tokens=prompt_tokens, dtype_bytes=a)
    # decode: the (batch, V) logits, their fp32 tempered copy and log-softmax/exp (top_p < 1
    # sorts and scatters as well: about 25 more bytes per vocabulary entry), and one layer's
    # cache twice while torch.cat grows it
    decode = batch_size * s.vocab_size * (a + 8) + full // s.num_layers
    return max(at_prefill + prefill - full, decode)


# ---------------------------------------------------------------------------------------------
# the estimate
# ---------------------------------------------------------------------------------------------

_WHAT = {
    "weights": "base weights (frozen)",
    "trainable": "LoRA / trained weights",
    "gradients": "their gradients",
    "optimizer": "AdamW moments",
    "activations": "activations kept for backward",
    "layer_scratch": "one layer's scratch (+ rebuilt if ckpt)",
    "logits": "training logits (4 fp32 copies)",
    "kv_cache": "KV cache (generation)",
    "sampling": "sampling scratch (generation)",
    "overhead": "CUDA context + fragmentation",
}


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated GPU memory of one GRPO step, part by part, in bytes.

    ``peak_allocated`` predicts ``torch.cuda.max_memory_allocated``; ``total`` adds what that
    counter does not see (CUDA context, fragmentation) and is what must fit the device.
    """

    weights: int
    trainable: int
    gradients: int
    optimizer: int
    activations: int
    layer_scratch: int
    logits: int
    kv_cache: int
    sampling: int
    overhead: int
    tier: str
    shape: ModelShape
    inputs: dict = field(default_factory=dict)   # the arguments, so variants can be re-estimated

    @property
    def persistent(self) -> int:
        return self.weights + self.trainable + self.optimizer

    @property
    def training(self) -> int:
        """Training-phase bytes on top of the persistent ones."""
        # the logits live after the last layer has run, a layer's scratch while it runs
        return self.gradients + self.activations + max(self.logits, self.layer_scratch)

    @property
    def generation(self) -> int:
        return self.kv_cache + self.sampling

    @property
    def phase(self) -> str:
        return "training" if self.training >= self.generation else "generation"

    @property
    def peak_allocated(self) -> int:
        return self.persistent + max(self.training, self.generation)

    @property
    def total(self) -> int:
        return self.peak_allocated + self.overhead

    def parts(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in _WHAT}

    def biggest(self) -> str:
        """The largest part that is alive at the peak (the one to shrink first)."""
        alive = ["weights", "trainable", "optimizer"]
        if self.phase == "training":
            alive += ["gradients", "activations",
                      "layer_scratch" if self.layer_scratch > self.logits else "logits"]
        else:
            alive += ["kv_cache", "sampling"]
        return max(alive, key=lambda k: getattr(self, k))

    def explain(self) -> str:
        """A text table of the parts, the phase that peaks, and the inputs."""
        s, x = self.shape, self.inputs
        lines = [
            f"Memory estimate: tier {self.tier}, h={s.hidden_size} L={s.num_layers} "
            f"V={s.vocab_size} ({s.parameters / 1e9:.2f}B params); LoRA r={x.get('lora_r')}; "
            f"micro-batch {x.get('micro_batch_size')} x ({x.get('prompt_tokens')} + "
            f"{x.get('completion_tokens')}) tokens; generation batch "
            f"{x.get('generation_batch_size')}; checkpointing "
            f"{'on' if x.get('gradient_checkpointing') else 'off'}",
            f"{'part':<40}{'GiB':>8}  phase",
        ]
        phase_of = {"gradients": "training", "activations": "training", "layer_scratch": "training",
                    "logits": "training", "kv_cache": "generation", "sampling": "generation"}
        for key, what in _WHAT.items():
            value = getattr(self, key)
            lines.append(f"{what:<40}{value / GiB:>8.3f}  {phase_of.get(key, 'always')}")
        lines.append(f"{'peak allocated (' + self.phase + ' phase)':<40}"
                     f"{self.peak_allocated / GiB:>8.3f}")
        lines.append(f"{'total to fit the device':<40}{self.total / GiB:>8.3f}")
        return "\n".join(lines)


def estimate_peak_memory(config, *, tier: str, group_size: int, prompts_per_step: int,
                         prompt_tokens: int, completion_tokens: int, lora_r: int | None,
                         micro_batch_size: int, generation_batch_size: int | None,
                         gradient_checkpointing: bool, dtype_bytes: int = 2,
                         reference_copy: bool = False, context_bytes: int = CUDA_CONTEXT_BYTES,
                         fragmentation: float = FRAGMENTATION) -> MemoryEstimate:
    """Estimate the peak GPU memory of one GRPO step (formulas in the module docstring).

    config: a transformers config, a ``ModelShape`` or a dict of its fields.
    tier: ``"unsloth" | "bnb4" | "plain"`` (the tier ``load_policy`` chose, not ``"auto"``).
    prompt_tokens: the *longest* prompt (templated) -- plan for the worst step, not the first.
    completion_tokens: ``max_new_tokens``; a run whose completions grow will reach it.
    lora_r: LoRA rank, or ``None`` for full fine-tuning (plain tier only).
    generation_batch_size: sequences decoded together (``None``: all of the step's completions).
    reference_copy: full fine-tuning with ``beta > 0`` keeps a frozen copy of the weights.
    Batches larger than ``group_size * prompts_per_step`` are capped at it, as the trainer does.
    """
    if tier not in TIERS:
        raise ValueError(f"tier={tier!r}: estimate for one of {TIERS} (resolve 'auto' first)")
    if lora_r is None and tier != "plain":
        raise ValueError(f"tier={tier!r} trains LoRA adapters: give lora_r")
    s = ModelShape.from_config(config)
    inputs = dict(tier=tier, group_size=group_size, prompts_per_step=prompts_per_step,
                  prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, lora_r=lora_r,
                  micro_batch_size=micro_batch_size, generation_batch_size=generation_batch_size,
                  gradient_checkpointing=gradient_checkpointing, dtype_bytes=dtype_bytes,
                  reference_copy=reference_copy, context_bytes=context_bytes,
                  fragmentation=fragmentation)
    n_completions = group_size * prompts_per_step
    mb = max(1, min(micro_batch_size, n_completions))
    gb = max(1, min(generation_batch_size or n_completions, n_completions))
    seq = prompt_tokens + completion_tokens
    a = activation_dtype_bytes(tier, dtype_bytes)

    weights = (weight_bytes(s, tier=tier, dtype_bytes=dtype_bytes)
               + dequant_scratch_bytes(s, tier=tier))
    if lora_r is None:
        n_train = s.parameters
        trainable, gradients, optimizer = (n_train * dtype_bytes, n_train * dtype_bytes,
                                           2 * n_train * dtype_bytes)
        # the trained weights are 'trainable'; a frozen reference copy (beta > 0) is 'weights'
        weights = s.parameters * dtype_bytes if reference_copy else 0
    else:
        n_train = lora_parameters(s, lora_r)
        trainable, gradients, optimizer = 4 * n_train, 4 * n_train, 8 * n_train
    kept, scratch = activation_bytes(s, tier=tier, micro_batch_size=mb,
                                     prompt_tokens=prompt_tokens,
                                     completion_tokens=completion_tokens,
                                     gradient_checkpointing=gradient_checkpointing,
                                     dtype_bytes=dtype_bytes, lora_r=lora_r)
    logits = logits_bytes(s, micro_batch_size=mb, completion_tokens=completion_tokens)
    kv = kv_cache_bytes(s, batch_size=gb, tokens=seq, dtype_bytes=a)
    sampling = sampling_scratch_bytes(s, tier=tier, batch_size=gb, prompt_tokens=prompt_tokens,
                                      completion_tokens=completion_tokens, dtype_bytes=dtype_bytes,
                                      lora=lora_r is not None,
                                      prompts=-(-gb // group_size) + (gb % group_size > 0))
    est = MemoryEstimate(weights=weights, trainable=trainable, gradients=gradients,
                         optimizer=optimizer, activations=kept, layer_scratch=scratch,
                         logits=logits, kv_cache=kv, sampling=sampling, overhead=0, tier=tier,
                         shape=s, inputs=inputs)
    overhead = context_bytes + int(fragmentation * est.peak_allocated)
    return replace(est, overhead=overhead)


def dtype_bytes_for(dtype: str, device_type: str = "cuda") -> int:
    """Bytes per element of ``ModelSettings.dtype`` (``auto``: bf16 on CUDA, fp32 on CPU)."""
    if dtype == "auto":
        return 2 if device_type == "cuda" else 4
    return {"bfloat16": 2, "float16": 2, "half": 2, "float32": 4, "float": 4}[dtype]


def _episode_tokens(g) -> int:
    """Tokens after the prompt a sequence may reach: the episode budget (model + environment
    tokens). With ``max_turns`` unset the environment's own limit is not known here: 1 turn."""
    from .rollouts import episode_budget

    return episode_budget(g.max_new_tokens, g.max_turns or 1, g.max_episode_tokens)


def estimate_for_settings(settings, config, *, tier: str, prompt_tokens: int,
                          device_type: str = "cuda") -> MemoryEstimate:
    """``estimate_peak_memory`` with every knob read from a ``TrainSettings``.

    tier: the resolved tier (``policy.tier``); config: ``policy.model.config`` or a shape.
    """
    m, g = settings.model, settings.grpo
    lora = m.lora if m.lora is not None else m.model != "tiny"
    return estimate_peak_memory(
        config, tier=tier, group_size=g.group_size, prompts_per_step=g.prompts_per_step,
        prompt_tokens=prompt_tokens, completion_tokens=_episode_tokens(g),
        lora_r=m.lora_r if lora else None, micro_batch_size=g.micro_batch_size,
        generation_batch_size=g.generation_batch_size,
        gradient_checkpointing=m.gradient_checkpointing,
        dtype_bytes=dtype_bytes_for(m.dtype, device_type),
        reference_copy=(not lora) and g.beta > 0)


# ---------------------------------------------------------------------------------------------
# refusing what will not fit
# ---------------------------------------------------------------------------------------------

def _variants(est: MemoryEstimate) -> list[tuple[str, dict]]:
    """Single-knob changes worth proposing, as (label, changed inputs)."""
    x = est.inputs
    out = []
    if x["micro_batch_size"] > 1:
        out.append((f"micro_batch_size {x['micro_batch_size']} -> {x['micro_batch_size'] // 2}",
                    {"micro_batch_size": x["micro_batch_size"] // 2}))
    gb = x["generation_batch_size"] or x["group_size"] * x["prompts_per_step"]
    if gb > 1:
        out.append((f"generation_batch_size {gb} -> {max(1, gb // 2)}",
                    {"generation_batch_size": max(1, gb // 2)}))
    if not x["gradient_checkpointing"]:
        out.append(("gradient_checkpointing False -> True", {"gradient_checkpointing": True}))
    if x["completion_tokens"] > 16:
        out.append((f"max_new_tokens {x['completion_tokens']} -> {x['completion_tokens'] // 2}",
                    {"completion_tokens": x["completion_tokens"] // 2}))
    if x["group_size"] >= 4:
        out.append((f"group_size {x['group_size']} -> {x['group_size'] // 2}",
                    {"group_size": x["group_size"] // 2}))
    if est.tier == "plain":
        out.append(("4-bit weights: tier 'bnb4' (or 'unsloth') with LoRA",
                    {"tier": "bnb4", "lora_r": x["lora_r"] or 16, "reference_copy": False}))
    elif x["lora_r"] and x["lora_r"] > 8:
        out.append((f"lora_r {x['lora_r']} -> {x['lora_r'] // 2}", {"lora_r": x["lora_r"] // 2}))
    return out


_LOWER = {
    "logits": "lower micro_batch_size or max_new_tokens (logits are micro_batch x completion "
              "tokens x vocab x 16 bytes)",
    "activations": "turn on gradient_checkpointing, or lower micro_batch_size or max_new_tokens",
    "layer_scratch": "lower micro_batch_size or max_new_tokens",
    "kv_cache": "lower generation_batch_size or max_new_tokens",
    "sampling": "lower generation_batch_size",
    "weights": "load the model in 4-bit (tier 'bnb4' or 'unsloth') or pick a smaller model",
    "trainable": "use LoRA (or a lower lora_r) instead of full fine-tuning",
    "gradients": "use LoRA (or a lower lora_r) instead of full fine-tuning",
    "optimizer": "use LoRA (or a lower lora_r) instead of full fine-tuning",
}


def check_fits(estimate: MemoryEstimate, free_bytes: int) -> None:
    """Raise ``SettingsError`` when ``estimate.total`` exceeds ``free_bytes``.

    The message names the biggest part, what to lower, and what each single change would bring
    the estimate to (re-estimated, not guessed).
    """
    if estimate.total <= free_bytes:
        return
    big = estimate.biggest()
    lines = [
        f"This run needs about {estimate.total / GiB:.1f} GiB of GPU memory but "
        f"{free_bytes / GiB:.1f} GiB is available (peak in the {estimate.phase} phase).",
        f"Biggest part: {_WHAT[big]}, {getattr(estimate, big) / GiB:.1f} GiB -- {_LOWER[big]}.",
        "Each change alone would give:",
    ]
    shape, base = estimate.shape, dict(estimate.inputs)
    options = []
    for label, change in _variants(estimate):
        alt = estimate_peak_memory(shape, **{**base, **change})
        options.append((alt.total, label))
    for total, label in sorted(options):
        mark = "fits" if total <= free_bytes else "still too big"
        lines.append(f"  - {label}: {total / GiB:.1f} GiB ({mark})")
    lines.append("Full breakdown:\n" + estimate.explain())
    raise SettingsError("\n".join(lines))


def device_budget_bytes(device=None) -> int | None:
    """Bytes this process can use on a CUDA device: what is free, plus what PyTorch already holds
    (reserved, e.g. the loaded weights), plus the CUDA context the estimate counts itself.
    ``None`` on CPU."""
    import torch

    device = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) + CUDA_CONTEXT_BYTES


def free_bytes_now(device=None) -> int | None:
    """Bytes available for new tensors right now: free on the device plus PyTorch's cached but
    unused blocks. ``None`` on CPU."""
    import torch

    device = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def longest_prompt_tokens(tokenizer, prompts: Iterable) -> int:
    """Token count of the longest templated prompt (plan memory for it, not for the first)."""
    from .rollouts import render_prompt

    texts = [render_prompt(tokenizer, p) for p in prompts]
    if not texts:
        return 0
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return max(len(x) for x in ids)


def preflight(settings, policy, *, prompt_tokens: int, free_bytes: int | None = None,
              verbose: bool = True) -> MemoryEstimate:
    """Estimate one GRPO step for ``settings`` on a loaded ``policy`` and refuse (``SettingsError``)
    when it will not fit. On CPU (no ``free_bytes`` known) it only estimates."""
    device = policy.device
    est = estimate_for_settings(settings, policy.model.config, tier=policy.tier,
                                prompt_tokens=prompt_tokens, device_type=device.type)
    if free_bytes is None:
        free_bytes = device_budget_bytes(device)
    if free_bytes is not None:
        check_fits(est, free_bytes)
    if verbose and free_bytes is not None:
        print(f"[workbench] memory: estimated peak {est.total / GiB:.1f} GiB of "
              f"{free_bytes / GiB:.1f} GiB ({est.phase} phase; biggest part: "
              f"{_WHAT[est.biggest()]})")
    return est


# ---------------------------------------------------------------------------------------------
# generation in chunks, longest first
# ---------------------------------------------------------------------------------------------

def generation_chunk_size(config, *, free_bytes: int, prompt_tokens: int, completion_tokens: int,
                          dtype_bytes: int = 2, tier: str = "plain", safety: float = 0.6,
                          max_size: int | None = None, multiple_of: int = 1) -> int:
    """How many sequences to decode at once so that their KV cache and sampling scratch use at
    most ``safety * free_bytes``.

    free_bytes: what is free *now* (``free_bytes_now``), weights already loaded.
    dtype_bytes: the model dtype; the tier sets the cache dtype (fp32 for bnb4).
    Always at least 1 (one sequence that does not fit is a job for ``check_fits``), at most
    ``max_size``; rounded down to a multiple of ``multiple_of`` (e.g. ``group_size``) when that
    leaves at least one multiple.
    """
    s = ModelShape.from_config(config)
    a = activation_dtype_bytes(tier, dtype_bytes)
    per_seq = (kv_cache_bytes(s, batch_size=1, tokens=prompt_tokens + completion_tokens,
                              dtype_bytes=a)
               + sampling_scratch_bytes(s, tier=tier, batch_size=1, prompt_tokens=prompt_tokens,
                                        completion_tokens=completion_tokens,
                                        dtype_bytes=dtype_bytes))
    n = int(safety * max(free_bytes, 0) // max(per_seq, 1))
    if max_size is not None:
        n = min(n, max_size)
    if multiple_of > 1 and n >= multiple_of:
        n -= n % multiple_of
    return max(1, n)


def longest_first(lengths: list[int]) -> list[int]:
    """Indices ordered longest first (stable for ties): the first batch is the biggest, so a
    batch that runs out of memory does so at once."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def inverse_order(order: list[int]) -> list[int]:
    """``inv`` with ``[x[i] for i in order][inv[j]] == x[j]``: undo a reordering."""
    inv = [0] * len(order)
    for pos, i in enumerate(order):
        inv[i] = pos
    return inv


def front_load_longest(order: list[int], lengths: list[int], k: int) -> list[int]:
    """``order`` with the ``k`` longest items moved to the front (the rest keep their order):
    a data order whose first step is the most memory-hungry, so an OOM shows at step 1."""
    top = longest_first(lengths)[:k]
    chosen = set(top)
    return top + [i for i in order if i not in chosen]


def worst_case_completions(*, rows: int, prompt_tokens: int, completion_tokens: int,
                           vocab_size: int, group_size: int = 1, device=None,
                           seed: int = 0):
    """A ``Completions`` batch of ``rows`` sequences with every prompt and completion at full
    length (random token ids): the batch a memory probe should train on, since real completions
    grow towards ``max_new_tokens`` as a run goes on."""
    import torch

    from .rollouts import Completions

    g = torch.Generator().manual_seed(seed)
    prompt_ids = torch.randint(0, vocab_size, (rows, prompt_tokens), generator=g)
    completion_ids = torch.randint(0, vocab_size, (rows, completion_tokens), generator=g)
    comps = Completions(
        prompt_ids=prompt_ids.to(device), prompt_mask=torch.ones_like(prompt_ids).to(device),
        completion_ids=completion_ids.to(device),
        completion_mask=torch.ones_like(completion_ids).to(device),
        sample_logps=torch.zeros(rows, completion_tokens, device=device), texts=[""] * rows,
        prompts=[""] * rows, group_size=group_size,
        finished=torch.zeros(rows, dtype=torch.bool, device=device))
    return comps


def release_cached_memory(device=None) -> None:
    """Hand PyTorch's cached, unused CUDA blocks back (``torch.cuda.empty_cache``); no-op on CPU.

    Worth it once per step after generation: the KV cache grows by ``torch.cat`` and leaves
    blocks of many sizes that the training pass cannot reuse."""
    import torch

    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
# watching for creep
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MemoryRecord:
    step: int
    allocated: int      # bytes held between steps (weights, optimizer, anything leaked)
    peak: int           # max_memory_allocated during the step


class MemoryTracker:
    """Per-step GPU memory, to catch growth across steps ("creep").

    Call ``record(step)`` after each step. On CUDA it reads ``memory_allocated`` and
    ``max_memory_allocated`` and resets the peak counter so each record holds its own step's
    peak; without CUDA it records nothing. ``reader`` (a function returning
    ``(allocated, peak)``) replaces the CUDA counters, for tests.
    """

    def __init__(self, device=None, *, reader: Callable[[], tuple[int, int]] | None = None):
        import torch

        self.device = torch.device(device) if device is not None else None
        self.records: list[MemoryRecord] = []
        self._reader = reader
        cuda = torch.cuda.is_available() and (self.device is None or self.device.type == "cuda")
        self.enabled = reader is not None or cuda
        if reader is None and cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def _read(self) -> tuple[int, int]:
        if self._reader is not None:
            return self._reader()
        import torch

        out = torch.cuda.memory_allocated(self.device), torch.cuda.max_memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        return out

    def record(self, step: int) -> MemoryRecord | None:
        if not self.enabled:
            return None
        allocated, peak = self._read()
        rec = MemoryRecord(step=step, allocated=allocated, peak=peak)
        self.records.append(rec)
        return rec

    def at(self, step: int) -> MemoryRecord | None:
        """The record of ``step`` (or the first one after it)."""
        return next((r for r in self.records if r.step >= step), None)

    @property
    def peak(self) -> int:
        return max((r.peak for r in self.records), default=0)

    def creep_bytes(self, after_step: int = 5) -> int:
        """Growth of the memory held between steps from ``after_step`` to the last record
        (0 without enough records). The first steps allocate optimizer state and warm caches,
        so compare from a later step."""
        first = self.at(after_step)
        if first is None or not self.records or self.records[-1].step <= first.step:
            return 0
        return self.records[-1].allocated - first.allocated

    def peak_creep_bytes(self, after_step: int = 5) -> int:
        """Growth of the per-step peak from ``after_step`` to the last record."""
        first = self.at(after_step)
        if first is None or not self.records or self.records[-1].step <= first.step:
            return 0
        return self.records[-1].peak - first.peak


__all__ = [
    "CUDA_CONTEXT_BYTES", "MemoryEstimate", "MemoryRecord", "MemoryTracker", "ModelShape",
    "PUBLISHED_SHAPES", "activation_bytes", "check_fits", "device_budget_bytes",
    "estimate_for_settings", "estimate_peak_memory", "free_bytes_now", "front_load_longest",
    "generation_chunk_size", "inverse_order", "kv_cache_bytes", "longest_first",
    "longest_prompt_tokens", "lora_parameters", "logits_bytes", "preflight", "qwen2_config",
    "release_cached_memory", "save_random_model", "weight_bytes", "worst_case_completions",
]
