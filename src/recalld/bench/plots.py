"""PNG plots of a bench run (matplotlib, from the `bench` extra): latency CDF per phase, throughput and
requests in flight over the run's time.

`python -m recalld.bench.plots DIR` redraws them from DIR/ops.csv.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from recalld.bench.recorder import Recorder
from recalld.bench.report import bin_width

PLOT_FILES = ("latency_cdf.png", "throughput.png", "in_flight.png")


def load_ops(path: Path) -> dict[str, Recorder]:
    """The operations of ops.csv, by phase name, in file order."""
    phases: dict[str, Recorder] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            outcome: int | str = int(row["outcome"]) if row["outcome"].isdigit() else row["outcome"]
            phases.setdefault(row["phase"], Recorder()).add(float(row["start_s"]), float(row["end_s"]), outcome)
    return phases


def _bin_s(phases: dict[str, Recorder]) -> float:
    ends = [max(r.ends) for r in phases.values() if r.ends]
    starts = [min(r.starts) for r in phases.values() if r.starts]
    return bin_width((max(ends) - min(starts)) if ends else 1.0, bins=200)


def plot_all(out_dir: Path, phases: dict[str, Recorder], title: str = "") -> list[Path]:
    """Write the three PNGs into `out_dir`; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    phases = {name: rec for name, rec in phases.items() if rec.count}
    written = []
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if len(phases) > len(colours):  # one colour per phase, even for a long run
        colours = [plt.get_cmap("tab20")(k % 20) for k in range(len(phases))]

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for k, (name, rec) in enumerate(phases.items()):
        values = rec.ok_latencies_ms()
        if values:
            fractions = [(i + 1) / len(values) for i in range(len(values))]
            ax.step(values, fractions, where="post", label=name, color=colours[k % len(colours)])
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of operations ≤ latency")
    ax.set_title(f"Latency CDF per phase {title}".strip())
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    written.append(_save(fig, out_dir / "latency_cdf.png"))

    bin_s = _bin_s(phases)
    fig, ax = plt.subplots(figsize=(11, 5))
    for k, (name, rec) in enumerate(phases.items()):
        begin, end = min(rec.starts), max(rec.ends)
        line = rec.timeline(begin, end, bin_s)
        xs = [t + bin_s / 2 for t in line["start_s"]]
        ax.plot(xs, line["ops_per_s"], label=name, color=colours[k % len(colours)])
    ax.set_xlabel("time since the bench began (s)")
    # Completions of every outcome: a phase failing fast should look busy here; the report counts its errors.
    ax.set_ylabel(f"completed operations per second ({bin_s:g} s bins)")
    ax.set_title(f"Throughput over time {title}".strip())
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    written.append(_save(fig, out_dir / "throughput.png"))

    fig, ax = plt.subplots(figsize=(11, 5))
    for k, (name, rec) in enumerate(phases.items()):
        events = sorted([(s, 1) for s in rec.starts] + [(e, -1) for e in rec.ends], key=lambda ev: (ev[0], ev[1]))
        xs, ys, level = [events[0][0]], [0], 0
        for t, delta in events:
            level += delta
            xs.append(t)
            ys.append(level)
        ax.step(xs, ys, where="post", label=name, color=colours[k % len(colours)])
    ax.set_xlabel("time since the bench began (s)")
    ax.set_ylabel("requests in flight")
    ax.set_title(f"In-flight requests over time {title}".strip())
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    written.append(_save(fig, out_dir / "in_flight.png"))
    return written


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    directory = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    for written_path in plot_all(directory, load_ops(directory / "ops.csv")):
        print(written_path)
