"""Multi-turn episodes in our engine vs in ``trl.GRPOTrainer`` (through ``episode_rollout``).

    python benchmarks/trl_episodes.py                 # code task, 10 steps each, interleaved
    python benchmarks/trl_episodes.py --steps 4       # a quick look

Both engines train the tiny code model (``load_policy(task="code")``, a fresh copy each) on the
``code`` task: 4 prompts x 4 episodes per optimiser step, up to 3 model turns of at most 48
tokens and 200 episode tokens, CodeFeedbackEnv in the sandbox, the same rewards and settings
(``TrainSettings``; TRL's config from ``workbench.scale.trl.grpo_config``). TRL samples through
``episode_rollout``, i.e. with our sampler, so the generation half should cost the same in both;
what differs is the update (TRL's forward over prompt + episode vs ours with shared prompts and
length pieces). Timed as ``grpo_vs_trl.py`` does: a TRL callback stamps each TRL step, then runs
one step of ours, so each pair sees the same load. Also recorded per TRL step: the share of
episode tokens that are the environment's (``env_mask`` 0, not trained on).

Writes ``benchmarks/results/trl_episodes.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
RESULTS = Path(__file__).parent / "results"

from grpo_vs_trl import OursRecorder, TRLRecorder, machine, summarise  # noqa: E402


def settings(args):
    from workbench.envs.code import EPISODE_TOKENS
    from workbench.settings import GRPOSettings, TaskSettings, TrainSettings

    g = GRPOSettings(group_size=4, prompts_per_step=4, generation_batch_size=16,
                     micro_batch_size=16, max_new_tokens=48, max_episode_tokens=EPISODE_TOKENS)
    return TrainSettings(task=TaskSettings(name="code"), grpo=g, steps=args.steps,
                         seed=args.seed, eval_examples=1, checkpoint_every=10_000,
                         device="cpu", threads=args.threads)


class EpisodeRecorder(OursRecorder):
    """Ours, with the environment's time counted in generation (our trainer logs it apart as
    ``env_seconds``; TRL's rollout time holds both)."""

    def step(self) -> None:
        super().step()
        self.rows[-1]["generation"] += self.trainer.history[-1]["env_seconds"]


def build_trl(s, ours: OursRecorder):
    from workbench.scale.trl import build_trainer

    trainer, _ = build_trainer(s, None, verbose=False, progress=False, save_strategy="no")
    rec = TRLRecorder(ours, s.threads)
    env_share: list[float] = []
    rollout = trainer.rollout_func

    def timed_rollout(prompts, t):
        t0 = time.perf_counter()
        out = rollout(prompts, t)
        rec._gen += time.perf_counter() - t0
        masks = out["env_mask"]
        env_share.append(1 - sum(map(sum, masks)) / max(1, sum(map(len, masks))))
        return out

    trainer.rollout_func = timed_rollout
    rec.instrument(trainer)            # times TRL's reward call (its generation is ours here)
    trainer.add_callback(rec.callback())
    return trainer, rec, env_share


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=1, help="first steps left out of the means")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)

    import torch

    from workbench.trainer import GRPOTrainer

    torch.set_num_threads(args.threads)
    s = settings(args)
    load_before, t_start = os.getloadavg(), time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = EpisodeRecorder(GRPOTrainer(s, out=None, verbose=False))
        trainer, rec, env_share = build_trl(s, ours)
        trainer.train()
    per_step = s.grpo.group_size * s.grpo.prompts_per_step
    res = {"command": " ".join(["python benchmarks/trl_episodes.py",
                                *(argv if argv is not None else sys.argv[1:])]).strip(),
           "machine": machine(), "config": {k: str(v) for k, v in vars(args).items()},
           "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
           "seconds_total": time.perf_counter() - t_start,
           "ours": summarise(ours.rows, args.warmup, per_step),
           "trl": summarise(rec.rows, args.warmup, per_step),
           "trl_env_token_share": env_share, "ours_steps": ours.rows, "trl_steps": rec.rows}
    o, t = res["ours"], res["trl"]
    res["ratio_mean"] = o["wall_mean"] / t["wall_mean"]
    res["ratio_generation"] = o["generation_mean"] / t["generation_mean"]
    res["ratio_rest"] = ((o["wall_mean"] - o["generation_mean"])
                         / (t["wall_mean"] - t["generation_mean"]))
    pairs = [a["wall"] / b["wall"] for a, b in zip(ours.rows, rec.rows)][args.warmup:]
    res["ratio_median_of_pairs"] = statistics.median(pairs) if pairs else None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "trl_episodes.json").write_text(json.dumps(res, indent=1))
    print("| | ours | TRL + episode_rollout |\n|---|---|---|")
    for label, key in (("mean step s", "wall_mean"), ("median step s", "wall_median"),
                       ("mean generation incl. environment s", "generation_mean"),
                       ("mean reward s", "reward_time_mean"),
                       ("reward, first 5 steps", "reward_first5"),
                       ("reward, last 5 steps", "reward_last5")):
        print(f"| {label} | {o.get(key, float('nan')):.3f} | {t.get(key, float('nan')):.3f} |")
    print(f"\nstep time ours / TRL: mean {res['ratio_mean']:.2f}, median of pairs "
          f"{res['ratio_median_of_pairs']:.2f}; generation {res['ratio_generation']:.2f}, "
          f"rest of the step {res['ratio_rest']:.2f}; environment share of TRL's episode "
          f"tokens {statistics.fmean(env_share):.2f}; load {load_before[0]:.1f} -> "
          f"{res['loadavg_after'][0]:.1f}; {res['seconds_total']:.0f} s in all")
    return res


if __name__ == "__main__":
    main()
