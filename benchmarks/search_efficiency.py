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

Then the LR range test (--part range) on the same data sets and seeds: the range it
suggests (the default test: 1e-7 to 10 over 100 batches), the best rate of a dense grid of
30 log-spaced rates over the search's range (each trained as a trial, the search's epochs),
whether it lies inside, what the best grid rate inside the range reached next to the grid's
best, and the seconds of the test next to those of one trial.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from common import bench_app, machine, run_search, shared_datasets
from threadpoolctl import threadpool_limits

from lrsearch.extensions import db
from lrsearch.scheduling import METRICS
from lrsearch.search import ranking
from lrsearch.training import Hyperparameters, train
from lrsearch.training.datasets import clear_dataset_cache, load_dataset
from lrsearch.training.range_test import range_test, suggest_range

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
    parser.add_argument("--part", default="both", choices=("asha", "range", "both"))
    args = parser.parse_args()
    if args.part in ("range", "both"):
        range_part(args)
    if args.part == "range":
        return
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


GRID_POINTS, GRID_RANGE = 30, (1e-5, 1e-1)


def range_part(args) -> None:
    """The range test's suggestion against a dense grid's best rate, per data set and seed."""
    print(f"# range test on {machine()}: 1e-7..10 over 100 batches; grid: {GRID_POINTS} "
          f"rates in {GRID_RANGE[0]:g}..{GRID_RANGE[1]:g}, {args.epochs} epochs each, "
          f"{args.workers} processes")  # fmt: skip
    for name in args.datasets:
        workload = WORKLOADS[name]
        rows = []
        with shared_datasets(workload["dataset"]) as datasets:
            _range_test((workload, str(datasets), 0, args.epochs))  # compiled before timing
            for seed in range(args.seeds):
                rows.append(range_row(workload, str(datasets), seed, args.epochs, args.workers))
        print(f"\n{name} ({workload['dataset']}, hidden {workload['hidden']})")
        print(f"{'seed':>4} {'suggested range':>19} {'grid best lr':>12} {'inside':>6} "
              f"{'grid best':>9} {'in range':>8} {'diff pts':>8} {'test s':>7} "
              f"{'trial s':>7}")  # fmt: skip
        for seed, r in enumerate(rows):
            print(f"{seed:>4} {r['low']:>9.2e}-{r['high']:<9.2e} {r['best_lr']:>12.2e} "
                  f"{'yes' if r['inside'] else 'no':>6} {r['best']:>9.4f} {r['in_range']:>8.4f} "
                  f"{100 * (r['in_range'] - r['best']):>+8.2f} {r['test_s']:>7.2f} "
                  f"{r['trial_s']:>7.2f}")  # fmt: skip
        inside = sum(r["inside"] for r in rows)
        lost = statistics.mean(100 * (r["best"] - r["in_range"]) for r in rows)
        ratio = statistics.mean(r["test_s"] / r["trial_s"] for r in rows)
        print(f"the grid's best rate inside the suggested range for {inside} of {len(rows)} "
              f"seeds; the best grid rate inside it {lost:.2f} points below the grid's best "
              f"on average; the test took {ratio:.3f} of one trial's time")  # fmt: skip


def range_row(workload: dict, datasets: str, seed: int, epochs: int, workers: int) -> dict:
    """One seed: the suggestion, and the grid trained in `workers` processes."""
    grid = np.logspace(np.log10(GRID_RANGE[0]), np.log10(GRID_RANGE[1]), GRID_POINTS)
    job = (workload, datasets, seed, epochs)
    test_s, (low, high) = _range_test(job)
    with ProcessPoolExecutor(workers, initializer=_one_thread) as pool:
        trained = list(pool.map(_grid_trial, [(*job, float(lr)) for lr in grid]))
    accuracy = [acc for acc, _ in trained]
    best = int(np.argmax(accuracy))
    inside = [a for lr, a in zip(grid, accuracy, strict=True) if low <= lr <= high]
    return {"low": low, "high": high, "best_lr": grid[best], "best": accuracy[best],
            "inside": low <= grid[best] <= high, "in_range": max(inside, default=0.0),
            "test_s": test_s, "trial_s": trained[best][1]}  # fmt: skip


def _one_thread() -> None:
    threadpool_limits(1)


def _network(workload: dict, datasets: str, seed: int, epochs: int):
    data = load_dataset(workload["dataset"], datasets, seed=seed)
    hidden = [int(h) for h in workload["hidden"].split(",")]
    return data, Hyperparameters([data.n_features, *hidden, data.n_classes], epochs=epochs)


def _range_test(job: tuple) -> tuple[float, tuple[float, float]]:
    data, hyper = _network(*job)
    with threadpool_limits(1):
        started = time.perf_counter()
        suggestion = suggest_range(range_test(data, hyper, 1e-7, 10.0, 100, seed=job[2]))
        seconds = time.perf_counter() - started
    return seconds, (suggestion.lr_min, suggestion.lr_max) if suggestion else (0.0, 0.0)


def _grid_trial(job: tuple) -> tuple[float, float]:
    *network, lr = job
    data, hyper = _network(*network)
    started = time.perf_counter()
    result = train(data, hyper, lr, seed=network[2])
    seconds = time.perf_counter() - started
    return max((e.acc_val for e in result.history), default=0.0), seconds


if __name__ == "__main__":
    main()
