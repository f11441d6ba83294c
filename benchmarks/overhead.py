"""The share of a search's wall time not spent training: database, logs, plots, scheduling.

Usage: python benchmarks/overhead.py [--quick]

overhead = 1 - (seconds the trainer reported for its epochs) / (wall seconds x workers)
Cold: a fresh pool (the CLI's case: process start and dataset loading included).
Warm: the server's case, whose runner started its pool before the search arrived and
whose workers have the dataset cached from an earlier search.
"""

from __future__ import annotations

import argparse
import time

from common import bench_app, machine

from lrsearch.cli import runner_settings
from lrsearch.extensions import db
from lrsearch.models import Search
from lrsearch.search import store
from lrsearch.search.runner import ProcessSlots, Runner
from lrsearch.search.spec import parse_spec

WORKLOADS = {
    "mnist-shaped": {
        "dataset": "synthetic:60000x784x10",
        "layers": "784,256,128,10",
        "trials": 4,
        "epochs": 5,
    },
    "digits 40x20": {"dataset": "digits", "layers": "64,128,10", "trials": 40, "epochs": 20},
}


def timed_search(app, slots: ProcessSlots, settings: dict) -> tuple[float, Search]:
    """Run one search on the given slots (kept alive); wall seconds from creation to end."""
    spec = parse_spec({**settings, "workers": len(slots.slots)}, app.config)
    started = time.perf_counter()
    search = store.create_search(db.session, spec)
    Runner(runner_settings(app), slots, search.id, keep_slots=True).run(until_done=True)
    wall = time.perf_counter() - started
    db.session.expire_all()
    return wall, db.session.get(Search, search.id)


def measure(name: str, settings: dict, workers: int) -> list[tuple]:
    """Cold and warm runs of one workload."""
    rows = []
    with bench_app() as app:
        slots = ProcessSlots(workers)
        try:
            for mode in ("cold", "warm"):
                wall, search = timed_search(app, slots, settings)
                assert search.status == "completed", [t.error for t in search.trials]
                training = sum(t.seconds for t in search.trials)
                in_trials = sum(
                    (t.finished_at - t.started_at).total_seconds() for t in search.trials
                )
                rows.append(
                    (
                        name,
                        mode,
                        wall,
                        training,
                        in_trials,
                        len(search.trials),
                        1 - training / (wall * workers),
                    )
                )
        finally:
            slots.shutdown()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smaller mnist-shaped search")
    args = parser.parse_args()
    if args.quick:
        WORKLOADS["mnist-shaped"].update(trials=2, epochs=2)
    print(f"# overhead on {machine()}, {args.workers} workers")
    print(
        f"{'workload':<14} {'run':<5} {'wall s':>7} {'training s':>10} "
        f"{'per-trial extra s':>17} {'overhead':>9}"
    )
    for name, settings in WORKLOADS.items():
        for name_, mode, wall, training, in_trials, n, share in measure(
            name, settings, args.workers
        ):
            extra = (in_trials - training) / n
            print(
                f"{name_:<14} {mode:<5} {wall:>7.2f} {training:>10.2f} {extra:>17.3f} {share:>9.1%}"
            )


if __name__ == "__main__":
    main()
