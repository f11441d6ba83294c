"""How much training ASHA saves, and what it costs in the answer.

Usage: python benchmarks/search_efficiency.py [--seeds N] [--trials N] [--epochs N]
                                              [--workers N] [--datasets digits ...]

For each data set and seed, the same search (the same sampled rates, the seed's) runs
twice through the runner, as the command line runs it: every trial to its last epoch
(scheduler none), then with ASHA (eta 3, grace period 1, one bracket, val_acc). Printed per
data set: the epochs trained, the wall time, the best validation accuracy each found (the
ranking's highest-accuracy answer) and the difference, then the averages over the seeds.
The bar to beat (issue 19): Optuna's successive-halving pruner on the same work trained
0.195 of the full search's epochs and lost 0.19 points of best validation accuracy.
"""

from __future__ import annotations

import argparse
import statistics

from common import bench_app, machine, run_search, shared_datasets

from lrsearch.extensions import db
from lrsearch.scheduling import METRICS
from lrsearch.search import ranking
from lrsearch.training.datasets import clear_dataset_cache, load_dataset

WORKLOADS = {
    "digits": {"dataset": "digits", "hidden": "128"},
    "mnist-shaped": {"dataset": "synthetic:6000x784x10", "hidden": "256,128"},
}
ASHA = {"scheduler": "asha", "reduction_factor": 3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=27)
    parser.add_argument("--epochs", type=int, default=27)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--datasets", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--grace-period", type=int, default=1)
    parser.add_argument("--brackets", type=int, default=1)
    parser.add_argument("--metric", default="val_acc", choices=tuple(METRICS))
    args = parser.parse_args()
    asha = {**ASHA, "grace_period": args.grace_period, "brackets": args.brackets,
            "metric": args.metric}  # fmt: skip
    print(f"# search_efficiency on {machine()}: {args.trials} trials x {args.epochs} epochs, "
          f"{args.workers} workers, lr 1e-5..1e-1 (random), ASHA eta 3, grace period "
          f"{args.grace_period}, {args.brackets} bracket(s), {args.metric}")  # fmt: skip
    for name in args.datasets:
        settings = {**WORKLOADS[name], "trials": args.trials, "epochs": args.epochs,
                    "lr_min": 1e-5, "lr_max": 1e-1, "sampler": "random"}  # fmt: skip
        rows = [compare(settings, asha, seed, args.workers) for seed in range(args.seeds)]
        print(f"\n{name} ({settings['dataset']}, hidden {settings['hidden']})")
        print(f"{'seed':>4} {'epochs full':>11} {'asha':>6} {'share':>6} {'wall full s':>11} "
              f"{'asha s':>7} {'best full':>9} {'asha':>7} {'diff pts':>8}")  # fmt: skip
        for seed, row in enumerate(rows):
            print(f"{seed:>4} {row['epochs'][0]:>11} {row['epochs'][1]:>6} "
                  f"{row['epochs'][1] / row['epochs'][0]:>6.3f} {row['wall'][0]:>11.1f} "
                  f"{row['wall'][1]:>7.1f} {row['best'][0]:>9.4f} {row['best'][1]:>7.4f} "
                  f"{100 * (row['best'][1] - row['best'][0]):>+8.2f}")  # fmt: skip
        share = statistics.mean(r["epochs"][1] / r["epochs"][0] for r in rows)
        lost = statistics.mean(100 * (r["best"][0] - r["best"][1]) for r in rows)
        wall = statistics.mean(r["wall"][1] / r["wall"][0] for r in rows)
        print(
            f"mean over {len(rows)} seeds: ASHA trained {share:.3f} of the epochs in "
            f"{wall:.3f} of the wall time and lost {lost:.2f} points of best val acc"
        )


def compare(settings: dict, asha: dict, seed: int, workers: int) -> dict[str, tuple]:
    """The same search (same rates) in full and with ASHA: epochs, wall s, best val acc."""
    found = {"epochs": [], "wall": [], "best": []}
    with shared_datasets(settings["dataset"]) as datasets:
        load_dataset(settings["dataset"], datasets, seed=seed)  # made before any timing
        clear_dataset_cache()
        for scheduler in ({"scheduler": "none"}, asha):
            with bench_app(datasets) as app:
                wall, _, search = run_search(app, workers, **settings, **scheduler, seed=seed)
                best = ranking.best_trial(db.session, search.id)
                found["epochs"].append(sum(t.epochs_done for t in search.trials))
                found["wall"].append(wall)
                found["best"].append(best.best_val_acc)
    return {key: tuple(values) for key, values in found.items()}


if __name__ == "__main__":
    main()
