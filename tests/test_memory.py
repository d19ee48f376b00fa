"""The memory estimate: parts by hand, monotone in every knob, honest where a CPU can check it.

The CPU checks compare the formulas with real objects: every tensor autograd saves in a real
Qwen2 forward, the tensors of a real DynamicCache, a real peft model's LoRA parameters, a real
bitsandbytes model's 4-bit weights, and (with glibc's malloc counters) the peak of a real
training step and of a real ``sample_group``. What only a GPU can check lives in test_gpu.py.
"""
from __future__ import annotations

import ctypes
import gc
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from workbench.memory import (
    CUDA_CONTEXT_BYTES, NF4_BYTES_PER_WEIGHT, NF4_TABLE_BYTES, PUBLISHED_SHAPES, GiB,
    MemoryTracker, ModelShape, activation_bytes, check_fits, estimate_for_settings,
    estimate_peak_memory, front_load_longest, generation_chunk_size, inverse_order,
    kv_cache_bytes, longest_first, lora_parameters, preflight, qwen2_config, save_random_model,
    weight_bytes, worst_case_completions,
)
from workbench.settings import GRPOSettings, ModelSettings, SettingsError, TrainSettings

SMALL = ModelShape(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                   intermediate_size=128, vocab_size=1000)
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _small(**kw):
    args = dict(tier="plain", group_size=4, prompts_per_step=1, prompt_tokens=8,
                completion_tokens=24, lora_r=4, micro_batch_size=2, generation_batch_size=4,
                gradient_checkpointing=False, dtype_bytes=2)
    args.update(kw)
    return estimate_peak_memory(SMALL, **args)


# ---------------------------------------------------------------------------------------------
# parts by hand
# ---------------------------------------------------------------------------------------------

def test_parts_by_hand_for_a_small_config():
    e = _small()
    # LoRA: r * (7h + 2q + 2k + 3i) per layer = 4 * (448 + 128 + 64 + 384) * 2 layers = 8192
    assert lora_parameters(SMALL, 4) == 8192
    assert (e.trainable, e.gradients, e.optimizer) == (8192 * 4, 8192 * 4, 8192 * 8)
    # weights: linears 2 * (64*64 + 2*64*32 + 64*64 + 3*64*128) = 73728; embedding 64000,
    # norms (2*2+1)*64 = 320, q/k/v biases 2 * (64 + 32 + 32) = 256 -> 138304 params in bf16
    assert SMALL.parameters == 138304 and e.weights == 138304 * 2
    # activations per layer and token (bf16, LoRA r=4): norms 8*64+8 = 520; attention
    # 4*64*2 + 4*4 = 528; MLP 3*128*2 = 768; fp32 LoRA inputs 4*(5*64 + 64 + 128) + 7*4*4 = 2160
    # -> 3976 bytes * 64 tokens (2 x 32), + float mask 2*32*32*2 = 4096, per layer; + rotary
    # cos/sin 2*64*16*2 = 4096
    assert e.activations == 2 * (3976 * 64 + 4096) + 4096 == 521216
    assert e.layer_scratch == 64 * 128 * 12                       # peft's fp32 LoRA temporaries
    assert e.logits == 16 * 2 * 24 * 1000                         # 4 fp32 copies of (2, 24, V)
    assert e.kv_cache == 2 * 2 * 32 * 32 * 4 * 2                  # 2 L k tokens batch bytes
    assert e.phase == "training" and e.biggest() == "logits"
    assert e.peak_allocated == e.weights + e.trainable + e.optimizer + e.training
    assert e.total == e.peak_allocated + CUDA_CONTEXT_BYTES + int(0.1 * e.peak_allocated)


def test_four_bit_weights_by_hand():
    # 73728 linear weights in NF4 with double quantisation + 14 layers' tables; the rest fp32
    # for bnb4 (peft upcasts it), bf16 for unsloth
    quant = int(73728 * NF4_BYTES_PER_WEIGHT) + 14 * NF4_TABLE_BYTES
    assert weight_bytes(SMALL, tier="bnb4") == quant + 64576 * 4
    assert weight_bytes(SMALL, tier="unsloth") == quant + 64576 * 2


def test_shape_from_a_transformers_config_and_the_published_numbers():
    cfg = qwen2_config("Qwen2.5-1.5B")
    s = ModelShape.from_config(cfg)
    assert s == PUBLISHED_SHAPES["Qwen2.5-1.5B"]
    assert (s.head_dim, s.kv_dim, s.tie_word_embeddings) == (128, 256, True)
    assert abs(s.parameters - 1.54e9) < 0.01e9                  # the model card says 1.54B
    assert abs(PUBLISHED_SHAPES["Qwen2.5-0.5B"].parameters - 0.49e9) < 0.01e9
    assert abs(PUBLISHED_SHAPES["Qwen2.5-3B"].parameters - 3.09e9) < 0.01e9
    assert ModelShape.from_config({"hidden_size": 64, "num_hidden_layers": 2,
                                   "num_attention_heads": 4, "intermediate_size": 128,
                                   "vocab_size": 10}).num_kv_heads == 4


# ---------------------------------------------------------------------------------------------
# monotone in every knob
# ---------------------------------------------------------------------------------------------

REAL = dict(group_size=8, prompts_per_step=4, prompt_tokens=128, completion_tokens=256,
            lora_r=16, micro_batch_size=8, generation_batch_size=32, gradient_checkpointing=True)


@pytest.mark.parametrize("tier", ["plain", "bnb4", "unsloth"])
def test_more_tokens_or_bigger_groups_need_more_memory(tier):
    shape = PUBLISHED_SHAPES["Qwen2.5-1.5B"]
    base = estimate_peak_memory(shape, tier=tier, **REAL)
    longer = estimate_peak_memory(shape, tier=tier, **{**REAL, "completion_tokens": 512})
    assert longer.total > base.total and longer.logits > base.logits
    assert longer.kv_cache > base.kv_cache
    ungrouped = {**REAL, "generation_batch_size": None}
    small = estimate_peak_memory(shape, tier=tier, **ungrouped)
    big = estimate_peak_memory(shape, tier=tier, **{**ungrouped, "group_size": 16})
    assert big.generation > small.generation and big.total >= small.total
    more_mb = estimate_peak_memory(shape, tier=tier, **{**REAL, "micro_batch_size": 16})
    assert more_mb.training > base.training


@pytest.mark.parametrize("tier", ["plain", "bnb4", "unsloth"])
def test_gradient_checkpointing_needs_less(tier):
    shape = PUBLISHED_SHAPES["Qwen2.5-0.5B"]
    on = estimate_peak_memory(shape, tier=tier, **REAL)
    off = estimate_peak_memory(shape, tier=tier, **{**REAL, "gradient_checkpointing": False})
    assert on.activations < off.activations and on.total < off.total


def test_four_bit_needs_less_than_bf16():
    for name, shape in PUBLISHED_SHAPES.items():
        plain = estimate_peak_memory(shape, tier="plain", **REAL)
        for tier in ("bnb4", "unsloth"):
            four = estimate_peak_memory(shape, tier=tier, **REAL)
            assert four.weights < plain.weights, (name, tier)
            assert four.total < plain.total, (name, tier)
    # Less than one might hope at 0.5B: its 136M embedding parameters stay unquantised (fp32
    # in bnb4). And peft's prepare_model_for_kbit_training runs bnb4's residual
    # stream in fp32, so *without* checkpointing its activations outweigh bf16's.
    shape = PUBLISHED_SHAPES["Qwen2.5-1.5B"]
    no_ckpt = {**REAL, "gradient_checkpointing": False}
    assert (estimate_peak_memory(shape, tier="bnb4", **no_ckpt).activations
            > estimate_peak_memory(shape, tier="plain", **no_ckpt).activations)


def test_lora_rank_and_full_finetuning():
    low, high = _small(lora_r=2), _small(lora_r=8)
    assert low.trainable < high.trainable and low.optimizer < high.optimizer
    full = _small(lora_r=None, dtype_bytes=4)
    assert full.trainable == SMALL.parameters * 4 and full.optimizer == SMALL.parameters * 8
    assert full.weights == 0                          # the trained weights count as "trainable"
    assert _small(lora_r=None, dtype_bytes=4, reference_copy=True).weights == SMALL.parameters * 4
    with pytest.raises(ValueError, match="LoRA"):
        _small(tier="bnb4", lora_r=None)
    with pytest.raises(ValueError, match="auto"):
        _small(tier="auto")


def test_batches_are_capped_at_the_completions_per_step():
    assert _small(micro_batch_size=64).logits == _small(micro_batch_size=4).logits
    assert _small(generation_batch_size=None).kv_cache == _small(generation_batch_size=4).kv_cache


def test_explain_lists_every_part_and_the_peak():
    text = _small().explain()
    for word in ("base weights", "LoRA", "AdamW", "activations", "logits", "KV cache",
                 "CUDA context", "peak allocated (training phase)", "total to fit"):
        assert word in text


# ---------------------------------------------------------------------------------------------
# refusing what will not fit
# ---------------------------------------------------------------------------------------------

def test_check_fits_passes_when_it_fits_and_names_the_fix_when_not():
    shape = PUBLISHED_SHAPES["Qwen2.5-1.5B"]
    est = estimate_peak_memory(shape, tier="bnb4", **{**REAL, "gradient_checkpointing": False})
    check_fits(est, est.total)                                      # exactly enough: fine
    with pytest.raises(SettingsError) as info:
        check_fits(est, 15 * GiB)                                   # a T4
    msg = str(info.value)
    assert "15.0 GiB is available" in msg and f"{est.total / GiB:.1f} GiB" in msg
    assert "Biggest part: activations" in msg and "gradient_checkpointing" in msg
    assert "gradient_checkpointing False -> True" in msg and "(fits)" in msg
    assert "micro_batch_size 8 -> 4" in msg and "generation_batch_size 32 -> 16" in msg
    assert "total to fit the device" in msg                          # the breakdown comes along


def test_check_fits_on_logits_and_on_weights():
    shape = PUBLISHED_SHAPES["Qwen2.5-0.5B"]
    est = estimate_peak_memory(shape, tier="unsloth", **{**REAL, "micro_batch_size": 32})
    with pytest.raises(SettingsError, match="Biggest part: training logits.*micro_batch_size"):
        check_fits(est, 8 * GiB)
    big = estimate_peak_memory(PUBLISHED_SHAPES["Qwen2.5-3B"], tier="plain",
                               **{**REAL, "lora_r": None, "micro_batch_size": 1})
    with pytest.raises(SettingsError) as info:
        check_fits(big, 16 * GiB)
    assert "Biggest part: LoRA / trained weights" in str(info.value) or \
        "Biggest part: AdamW" in str(info.value)
    assert "4-bit weights: tier 'bnb4'" in str(info.value)


# ---------------------------------------------------------------------------------------------
# generation chunks, ordering, tracking
# ---------------------------------------------------------------------------------------------

def test_generation_chunk_size_bounds():
    shape = PUBLISHED_SHAPES["Qwen2.5-1.5B"]
    kw = dict(prompt_tokens=128, completion_tokens=256, dtype_bytes=2)
    assert generation_chunk_size(shape, free_bytes=0, **kw) == 1
    assert generation_chunk_size(shape, free_bytes=1024, **kw) == 1
    sizes = [generation_chunk_size(shape, free_bytes=g * GiB, **kw) for g in (1, 2, 4, 8)]
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0] > 1
    assert generation_chunk_size(shape, free_bytes=80 * GiB, max_size=64, **kw) == 64
    n = generation_chunk_size(shape, free_bytes=3 * GiB, multiple_of=8, **kw)
    assert n % 8 == 0
    # the chunk really fits: its KV cache + scratch stay within safety * free
    est = estimate_peak_memory(shape, tier="plain", group_size=n, prompts_per_step=1,
                               prompt_tokens=128, completion_tokens=256, lora_r=16,
                               micro_batch_size=1, generation_batch_size=n,
                               gradient_checkpointing=True)
    assert est.generation <= 0.6 * 3 * GiB
    # bnb4 keeps its cache in fp32: fewer sequences fit
    assert generation_chunk_size(shape, free_bytes=8 * GiB, tier="bnb4", **kw) < \
        generation_chunk_size(shape, free_bytes=8 * GiB, tier="plain", **kw)


def test_longest_first_and_front_loading():
    lengths = [3, 9, 1, 9, 5]
    order = longest_first(lengths)
    assert order == [1, 3, 4, 0, 2]                                 # stable among the 9s
    inv = inverse_order(order)
    reordered = [lengths[i] for i in order]
    assert [reordered[inv[j]] for j in range(len(lengths))] == lengths
    assert front_load_longest([4, 2, 0, 3, 1], lengths, k=2) == [1, 3, 4, 2, 0]


def test_memory_tracker_detects_creep_and_is_silent_on_cpu():
    readings = iter([(100, 500), (100, 520), (100, 510), (150, 600), (200, 700)])
    t = MemoryTracker(reader=lambda: next(readings))
    for step in range(1, 6):
        t.record(step)
    assert t.creep_bytes(after_step=2) == 100 and t.peak_creep_bytes(after_step=2) == 180
    assert t.creep_bytes(after_step=9) == 0 and t.peak == 700
    steady = iter([(100, 500)] * 5)
    t = MemoryTracker(reader=lambda: next(steady))
    for step in range(5):
        t.record(step)
    assert t.creep_bytes(after_step=1) == 0
    if not torch.cuda.is_available():
        cpu = MemoryTracker("cpu")
        assert not cpu.enabled and cpu.record(1) is None and cpu.creep_bytes() == 0


# ---------------------------------------------------------------------------------------------
# CPU validation against real objects
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def random_folder(tmp_path_factory):
    """A randomly initialised tiny Qwen2 (fp32) with a small tokenizer, saved like a hub model."""
    folder = tmp_path_factory.mktemp("random-qwen2")
    save_random_model(qwen2_config(SMALL, vocab_size=1000), folder, dtype="float32")
    return folder


def _saved_bytes(model, batch: int, prompt: int, completion: int) -> int:
    """Bytes of every distinct tensor autograd saves in a training forward (parameters left
    out), with left padding as the trainer has it."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            seen.setdefault(st.data_ptr(), st.nbytes())
        return t

    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (batch, prompt + completion))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, attention_mask=mask, position_ids=positions,
              logits_to_keep=completion + 1)
    return sum(seen.values())


@pytest.mark.parametrize("dtype,lora_r", [(torch.bfloat16, 4), (torch.float32, None),
                                          (torch.bfloat16, None)])
def test_activation_formula_equals_what_autograd_saves(dtype, lora_r):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(qwen2_config(SMALL), dtype=dtype)
    if lora_r:
        model = get_peft_model(model, LoraConfig(r=lora_r, lora_alpha=8, target_modules=TARGETS))
    measured = _saved_bytes(model, batch=2, prompt=8, completion=24)
    kept, _ = activation_bytes(SMALL, tier="plain", micro_batch_size=2, prompt_tokens=8,
                               completion_tokens=24,
                               dtype_bytes=2 if dtype == torch.bfloat16 else 4,
                               lora_r=lora_r)
    assert kept == measured


def test_bnb4_activations_and_weights_equal_a_real_model(random_folder):
    pytest.importorskip("bitsandbytes")
    from workbench.models import load_policy

    pol = load_policy(ModelSettings(model=str(random_folder), tier="bnb4", lora=True, lora_r=4),
                      device="cpu", verbose=False)
    measured = _saved_bytes(pol.model, batch=2, prompt=8, completion=24)
    kept, _ = activation_bytes(SMALL, tier="bnb4", micro_batch_size=2, prompt_tokens=8,
                               completion_tokens=24, lora_r=4)
    assert kept == measured
    # weights: packed 4-bit codes, their quant states, and the fp32 rest (LoRA left out)
    import bitsandbytes as bnb

    actual = sum(p.numel() * p.element_size() for n, p in pol.model.named_parameters()
                 if "lora_" not in n)
    for m in pol.model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            qs = m.weight.quant_state
            actual += qs.absmax.nbytes + qs.code.nbytes
            if qs.nested:
                actual += qs.state2.absmax.nbytes + qs.state2.code.nbytes + 4
    assert abs(weight_bytes(SMALL, tier="bnb4") - actual) / actual < 0.02
    assert lora_parameters(SMALL, 4) == pol.trainable_parameters


def test_lora_parameter_count_equals_peft(random_folder):
    from workbench.models import load_policy

    for r in (1, 4, 8):
        pol = load_policy(ModelSettings(model=str(random_folder), lora=True, lora_r=r),
                          device="cpu", verbose=False)
        assert pol.trainable_parameters == lora_parameters(pol.model.config, r)


def test_kv_cache_formula_equals_a_real_dynamic_cache():
    from transformers import AutoModelForCausalLM, DynamicCache

    for dtype, nbytes in ((torch.float32, 4), (torch.bfloat16, 2)):
        model = AutoModelForCausalLM.from_config(qwen2_config(SMALL), dtype=dtype).eval()
        cache = DynamicCache()
        ids = torch.randint(0, 1000, (3, 20))
        with torch.no_grad():
            out = model(input_ids=ids, past_key_values=cache, use_cache=True)
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            model(input_ids=nxt, past_key_values=cache, use_cache=True)     # one decode step
        actual = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
        assert actual == kv_cache_bytes(SMALL, batch_size=3, tokens=21, dtype_bytes=nbytes)


# -- the peak of a whole step, measured with glibc's malloc counters --------------------------

def _mallinfo():
    try:
        libc = ctypes.CDLL("libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return None

    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]

    fn.restype = Info

    def live() -> int:
        info = fn()
        return info.uordblks + info.hblkhd             # heap in use + mmapped blocks
    return live


def _cpu_peak(fn) -> int:
    """Peak bytes allocated on the CPU heap above the start while ``fn`` runs, sampled after
    every aten op (a CPU stand-in for torch.cuda.max_memory_allocated)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    live = _mallinfo()

    class Peak(TorchDispatchMode):
        peak = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            self.peak = max(self.peak, live())
            return out

    gc.collect()
    base = live()
    mode = Peak()
    with mode:
        fn()
    return mode.peak - base


WIDE = ModelShape(hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2, head_dim=32,
                  intermediate_size=512, vocab_size=512)
WIDE_VOCAB = ModelShape(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                        intermediate_size=160, vocab_size=4096)


@pytest.mark.skipif(not sys.platform.startswith("linux") or _mallinfo() is None,
                    reason="needs glibc's mallinfo2")
@pytest.mark.parametrize("shape,tier,dtype,ckpt", [
    (WIDE_VOCAB, "plain", "float32", False),    # logits dominate (activations: exact test above)
    (WIDE, "plain", "bfloat16", True),          # fp32 LoRA casts; checkpointing rebuilds a layer
    (WIDE, "bnb4", "float32", True),            # 4-bit weights, fp32 residual stream
])
def test_training_and_generation_peaks_on_cpu_match_the_estimate(tmp_path, monkeypatch, shape,
                                                                  tier, dtype, ckpt):
    """One real training update (trainer._update) and one real sample_group on CPU, against the
    estimate's training and generation phases: training within 10%, generation within 20%.
    (bf16 matmuls are slow on most CPUs, so only one case uses them.)"""
    if tier == "bnb4":
        pytest.importorskip("bitsandbytes")
    from workbench.models import load_policy
    from workbench.rollouts import sample_group
    from workbench.tasks import get_task
    from workbench.trainer import GRPOTrainer

    save_random_model(qwen2_config(shape), tmp_path, dtype="float32")
    ms = ModelSettings(model=str(tmp_path), tier=tier, lora=True, lora_r=4, dtype=dtype,
                       gradient_checkpointing=ckpt)
    nbytes = 2 if dtype == "bfloat16" else 4
    pol = load_policy(ms, device="cpu", verbose=False)
    B, P, T = 4, 8, 32
    settings = TrainSettings(model=ms, grpo=GRPOSettings(
        group_size=4, prompts_per_step=1, micro_batch_size=B, generation_batch_size=4,
        max_new_tokens=T))
    task = get_task("sum", n_train=20, n_test=5)
    trainer = GRPOTrainer(settings, policy=pol, task=task, verbose=False)
    comps = worst_case_completions(rows=B, prompt_tokens=P, completion_tokens=T,
                                   vocab_size=shape.vocab_size, group_size=4)
    adv = torch.randn(B)
    trainer._update(comps, adv)                     # warm up: optimizer state, allocator arenas
    measured = _cpu_peak(lambda: trainer._update(comps, adv))
    est = estimate_peak_memory(shape, tier=tier, group_size=4, prompts_per_step=1,
                               prompt_tokens=P, completion_tokens=T, lora_r=4,
                               micro_batch_size=B, generation_batch_size=4,
                               gradient_checkpointing=ckpt, dtype_bytes=nbytes)
    assert abs(est.training - measured) / measured < 0.10, (est.training, measured)

    # the estimate's worst case: no completion ends early (an EOS id the model cannot sample)
    import workbench.rollouts as rollouts
    monkeypatch.setattr(rollouts, "_eos_ids", lambda tokenizer, model: [shape.vocab_size])
    prompts = [r["prompt"] for r in task.train.select(range(2))]
    kw = dict(group_size=4, max_new_tokens=12, batch_size=8)
    sample_group(pol.model, pol.tokenizer, prompts, **kw)
    out = {}
    measured = _cpu_peak(lambda: out.setdefault("c", sample_group(pol.model, pol.tokenizer,
                                                                  prompts, **kw)))
    c = out["c"]
    est = estimate_peak_memory(shape, tier=tier, group_size=4, prompts_per_step=2,
                               prompt_tokens=c.prompt_ids.shape[1],
                               completion_tokens=c.completion_ids.shape[1], lora_r=4,
                               micro_batch_size=B, generation_batch_size=8,
                               gradient_checkpointing=ckpt, dtype_bytes=nbytes)
    assert abs(est.generation - measured) / measured < 0.20, (est.generation, measured)


# ---------------------------------------------------------------------------------------------
# from settings, and the pre-flight
# ---------------------------------------------------------------------------------------------

def test_estimate_for_settings_reads_every_knob():
    s = TrainSettings(
        model=ModelSettings(model="Qwen/Qwen2.5-1.5B-Instruct", lora_r=32,
                            gradient_checkpointing=True),
        grpo=GRPOSettings(group_size=8, prompts_per_step=4, generation_batch_size=16,
                          micro_batch_size=4, max_new_tokens=300))
    shape = PUBLISHED_SHAPES["Qwen2.5-1.5B"]
    got = estimate_for_settings(s, qwen2_config(shape), tier="bnb4", prompt_tokens=100)
    want = estimate_peak_memory(shape, tier="bnb4", group_size=8, prompts_per_step=4,
                                prompt_tokens=100, completion_tokens=300, lora_r=32,
                                micro_batch_size=4, generation_batch_size=16,
                                gradient_checkpointing=True, dtype_bytes=2)
    assert got == want
    tiny = estimate_for_settings(TrainSettings(), SMALL, tier="plain", prompt_tokens=30,
                                 device_type="cpu")
    assert tiny.inputs["lora_r"] is None and tiny.inputs["dtype_bytes"] == 4


def test_preflight_refuses_with_the_message(random_folder):
    from workbench.models import load_policy

    ms = ModelSettings(model=str(random_folder), lora=True, lora_r=4)
    pol = load_policy(ms, device="cpu", verbose=False)
    s = TrainSettings(model=ms)
    est = preflight(s, pol, prompt_tokens=30, verbose=False)        # CPU: estimate only
    assert est.total > 0
    with pytest.raises(SettingsError, match="Each change alone would give"):
        preflight(s, pol, prompt_tokens=30, free_bytes=est.total // 2, verbose=False)
    est2 = preflight(s, pol, prompt_tokens=30, free_bytes=est.total * 2, verbose=False)
    assert est2 == est


def test_benchmark_dry_run_exercises_the_gpu_code_path(tmp_path):
    """benchmarks/gpu_grpo.py --dry-run: the same code path on CPU with a tiny config."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_grpo.py"
    spec = importlib.util.spec_from_file_location("gpu_grpo_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "r.json"
    rows = bench.main(["--dry-run", "--in-process", "--tiers", "plain", "--steps", "3",
                       "--creep-after", "1", "--json", str(out)])
    assert out.exists() and len(rows) == 1
    row = rows[0]
    assert row["status"] == "ok" and row["tier"] == "plain" and row["steps"] == 3
    assert row["seconds_per_step"] > 0 and row["rollout_tokens_per_second"] > 0
    assert row["estimate_gib"] > 0 and row["peak_allocated_gib"] is None    # no CUDA here
