"""Command line: ``python -m workbench train | sft | eval | inspect | build | trl-train``.

    python -m workbench train --out runs/first            # the tiny default, a few minutes on CPU
    python -m workbench train --resume runs/first         # continue a killed run
    python -m workbench train --resume runs/first --steps 300   # ... and train it longer
    python -m workbench eval --model runs/first/checkpoints/step-000150/weights
    python -m workbench inspect runs/first                # what happened in a run
    python -m workbench sft --out runs/sft                # SFT on the task's teacher traces
    python -m workbench build --all                       # every tiny model the course uses
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m workbench", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="run GRPO and evaluate before/after")
    where = t.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="new run folder")
    where.add_argument("--resume", metavar="DIR",
                       help="resume the run in DIR from its newest complete checkpoint, with its "
                       "own settings; only --steps, --checkpoint-every, --device and --threads "
                       "may change them")
    _common(t)
    t.add_argument("--steps", type=int, help="GRPO steps (default 150)")
    t.add_argument("--group-size", type=int, help="completions per prompt (default 8)")
    t.add_argument("--prompts-per-step", type=int, help="prompts per step (default 8)")
    t.add_argument("--loss-type", choices=["grpo", "bnpo", "dr_grpo", "dapo"])
    t.add_argument("--lr", type=float, help="learning rate")
    t.add_argument("--beta", type=float, help="KL weight (default 0)")
    t.add_argument("--lora", action="store_true", help="train LoRA adapters (default for real models)")
    t.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default 25)")
    t.add_argument("--eval-examples", type=int, help="held-out problems evaluated (default 200)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    t.add_argument("--unmask-environment-tokens", action="store_true",
                   help="train on environment tokens too (Search-R1's ablation; default: masked)")

    e = sub.add_parser("eval", help="held-out greedy accuracy of a model")
    _common(e)
    e.add_argument("--examples", type=int, default=200)

    i = sub.add_parser("inspect", help="short text summary of a run folder")
    i.add_argument("run", help="run folder")

    b = sub.add_parser("build", help="build (or find cached) the locally trained tiny models")
    b.add_argument("--task", nargs="+", default=[], metavar="TASK",
                   help="tiny models for these synthetic tasks (default: sum)")
    b.add_argument("--latent", action="store_true",
                   help="notebook 09's Coconut and recurrent-depth models")
    b.add_argument("--all", action="store_true",
                   help=f"every model the notebooks use: {', '.join(COURSE_TASKS)} + --latent")
    b.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own)")
    from .scale.trl import add_cli  # trl-train: the same task in trl.GRPOTrainer

    add_cli(sub)
    from .sft import add_cli as add_sft_cli  # sft: supervised fine-tuning on traces

    add_sft_cli(sub)
    return p


COURSE_TASKS = ("sum", "sum_bilingual", "code", "search")   # the tiny models the notebooks use


def _build(args) -> int:
    """Build what is asked for (cached ones are only found), then a table of what each cost."""
    import time

    import torch

    from .settings import SettingsError
    from .tasks import TASKS
    from .tiny import ensure_tiny_model, tiny_path, tiny_spec_for

    tasks = list(dict.fromkeys(list(COURSE_TASKS if args.all else ()) + args.task))
    latent = args.all or args.latent
    if not tasks and not latent:
        tasks = ["sum"]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise SettingsError(f"--task {' '.join(unknown)}: no such synthetic task; choose from "
                            f"{', '.join(sorted(TASKS))}.")
    if args.threads is not None:
        if args.threads < 1:
            raise SettingsError(f"--threads {args.threads}: must be at least 1.")
        torch.set_num_threads(args.threads)
    builds = [(f"tiny model: {t}", tiny_path(tiny_spec_for(t)),
               lambda t=t: ensure_tiny_model(tiny_spec_for(t))) for t in tasks]
    if latent:
        from .latent.coconut import coconut_path, ensure_coconut_models
        from .latent.recurrent import ensure_recurrent_model, recurrent_path

        builds += [("Coconut models (latent)", coconut_path(), ensure_coconut_models),
                   ("recurrent-depth model (latent)", recurrent_path(), ensure_recurrent_model)]
    rows, total = [], 0.0
    for name, folder, build in builds:
        cached = (folder / "build_info.json").exists()
        t0 = time.time()
        build()
        took = time.time() - t0
        total += 0.0 if cached else took
        info = json.loads((folder / "build_info.json").read_text())
        rows.append(f"  {name:32s} {'cached' if cached else 'built now in %.0f s' % took:>18s}"
                    f"   (its build took {info.get('seconds', '?')} s)  {folder}")
    print(f"{len(builds)} model(s); built now: {total:.0f} s of wall time\n" + "\n".join(rows))
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", help="sum (default) | linear | code (RLEF: 3-turn episodes with "
                   "execution feedback) | search (BM25 search tool on a generated world) | "
                   "gsm8k:PATH | math:PATH | mbpp:PATH")
    p.add_argument("--model", help="'tiny' (default), a local folder or a hub id")
    p.add_argument("--tier", choices=["auto", "unsloth", "bnb4", "plain"])
    p.add_argument("--max-new-tokens", type=int, help="tokens per model turn")
    p.add_argument("--max-turns", type=int,
                   help="model turns per episode (default: the task's environment's own)")
    p.add_argument("--max-episode-tokens", type=int,
                   help="model + environment tokens per episode (default: max-new-tokens * turns)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="cpu | cuda | cuda:1 (default: cuda if present)")
    p.add_argument("--threads", type=int, help="torch CPU threads")


def settings_from_args(args, base=None):
    """TrainSettings from the flags given, over ``base`` (a resumed run's own settings) or the
    defaults. Only flags actually given change anything."""
    from .settings import TrainSettings

    s = base or TrainSettings()
    m, g, t = s.model, s.grpo, s.task
    if args.model:
        m = replace(m, model=args.model)
    if args.tier:
        m = replace(m, tier=args.tier)
    if getattr(args, "lora", False):
        m = replace(m, lora=True)
    if args.task:
        t = replace(t, name=args.task)
    for flag, field in [("max_new_tokens", "max_new_tokens"), ("group_size", "group_size"),
                        ("prompts_per_step", "prompts_per_step"), ("loss_type", "loss_type"),
                        ("lr", "learning_rate"), ("beta", "beta"), ("max_turns", "max_turns"),
                        ("max_episode_tokens", "max_episode_tokens")]:
        value = getattr(args, flag, None)
        if value is not None:
            g = replace(g, **{field: value})
    if getattr(args, "unmask_environment_tokens", False):
        g = replace(g, mask_environment_tokens=False)
    if g.group_size > 0 and g.prompts_per_step > 0:     # else validation says what is wrong
        if g.group_size * g.prompts_per_step % g.micro_batch_size:
            g = replace(g, micro_batch_size=g.group_size * g.prompts_per_step)
        if g.generation_batch_size % g.group_size:
            g = replace(g, generation_batch_size=g.group_size * g.prompts_per_step)
    if t.name == "code" and g.max_episode_tokens is None:    # execution feedback is long
        from .envs.code import EPISODE_TOKENS

        g = replace(g, max_episode_tokens=EPISODE_TOKENS)
    if t.name == "search" and g.max_episode_tokens is None:  # search results are long
        from .envs.search import EPISODE_TOKENS

        g = replace(g, max_episode_tokens=EPISODE_TOKENS)
    top = {}
    for flag in ("steps", "seed", "device", "threads", "checkpoint_every", "eval_examples"):
        value = getattr(args, flag, None)
        if value is not None:
            top[flag] = value
    if base is None and m.model != "tiny" and getattr(args, "lr", None) is None:
        g = replace(g, learning_rate=1e-5 if m.lora is False else 5e-5)  # full FT vs LoRA
    return replace(s, model=m, task=t, grpo=g, **top)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; a user error prints one ``error:`` line and returns 2."""
    args = _parser().parse_args(argv)
    from .runs import RunStoreError
    from .settings import SettingsError
    from .tasks import TaskFileError

    try:
        if args.command == "inspect":
            from .runs import describe_run

            print(describe_run(args.run))
            return 0
        if args.command == "eval":
            return _eval(args)
        if args.command == "build":
            return _build(args)
        if args.command == "trl-train":
            from .scale.trl import cli_main

            return cli_main(args)
        if args.command == "sft":
            from .sft import cli_main as sft_main

            return sft_main(args)
        return _train(args)
    except (SettingsError, RunStoreError, TaskFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        folder = getattr(args, "resume", None) or getattr(args, "out", None)
        hint = (f"; continue with `python -m workbench {args.command} --resume {folder}`"
                if folder else "")
        print(f"interrupted{hint}", file=sys.stderr)
        return 130


def _train(args) -> int:
    from .trainer import GRPOTrainer, run_from_cli

    summary, out = run_from_cli(GRPOTrainer, args, settings_from_args)
    print(f"held-out accuracy: {summary['accuracy_before']:.3f} -> {summary['accuracy_after']:.3f} "
          f"({summary['steps']} steps, {summary['training_seconds']:.0f}s training, "
          f"{summary['mean_step_seconds']:.2f}s/step)")
    print(f"run folder: {out}  (plot: {out}/rewards.png, summary: {out}/summary.json; "
          f"`python -m workbench inspect {out}`)")
    return 0


def _eval(args) -> int:
    import torch

    from .models import load_policy
    from .settings import SettingsError, validate_settings
    from .tasks import get_task
    from .trainer import evaluate_policy

    s = settings_from_args(args)
    validate_settings(s)
    if args.examples < 1:
        raise SettingsError(f"--examples {args.examples}: evaluate at least 1 problem.")
    if s.threads:
        torch.set_num_threads(s.threads)
    task = get_task(s.task.name, **s.task.knobs)
    policy = load_policy(s.model, device=s.device, task=task.name)
    result = evaluate_policy(policy, task, n=args.examples, max_new_tokens=s.grpo.max_new_tokens,
                             max_turns=s.grpo.max_turns,
                             max_episode_tokens=s.grpo.max_episode_tokens)
    print(json.dumps({k: v for k, v in result.items() if k != "examples"}))
    for ex in result["examples"][:3]:
        print(f"--- {ex['prompt']!r} gold={ex['answer']} correct={ex['correct']}\n{ex['completion']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
