"""Pictures of a run: reward per component, accuracy and completion length per step."""
from __future__ import annotations

from pathlib import Path


def moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over ``window`` points (shorter at the start); None values are skipped."""
    out, buf = [], []
    for v in values:
        if v is not None:
            buf.append(v)
        buf = buf[-window:]
        out.append(sum(buf) / len(buf) if buf else float("nan"))
    return out


def plot_metrics(metrics: list[dict], evals: list[dict] | None = None, *, window: int = 10,
                 title: str = ""):
    """A two-panel matplotlib figure: rewards (per component) and accuracy / length per step."""
    import matplotlib.pyplot as plt  # headless machines fall back to Agg by themselves

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    steps = [m["step"] for m in metrics]
    ax1.plot(steps, moving_average([m["reward_mean"] for m in metrics], window), label="total",
             lw=2, color="black")
    for key in sorted(k for k in (metrics[0] if metrics else {}) if k.startswith("reward/")
                      and k.endswith("/mean")):
        ax1.plot(steps, moving_average([m[key] for m in metrics], window),
                 label=key.split("/")[1], lw=1.2)
    ax1.set_xlabel("step")
    ax1.set_ylabel(f"reward (mean of last {window})")
    ax1.legend(loc="best", fontsize=8)
    ax1.grid(alpha=0.3)
    if metrics and metrics[0].get("accuracy") is not None:
        ax2.plot(steps, moving_average([m["accuracy"] for m in metrics], window),
                 label="train accuracy (sampled)", color="tab:green")
    for e in evals or []:
        ax2.scatter([e["step"]], [e["accuracy"]], color="tab:red", zorder=3,
                    label="held-out accuracy (greedy)" if e is (evals or [None])[0] else None)
    ax2.set_ylim(-0.02, 1.02)
    ax2.set_xlabel("step")
    ax2.set_ylabel("accuracy")
    ax2.grid(alpha=0.3)
    twin = ax2.twinx()
    twin.plot(steps, [m["completion_length"] for m in metrics], color="tab:gray", lw=0.8,
              alpha=0.6, label="completion length")
    twin.set_ylabel("tokens", color="tab:gray")
    handles = ax2.get_legend_handles_labels()
    extra = twin.get_legend_handles_labels()
    ax2.legend(handles[0] + extra[0], handles[1] + extra[1], loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_run_plot(run, path: str | Path) -> Path:
    """Plot a ``workbench.runs.Run`` and save the PNG."""
    import matplotlib.pyplot as plt

    s = run.settings
    fig = plot_metrics(run.metrics(), run.evals(),
                       title=f"GRPO on {s['task']['name']} ({s['model']['model']})")
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path



def plot_feedback_comparison(results: dict, *, title: str = "success vs attempts"):
    """Success rate against the budget of attempts, one panel per ``FeedbackComparison``.

    results: label -> ``workbench.envs.code.FeedbackComparison`` (e.g. ``{"before RL": b,
    "after RL": a}``). Lines: feedback, independent samples, random feedback.
    """
    import matplotlib.pyplot as plt

    styles = {"feedback": ("#1565c0", "-"), "independent": ("#555555", "--"),
              "random_feedback": ("#ef6c00", ":")}
    fig, axes = plt.subplots(1, len(results), figsize=(4.6 * len(results), 3.4), sharey=True,
                             squeeze=False)
    for ax, (label, comp) in zip(axes[0], results.items()):
        budgets = list(range(1, comp.attempts + 1))
        for mode, rates in comp.by_attempt.items():
            color, ls = styles.get(mode, (None, "-"))
            ax.plot(budgets, rates, marker="o", color=color, ls=ls, label=mode.replace("_", " "))
        ax.set_title(f"{label} ({comp.episodes} episodes per line)")
        ax.set_xlabel("attempts allowed")
        ax.set_xticks(budgets)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("solved (private tests)")
    axes[0][0].legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
