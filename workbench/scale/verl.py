"""Our task and rewards in veRL: a ``compute_score`` over our verifiers and a parquet export.

veRL (``volcengine/verl``) trains with Ray, FSDP or Megatron and vLLM/SGLang rollouts on GPUs.
It calls a custom reward once per sample, with the *response only* (its naive reward manager
decodes the response tokens) and the row's ground truth::

    compute_score(data_source, solution_str, ground_truth, extra_info=None) -> float | dict

Point veRL at this module (``config_lines`` prints these)::

    custom_reward_function.path=pkg://workbench.scale.verl
    custom_reward_function.name=compute_score

and give it the task as parquet in veRL's row format (``export_parquet``)::

    {"data_source": "sum", "prompt": [{"role": "user", "content": "Add: 7+3+5"}],
     "ability": "math", "reward_model": {"style": "rule", "ground_truth": "15"},
     "extra_info": {"split": "train", "index": 0, "knobs": "{}"}}

The score is the task's weighted total (the same numbers our engine and TRL use); the dict also
carries every component (``answer``, ``format``) and ``acc``, which veRL logs per step. veRL does
not install beside this workbench (it pins transformers < 5.11 and needs Ray); the contract is
tested here, and ``tests/test_scale.py`` calls veRL's own loader where veRL is importable.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import score_completion, task_rewards

ABILITY = {"sum": "math", "linear": "math", "gsm8k": "math", "math": "math"}


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info=None,
                  **kwargs) -> dict:
    """veRL's reward contract over the task named ``data_source``.

    solution_str: the response only. extra_info: the row's ``extra_info`` (``knobs``: the task's
    difficulty knobs as JSON, written by ``export_parquet``; veRL adds ``num_turns``...).
    Returns ``{"score": weighted total, "<component>": value, ..., "acc": 1.0 or 0.0}``; a
    component that abstains is logged as 0.0 (veRL averages these columns).
    """
    knobs = json.loads((extra_info or {}).get("knobs") or "{}")
    task = task_rewards(data_source, **knobs)
    prompt = (extra_info or {}).get("question", "")
    parts = score_completion(task, solution_str, str(ground_truth), prompt=prompt)
    out = {"score": parts.pop("total")}
    out.update({k: (0.0 if v is None else float(v)) for k, v in parts.items()})
    out["acc"] = float(out.get("answer", 0.0) >= 1.0)
    return out


def task_rows(task, split: str = "train", *, limit: int | None = None) -> list[dict]:
    """The task's rows in veRL's format (see the module docstring)."""
    data = getattr(task, split)
    n = len(data) if limit is None else min(limit, len(data))
    kind = task.name
    knobs = json.dumps(task.knobs if kind in ("sum", "linear") else {}, sort_keys=True)
    rows = []
    for i in range(n):
        r = data[i]
        rows.append({
            "data_source": kind, "prompt": list(r["prompt"]), "ability": ABILITY.get(kind, "math"),
            "reward_model": {"style": "rule", "ground_truth": str(r["answer"])},
            "extra_info": {"split": split, "index": i, "knobs": knobs,
                           "question": r.get("question", "")},
        })
    return rows


def export_parquet(task, folder: str | Path, *, limit: int | None = None) -> dict[str, Path]:
    """Write ``train.parquet`` and ``test.parquet`` for veRL's ``data.train_files`` /
    ``data.val_files``; returns their paths."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split in ("train", "test"):
        path = folder / f"{split}.parquet"
        pq.write_table(pa.Table.from_pylist(task_rows(task, split, limit=limit)), path)
        out[split] = path
    return out


def config_lines(data_dir: str | Path = "data/verl", model: str = "Qwen/Qwen2.5-1.5B-Instruct",
                 *, group_size: int = 8, max_new_tokens: int = 256,
                 gpus: int = 8) -> list[str]:
    """A ``python -m verl.trainer.main_ppo`` command (GRPO) as one override per line."""
    return [
        "python -m verl.trainer.main_ppo",
        "algorithm.adv_estimator=grpo",
        f"data.train_files={data_dir}/train.parquet",
        f"data.val_files={data_dir}/test.parquet",
        f"data.max_response_length={max_new_tokens}",
        f"actor_rollout_ref.model.path={model}",
        f"actor_rollout_ref.rollout.n={group_size}",
        "actor_rollout_ref.rollout.name=vllm",
        "reward.custom_reward_function.path=pkg://workbench.scale.verl",
        "reward.custom_reward_function.name=compute_score",
        f"trainer.n_gpus_per_node={gpus}",
        "trainer.nnodes=1",
    ]


def main(argv=None) -> int:
    """``python -m workbench.scale.verl --task sum --out data/verl``: parquet + the command."""
    import argparse

    from ..tasks import get_task

    p = argparse.ArgumentParser(prog="python -m workbench.scale.verl", description=main.__doc__)
    p.add_argument("--task", default="sum", help="sum | linear | gsm8k:PATH | math:PATH")
    p.add_argument("--out", default="data/verl", help="folder for train/test.parquet")
    p.add_argument("--model", default="Qwen/Qwen2.5-1.5B-Instruct")
    p.add_argument("--limit", type=int, help="rows per split at most")
    args = p.parse_args(argv)
    try:
        task = get_task(args.task)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    paths = export_parquet(task, args.out, limit=args.limit)
    print(f"wrote {paths['train']} and {paths['test']}; train with:")
    print(" \\\n    ".join(config_lines(args.out, args.model)))
    return 0


__all__ = ["compute_score", "task_rows", "export_parquet", "config_lines", "main"]

if __name__ == "__main__":
    sys.exit(main())
