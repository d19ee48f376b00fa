"""Our math verifier vs Math-Verify 0.9 on the labelled pairs, side by side in one run.

    python benchmarks/math_verifier.py                     # summary + disagreements
    python benchmarks/math_verifier.py --markdown          # the tables for benchmarks/README.md
    python benchmarks/math_verifier.py --data other.jsonl  # pairs the project has not seen
    python benchmarks/math_verifier.py --ours-only         # our accuracy and latency alone
                                                           # (A/B of two checkouts via PYTHONPATH)

Each line of the data: {"gold", "prediction", "label", "reason"} and optionally "class" (then
accuracy is also reported per class). Both verifiers get the same
strings: ours ``verify_math(prediction, gold)``, Math-Verify ``verify(parse(gold),
parse(prediction))`` with its defaults, the gold wrapped in ``$...$`` as its README does (its
LaTeX extraction needs delimiters; its signal.alarm timeouts need the main thread, so the run is
single-threaded). Latency is per pair, parse and compare included, after one warm-up
call each (our sympy worker is started first, so neither pays a cold start).
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

DATA = Path(__file__).parent / "data" / "math_pairs.jsonl"


def load(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def ours():
    from verifiers.math import verify_math, warm_up
    warm_up(1)
    verify_math("$\\frac{1}{2}$", "0.5")
    return lambda gold, prediction: verify_math(prediction, gold).correct


def math_verify():
    from math_verify import parse, verify
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)   # its timeout warnings
    verify(parse("$\\frac{1}{2}$"), parse("0.5"))

    def check(gold, prediction):
        # Its LaTeX extraction needs delimiters: a bare gold costs it ~25 points of accuracy.
        if "$" not in gold and "\\boxed" not in gold:
            gold = f"${gold}$"
        return bool(verify(parse(gold), parse(prediction)))
    return check


def run(check, pairs) -> tuple[list[bool], list[float]]:
    answers, seconds = [], []
    for pair in pairs:
        start = time.perf_counter()
        answers.append(check(pair["gold"], pair["prediction"]))
        seconds.append(time.perf_counter() - start)
    return answers, seconds


def summarise(name: str, answers, seconds, pairs) -> dict:
    labels = [p["label"] for p in pairs]
    positives = sum(labels)
    negatives = len(labels) - positives
    fp = sum(a and not lab for a, lab in zip(answers, labels))
    fn = sum(lab and not a for a, lab in zip(answers, labels))
    ms = sorted(s * 1000 for s in seconds)
    return {"verifier": name, "accuracy": 1 - (fp + fn) / len(labels),
            "fp_rate": fp / max(negatives, 1), "fn_rate": fn / max(positives, 1),
            "fp": fp, "fn": fn, "median_ms": statistics.median(ms),
            "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))], "total_s": sum(seconds)}


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= width else text[:width - 1] + "…"


def report(rows, pairs, ours_answers, mv_answers, markdown: bool):
    labels = [p["label"] for p in pairs]
    print(f"{len(pairs)} pairs ({sum(labels)} equivalent, {len(pairs) - sum(labels)} not)\n")
    print("| verifier | accuracy | false-positive rate | false-negative rate | median ms | "
          "p99 ms |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['verifier']} | {r['accuracy']:.1%} | {r['fp_rate']:.1%} ({r['fp']}) | "
              f"{r['fn_rate']:.1%} ({r['fn']}) | {r['median_ms']:.3f} | {r['p99_ms']:.1f} |")
    if len(rows) < 2:
        return
    ratio = rows[1]["median_ms"] / rows[0]["median_ms"]
    print(f"\nmedian latency ratio Math-Verify / ours: {ratio:.1f}x\n")
    classes = sorted({p["class"] for p in pairs if "class" in p})
    if classes:
        print("| class | pairs | ours correct | Math-Verify correct |")
        print("|---|---|---|---|")
        for name in classes:
            rows_c = [(p, a, b) for p, a, b in zip(pairs, ours_answers, mv_answers)
                      if p.get("class") == name]
            print(f"| {name} | {len(rows_c)} | {sum(a == p['label'] for p, a, _ in rows_c)} | "
                  f"{sum(b == p['label'] for p, _, b in rows_c)} |")
        print()
    print("Disagreements (label = ground truth):\n")
    print("| gold | prediction | label | ours | Math-Verify | why (label) |")
    print("|---|---|---|---|---|---|")
    for p, a, b in zip(pairs, ours_answers, mv_answers):
        if a != b:
            print(f"| `{_short(p['gold'], 30)}` | `{_short(p['prediction'])}` | {p['label']} | "
                  f"{'**' if a == p['label'] else ''}{a}{'**' if a == p['label'] else ''} | "
                  f"{'**' if b == p['label'] else ''}{b}{'**' if b == p['label'] else ''} | "
                  f"{p['reason']} |")
    if not markdown:
        wrong = [(p, a) for p, a in zip(pairs, ours_answers) if a != p["label"]]
        print(f"\nOurs wrong on {len(wrong)}:")
        for p, a in wrong:
            print(f"  label={p['label']} ours={a}  gold={p['gold']!r}  pred={_short(p['prediction'])!r}"
                  f"  ({p['reason']})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--markdown", action="store_true", help="only the README tables")
    parser.add_argument("--ours-only", action="store_true", help="skip Math-Verify")
    args = parser.parse_args(argv)
    pairs = load(args.data)
    ours_answers, ours_seconds = run(ours(), pairs)
    rows = [summarise("ours (verifiers.math)", ours_answers, ours_seconds, pairs)]
    mv_answers = ours_answers
    if not args.ours_only:
        mv_answers, mv_seconds = run(math_verify(), pairs)
        rows.append(summarise("Math-Verify 0.9.0", mv_answers, mv_seconds, pairs))
    report(rows, pairs, ours_answers, mv_answers, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
