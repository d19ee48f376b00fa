"""Loading a policy: the tiny default or a real model, with LoRA, in tiers.

``load_policy(settings)`` picks the first tier that can work and prints one line saying which and
why:

1. **unsloth** -- ``FastLanguageModel`` 4-bit + LoRA, when unsloth imports and CUDA is present.
2. **bnb4** -- bitsandbytes NF4 4-bit base + peft LoRA (QLoRA): on CUDA, and on CPUs where
   bitsandbytes' CPU kernels load.
3. **plain** -- fp32 (CPU) or bf16 (GPU) weights, LoRA or full fine-tuning.

The tiny model defaults to ``plain`` with full fine-tuning: at 1.7 million parameters 4-bit saves
nothing and LoRA learns slowly. Real models default to LoRA on the best tier available.

The reference policy for the KL term is the *same* model with its adapters disabled
(``policy.reference()``), so no second copy is held. Full fine-tuning has no adapters; then (and
only when ``beta > 0``) a frozen copy is kept -- affordable only for small models, and said so.
"""
from __future__ import annotations

import contextlib
import copy
import importlib.util
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from .settings import ModelSettings, SettingsError


@dataclass
class Policy:
    """A loaded policy: model + tokenizer + how it was loaded."""

    model: Any
    tokenizer: Any
    tier: str                       # unsloth | bnb4 | plain
    reason: str                     # why this tier (the printed line)
    lora: bool
    device: torch.device
    name: str = ""
    _frozen_ref: Any = field(default=None, repr=False)

    @property
    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    @property
    def total_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @contextlib.contextmanager
    def reference(self):
        """Context in which ``self.model`` (or the yielded model) acts as the reference policy."""
        if self.lora:
            with self.model.disable_adapter():
                yield self.model
            return
        if self._frozen_ref is None:
            self._frozen_ref = copy.deepcopy(self.model).eval().requires_grad_(False)
        yield self._frozen_ref


def unsloth_available() -> bool:
    """True only when unsloth is installed *and* there is a CUDA device (it raises otherwise)."""
    if not torch.cuda.is_available() or importlib.util.find_spec("unsloth") is None:
        return False
    try:
        import unsloth  # noqa: F401  (must come before transformers/peft to patch them)
    except Exception:  # unsloth raises NotImplementedError, ImportError, RuntimeError... on bad setups
        return False
    return True


def bnb_available(device: torch.device) -> tuple[bool, str]:
    if importlib.util.find_spec("bitsandbytes") is None:
        return False, "bitsandbytes is not installed"
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # broken CUDA setup etc.
        return False, f"bitsandbytes does not import ({type(exc).__name__}: {exc})"
    return True, "bitsandbytes imports"


def resolve_device(device=None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def choose_tier(settings: ModelSettings, device: torch.device) -> tuple[str, str]:
    """(tier, reason) for these settings on this device; raises SettingsError when impossible."""
    tiny = settings.model == "tiny"
    if settings.tier == "unsloth":
        if not unsloth_available():
            raise SettingsError("tier='unsloth' needs a CUDA GPU and `pip install -r requirements-gpu.txt`; "
                                "use tier='bnb4' or 'plain' (or 'auto') here.")
        return "unsloth", "asked for unsloth"
    if settings.tier == "bnb4":
        ok, why = bnb_available(device)
        if not ok:
            raise SettingsError(f"tier='bnb4' needs bitsandbytes ({why}); install requirements.txt or "
                                "use tier='plain'.")
        return "bnb4", "asked for bitsandbytes 4-bit"
    if settings.tier == "plain":
        return "plain", "asked for plain weights"
    # auto
    if tiny:
        return "plain", "tiny model: 4-bit would save nothing at 1.7M parameters"
    if device.type == "cuda" and unsloth_available():
        return "unsloth", "CUDA and unsloth present"
    if device.type == "cuda":
        ok, why = bnb_available(device)
        if ok:
            return "bnb4", "CUDA present, unsloth not installed: bitsandbytes 4-bit + peft"
        return "plain", f"CUDA present but {why}: bf16 weights"
    return "plain", "no CUDA: plain fp32 weights (bitsandbytes 4-bit on CPU is slower, ask tier='bnb4')"


def _dtype(settings: ModelSettings, device: torch.device) -> torch.dtype:
    if settings.dtype != "auto":
        return getattr(torch, settings.dtype)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_policy(settings: ModelSettings | None = None, *, device=None, task: str = "sum",
                verbose: bool = True) -> Policy:
    """Load the policy described by ``settings`` (default: the tiny model, full fine-tune, CPU).

    With ``model="tiny"`` the tiny model pretrained on ``task``'s corpus is used (built on first
    use, about a minute per synthetic task, then cached).
    """
    settings = settings or ModelSettings()
    device = resolve_device(device)
    path = settings.model
    if path == "tiny":
        from .tasks import TASKS
        from .tiny import ensure_tiny_model, tiny_spec_for

        if task not in TASKS:
            raise SettingsError(f"the tiny model knows only the synthetic tasks {sorted(TASKS)}; "
                                f"for {task!r} give --model a real model.")
        path = str(ensure_tiny_model(tiny_spec_for(task), verbose=verbose))
    tier, reason = choose_tier(settings, device)
    use_lora = settings.lora if settings.lora is not None else settings.model != "tiny"
    if tier in ("unsloth", "bnb4") and not use_lora:
        raise SettingsError(f"tier={tier!r} trains through LoRA adapters (4-bit weights are frozen): "
                            "set lora=True, or tier='plain' for full fine-tuning.")
    if tier == "unsloth":
        model, tok = _load_unsloth(path, settings)
    else:
        model, tok = _load_hf(path, settings, tier, device)
        if use_lora:
            model = _add_lora(model, settings, quantized=tier == "bnb4")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if tier == "bnb4" and device.type == "cpu":
        _avoid_bnb_cpu_repack(model)
    line = (f"[workbench] model {settings.model!r}: tier {tier} ({reason}); "
            f"{'LoRA r=%d' % settings.lora_r if use_lora else 'full fine-tune'} on {device.type}")
    if verbose:
        print(line)
    pol = Policy(model=model, tokenizer=tok, tier=tier, reason=reason, lora=use_lora,
                 device=device, name=settings.model)
    return pol


def _load_hf(path: str, settings: ModelSettings, tier: str, device: torch.device):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"dtype": _dtype(settings, device)}
    if tier == "bnb4":
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if device.type == "cuda" else torch.float32
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute)
        kwargs["device_map"] = {"": device.index or 0} if device.type == "cuda" else {"": "cpu"}
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "config.json")):
        raise SettingsError(f"could not load model {path!r}: the folder has no config.json "
                            "(save a model there with save_pretrained).")
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise SettingsError(
            f"could not load model {path!r}: {exc}\nGive a local folder saved with save_pretrained, "
            "or a hub id when this machine can reach the hub (set HF_HUB_OFFLINE=0).") from None
    if tier != "bnb4":
        model = model.to(device)
    if settings.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    return model, tok


def _add_lora(model, settings: ModelSettings, *, quantized: bool):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if quantized:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=settings.gradient_checkpointing)
    config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha,
                        lora_dropout=settings.lora_dropout, bias="none", task_type="CAUSAL_LM",
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                        "gate_proj", "up_proj", "down_proj"])
    return get_peft_model(model, config)


def _load_unsloth(path: str, settings: ModelSettings):
    from unsloth import FastLanguageModel  # imported first by unsloth_available()

    model, tok = FastLanguageModel.from_pretrained(
        model_name=path, max_seq_length=settings.max_seq_length, load_in_4bit=True,
        dtype=None, fast_inference=False)
    model = FastLanguageModel.get_peft_model(
        model, r=settings.lora_r, lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout, bias="none",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        use_gradient_checkpointing="unsloth" if settings.gradient_checkpointing else False,
        random_state=0)
    return model, tok


def _avoid_bnb_cpu_repack(model) -> None:
    """bitsandbytes on CPUs with AVX512-BF16 repacks 4-bit weights into an inference-only layout
    after an eval-mode forward, and the next training step then fails ("a view of a leaf Variable
    that requires grad is being used in an in-place operation"). Switch that path off."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def save_policy_weights(policy: Policy, folder: str | os.PathLike) -> None:
    """Adapter (LoRA) or full weights, plus the tokenizer, loadable with from_pretrained."""
    policy.model.save_pretrained(folder)
    policy.tokenizer.save_pretrained(folder)


def load_policy_weights(policy: Policy, folder: str | os.PathLike) -> None:
    """Load weights saved by ``save_policy_weights`` into an already-built ``policy`` in place."""
    from safetensors.torch import load_file

    folder = os.fspath(folder)
    if policy.lora:
        from peft import set_peft_model_state_dict

        state = load_file(os.path.join(folder, "adapter_model.safetensors"))
        set_peft_model_state_dict(policy.model, state)
    else:
        state = load_file(os.path.join(folder, "model.safetensors"))
        missing, unexpected = policy.model.load_state_dict(state, strict=False)
        # tied embeddings are saved once; anything else missing is a real mismatch
        missing = [k for k in missing if k != "lm_head.weight"]
        if missing or unexpected:
            raise RuntimeError(f"checkpoint does not match the model: missing {missing[:5]}, "
                               f"unexpected {unexpected[:5]}")
