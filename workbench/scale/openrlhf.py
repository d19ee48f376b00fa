"""Our task and rewards in OpenRLHF: ``reward_func(queries, prompts, labels)``.

OpenRLHF (``openrlhf.cli.train_ppo_ray``: Ray, DeepSpeed, vLLM) loads a Python file given as
``--reward.remote_url FILE.py`` and calls its ``reward_func`` with

- ``queries``: prompt + response, decoded with special tokens kept (``<|im_end|>`` ... stay);
- ``prompts``: the prompts as the model saw them (chat template applied);
- ``labels``: the ``--data.label_key`` column (our gold ``answer``).

It expects ``{"rewards": tensor, "scores": tensor, "extra_logs": {name: tensor}}``. This adapter
slices each response out of its query (the prompt is a prefix of the query; trailing end-of-turn
tokens are removed, as a tokenizer's ``skip_special_tokens`` would) and scores it with the task's
own reward functions. The task comes from ``WB_TASK`` (default ``sum``) and its knobs from
``WB_TASK_KNOBS`` (JSON), since OpenRLHF passes no task name.

OpenRLHF does not install beside this workbench (it pins flash-attn, DeepSpeed, Ray and
transformers 5.15); the contract is tested here, and ``tests/test_scale.py`` calls OpenRLHF's own
loader (``SingleTurnAgentExecutor``) where OpenRLHF is importable. Write the file OpenRLHF loads
with ``write_reward_file`` (it imports this module, so the workbench must be importable there).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from . import score_completion, task_rewards

def strip_end_marks(text: str) -> str:
    """``text`` without the special tokens that end it (``<|im_end|><|endoftext|>``, ``</s>``)
    and the whitespace after them. Whitespace before the first of them stays, as a decode with
    ``skip_special_tokens=True`` would keep it. Linear in the length."""
    kept = pos = len(text)                    # text[:kept] is the answer
    while True:
        while pos > 0 and text[pos - 1].isspace():
            pos -= 1
        if text.endswith("</s>", 0, pos):
            pos = kept = pos - len("</s>")
            continue
        if text.endswith("|>", 0, pos):
            i = text.rfind("<|", max(0, pos - 40), pos - 2)
            if i >= 0 and "|" not in text[i + 2:pos - 2]:
                pos = kept = i
                continue
        return text[:kept]


def response_of(query: str, prompt: str) -> str:
    """The response inside ``query`` (= prompt + response, special tokens kept).

    The prompt is cut as the longest common prefix (a decode may differ from the prompt text by
    a space at the seam); end-of-turn markers at the end are dropped. Linear in the length.
    """
    if query.startswith(prompt):
        cut = len(prompt)
    else:
        cut = 0
        for a, b in zip(query, prompt):
            if a != b:
                break
            cut += 1
    return strip_end_marks(query[cut:])


def reward_func(queries: list[str], prompts: list[str], labels: list[str], **kwargs) -> dict:
    """OpenRLHF's reward contract over the task ``WB_TASK`` (default ``sum``).

    Returns ``{"rewards": (N,) weighted totals, "scores": (N,) the same, "extra_logs": {
    "<component>": (N,), "acc": (N,)}}`` as float tensors; abstaining components count 0.
    """
    import torch

    task = task_rewards(os.environ.get("WB_TASK", "sum"),
                        **json.loads(os.environ.get("WB_TASK_KNOBS") or "{}"))
    parts = [score_completion(task, response_of(q, p), str(label), prompt=p)
             for q, p, label in zip(queries, prompts, labels)]
    totals = torch.tensor([x["total"] for x in parts], dtype=torch.float32)        # (N,)
    names = [k for k in (parts[0] if parts else {}) if k != "total"]
    logs = {n: torch.tensor([x[n] or 0.0 for x in parts], dtype=torch.float32) for n in names}
    if "answer" in logs:
        logs["acc"] = (logs["answer"] >= 1.0).float()
    return {"rewards": totals, "scores": totals.clone(), "extra_logs": logs}


def write_reward_file(path: str | Path) -> Path:
    """A two-line file for ``--reward.remote_url PATH`` that re-exports ``reward_func``."""
    path = Path(path)
    path.write_text("# OpenRLHF loads reward_func from this file: the workbench's task rewards\n"
                    "from workbench.scale.openrlhf import reward_func  # noqa: F401\n")
    return path


def launch_flags(reward_file: str | Path = "wb_reward.py", data: str = "data/openrlhf.jsonl",
                 model: str = "Qwen/Qwen2.5-1.5B-Instruct", *, group_size: int = 8,
                 max_new_tokens: int = 256, gpus: int = 8) -> list[str]:
    """A GRPO ``openrlhf.cli.train_ppo_ray`` command (0.11 flag names) as one flag per line.

    data: jsonl rows ``{"prompt": [chat messages], "answer": gold}`` (``task.train.to_json``).
    Before 0.11 the flags were ``--remote_rm_url``, ``--label_key``, ``--n_samples_per_prompt``.
    """
    return [
        "python -m openrlhf.cli.train_ppo_ray",
        f"--actor.model_name_or_path {model}",
        f"--reward.remote_url {reward_file}",
        f"--data.prompt_dataset {data}",
        "--data.input_key prompt",
        "--data.label_key answer",
        "--data.apply_chat_template",
        "--algo.advantage.estimator group_norm",
        f"--rollout.n_samples_per_prompt {group_size}",
        f"--rollout.max_new_tokens {max_new_tokens}",
        f"--actor.num_gpus_per_node {gpus}",
        f"--vllm.num_engines {gpus}",
    ]


def main(argv=None) -> int:
    """``python -m workbench.scale.openrlhf --task sum --out data/openrlhf``: the prompts as
    jsonl, the reward file, and the command."""
    import argparse

    from ..tasks import get_task

    p = argparse.ArgumentParser(prog="python -m workbench.scale.openrlhf",
                                description=main.__doc__)
    p.add_argument("--task", default="sum", help="sum | linear | gsm8k:PATH | math:PATH")
    p.add_argument("--out", default="data/openrlhf", help="folder for train.jsonl + wb_reward.py")
    p.add_argument("--model", default="Qwen/Qwen2.5-1.5B-Instruct")
    args = p.parse_args(argv)
    import datasets

    datasets.disable_progress_bars()
    try:
        task = get_task(args.task)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "train.jsonl"
    task.train.select_columns(["prompt", "answer"]).to_json(str(data))
    reward = write_reward_file(out / "wb_reward.py")
    print(f"wrote {data} and {reward}; train with (WB_TASK={task.name.split(':')[0]}):")
    print(" \\\n    ".join(launch_flags(reward, data, args.model)))
    return 0


__all__ = ["main", "reward_func", "response_of", "strip_end_marks", "write_reward_file", "launch_flags"]

if __name__ == "__main__":
    sys.exit(main())
