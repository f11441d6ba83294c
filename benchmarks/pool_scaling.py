"""How the worker pool scales: wall time and throughput of whole searches, end to end.

Usage: python benchmarks/pool_scaling.py [WORKERS ...] [--rounds N]   (default: 1 2 4)
       python benchmarks/pool_scaling.py 1 4 8 16                     (on a 16-core machine)

Two workloads, each a real search (database, log.txt, process start included), timed from
its creation to the end of its last trial; plots drawn by the trials themselves count, the
ones short trials leave for later are drawn after that (see overhead.py) and do not:
- mnist-shaped: synthetic:60000x784x10, layers 784-256-128-10, 2 epochs per trial,
  2 trials per worker; prints trial-epochs per second.
- digits: one search on digits, 64-128-10, 20 epochs per trial, with 2 trials per worker
  of the largest count (at least 40 trials, as in overhead.py), the same search at every
  count; prints searches per second.
Every worker count runs once per round, the counts taking turns, so that a slow minute of a
shared machine hurts them all alike; each row gives the median round (and the slowest and
fastest rate). Speed-up is against the first worker count; efficiency is speed-up /
(workers / first).
Before any timing, the fork server the pools fork from is started (its imports paid) and
the synthetic data set is generated into a datasets folder every search then maps: both are
costs paid once per machine, not per search (overhead.py shows them).
"""

from __future__ import annotations

import argparse
import statistics

from common import bench_app, machine, run_search, shared_datasets, start_fork_server

MNIST_SHAPED = {"dataset": "synthetic:60000x784x10", "layers": "784,256,128,10", "epochs": 2}
DIGITS = {"dataset": "digits", "layers": "64,128,10", "epochs": 20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workers", nargs="*", type=int, default=[1, 2, 4])
    parser.add_argument("--trials-per-worker", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each count (median)")
    parser.add_argument("--skip-mnist", action="store_true")
    args = parser.parse_args()
    print(f"# pool_scaling on {machine()}; median of {args.rounds} round(s)")
    start_fork_server()
    with shared_datasets(MNIST_SHAPED["dataset"]) as datasets:
        if not args.skip_mnist:
            print("\nmnist-shaped: synthetic:60000x784x10, 784-256-128-10, 2 epochs per trial")

            def mnist(n: int) -> dict:
                return {**MNIST_SHAPED, "trials": n * args.trials_per_worker}

            table(measure(args.workers, args.rounds, mnist, datasets, per_epoch=True))
        trials = max(40, 2 * max(args.workers))
        print(f"\ndigits: {trials} trials x 20 epochs, 64-128-10 (one search, end to end)")
        table(measure(args.workers, args.rounds, lambda n: {**DIGITS, "trials": trials}, datasets))


def measure(workers: list[int], rounds: int, settings, datasets, per_epoch: bool = False):
    """Run every count once per round, in turns; per count, each round's figures."""
    runs: dict[int, list[tuple[float, float, float]]] = {n: [] for n in workers}
    for _ in range(rounds):
        for n in workers:
            with bench_app(datasets, MAX_WORKERS=256) as app:
                search_settings = settings(n)
                wall, _, search = run_search(app, n, **search_settings)
                assert search.status == "completed", search.status
                epochs = search_settings["trials"] * search_settings["epochs"]
                rate = epochs / wall if per_epoch else 1 / wall
                runs[n].append((rate, wall, training_seconds(search) / epochs))
    return [(n, settings(n)["trials"], rounds_, per_epoch) for n, rounds_ in runs.items()]


def training_seconds(search) -> float:
    """Seconds the trainer itself reported for the search's epochs."""
    return sum(t.seconds for t in search.trials)


def table(rows: list) -> None:
    """Median throughput, speed-up and efficiency per worker count.

    `s/epoch` is the trainer's own time per epoch: when it grows with the worker count the
    cores slow each other down (shared caches, memory bandwidth, clock) or, beyond the core
    count, take turns; `busy` is the share of the workers' wall time spent training, the
    rest being the pool's overhead.
    """
    unit = "trial-epochs/s" if rows[0][3] else "searches/s"
    print(
        f"{'workers':>7} {'trials':>6} {'wall s':>7} {unit:>14} {'min-max':>13} "
        f"{'speed-up':>8} {'efficiency':>10} {'s/epoch':>8} {'busy':>5}"
    )
    base_workers = rows[0][0]
    base_rate = statistics.median(r[0] for r in rows[0][2])
    for n, trials, runs, _ in rows:
        rate = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        per_epoch = statistics.median(r[2] for r in runs)
        epochs = trials * (MNIST_SHAPED if rows[0][3] else DIGITS)["epochs"]
        busy = per_epoch * epochs / (wall * n)
        low, high = min(r[0] for r in runs), max(r[0] for r in runs)
        speedup = rate / base_rate
        print(
            f"{n:>7} {trials:>6} {wall:>7.2f} {rate:>14.3f} {f'{low:.3f}-{high:.3f}':>13} "
            f"{speedup:>7.2f}x {speedup / (n / base_workers):>10.2f} {per_epoch:>8.3f} "
            f"{busy:>5.0%}"
        )


if __name__ == "__main__":
    main()
