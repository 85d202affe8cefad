"""Leases held per worker over time, one PNG per scenario (both algorithms side by side)."""

from __future__ import annotations

from pathlib import Path

from lease_sim.constants import ALGORITHMS, FAILOVER
from lease_sim.fleet import Fleet
from lease_sim.scenario import Scenario


def plot(fleets: dict[str, Fleet], runs: dict[str, list[Scenario]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    names = [s.name for s in runs[ALGORITHMS[0]]]
    for index, name in enumerate(names):
        fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
        for ax, algorithm in zip(axes, ALGORITHMS, strict=True):
            scenario = runs[algorithm][index]
            samples = [
                (t, c)
                for t, c in fleets[algorithm].samples
                if scenario.first - 20 <= t <= scenario.end
            ]
            workers = sorted({w for _, c in samples for w in c})
            for worker in workers:
                xs = [t - scenario.first for t, c in samples if worker in c]
                ys = [c[worker] for t, c in samples if worker in c]
                ax.plot(xs, ys, linewidth=0.6, alpha=0.5)
            ax.axvline(scenario.start - scenario.first, color="k", linestyle=":", linewidth=1)
            ax.axvline(
                scenario.start - scenario.first + 3 * FAILOVER,
                color="r",
                linestyle="--",
                linewidth=1,
                label="3 failover periods",
            )
            converged = (
                f"converged in {scenario.converged_s:.0f} s"
                if scenario.converged_s is not None
                else "not converged"
            )
            ax.set_title(f"{algorithm}: {name} ({converged})")
            ax.set_xlabel("seconds since the event")
            ax.legend(loc="upper right", fontsize=7)
        axes[0].set_ylabel("leases held, per worker")
        fig.tight_layout()
        path = out / f"leases_{name.split()[0].replace('+', 'plus').replace('-', 'minus')}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths
