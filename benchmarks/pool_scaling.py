"""How the worker pool scales: wall time and throughput of whole searches, end to end.

Usage: python benchmarks/pool_scaling.py [WORKERS ...] [--rounds N]   (default: 1 2 4)
                                         [--trials-per-worker N] [--skip-mnist]
                                         [--skip-bare | --bare-only] [--bare-epochs N]
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

A table printed before them, "trainers alone", tells what the machine itself allows: as
many bare trainers as workers, no search around them (no database, log or plot), each
training mnist-shaped epochs (training only) on one thread, all started together. Its efficiency
is the trainer's s/epoch alone over its s/epoch with the others running: the ceiling for
the pool's, set by the shared caches, memory bandwidth and clock. It is given for the
median trainer and for the slowest, which a search of few trials per worker waits for
(the search tables give the slowest worker's s/epoch too).
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import (
    bench_app,
    machine,
    run_search,
    shared_datasets,
    start_fork_server,
)

from lrsearch.execution.local import ProcessSlots
from lrsearch.testing import trials_by_worker, worker_time
from lrsearch.training import Hyperparameters, Trainer
from lrsearch.training.datasets import load_dataset

MNIST_SHAPED = {"dataset": "synthetic:60000x784x10", "layers": "784,256,128,10", "epochs": 2}
DIGITS = {"dataset": "digits", "layers": "64,128,10", "epochs": 20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workers", nargs="*", type=int, default=[1, 2, 4])
    parser.add_argument("--trials-per-worker", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each count (median)")
    parser.add_argument("--skip-mnist", action="store_true", help="digits searches only")
    parser.add_argument("--bare-only", action="store_true", help="the trainers-alone table only")
    parser.add_argument("--skip-bare", action="store_true", help="no trainers-alone table")
    parser.add_argument("--bare-epochs", type=int, default=2, help="timed epochs per trainer")
    args = parser.parse_args()
    print(f"# pool_scaling on {machine()}; median of {args.rounds} round(s)")
    start_fork_server()
    with shared_datasets(MNIST_SHAPED["dataset"]) as datasets:
        if not (args.skip_mnist or args.skip_bare):
            print(f"\ntrainers alone: {MNIST_SHAPED['dataset']}, {MNIST_SHAPED['layers']}")
            bare_table(bare(args.workers, args.rounds, args.bare_epochs, datasets))
        if args.bare_only:
            return
        if not args.skip_mnist:
            print(
                "\nmnist-shaped: synthetic:60000x784x10, 784-256-128-10, 2 epochs per trial, "
                f"{args.trials_per_worker} trials per worker"
            )

            def mnist(n: int) -> dict:
                return {**MNIST_SHAPED, "trials": n * args.trials_per_worker}

            table(measure(args.workers, args.rounds, mnist, datasets, per_epoch=True))
        trials = max(40, 2 * max(args.workers))
        print(f"\ndigits: {trials} trials x 20 epochs, 64-128-10 (one search, end to end)")
        table(measure(args.workers, args.rounds, lambda n: {**DIGITS, "trials": trials}, datasets))


def measure(workers: list[int], rounds: int, settings, datasets, per_epoch: bool = False):
    """Run every count once per round, in turns; per count, each round's figures."""
    runs: dict[int, list[tuple]] = {n: [] for n in workers}
    for _ in range(rounds):
        for n in workers:
            with bench_app(datasets, MAX_WORKERS=256) as app:
                search_settings = settings(n)
                wall, _, search = run_search(app, n, **search_settings)
                assert search.status == "completed", search.status
                epochs = search_settings["trials"] * search_settings["epochs"]
                rate = epochs / wall if per_epoch else 1 / wall
                per_epoch_ = training_seconds(search) / epochs
                runs[n].append((rate, wall, per_epoch_, worker_time(search), slowest(search)))
    return [(n, settings(n)["trials"], rounds_, per_epoch) for n, rounds_ in runs.items()]


def bare(workers: list[int], rounds: int, epochs: int, datasets) -> dict[int, list[list]]:
    """Per count, each round's s/epoch of every trainer; the counts take turns."""
    runs: dict[int, list[list]] = {n: [] for n in workers}
    with ProcessSlots(1).context.Manager() as manager:
        for _ in range(rounds):
            for n in workers:
                slots, barrier = ProcessSlots(n), manager.Barrier(n)
                try:
                    futures = [
                        slots.submit(bare_trainer, str(datasets), barrier, epochs) for _ in range(n)
                    ]
                    runs[n].append([future.result() for future in futures])
                finally:
                    slots.shutdown()
    return runs


def bare_trainer(datasets: str, barrier, epochs: int) -> float:
    """In a worker: one warm-up epoch, wait for the others, then median s/epoch of `epochs`."""
    data = load_dataset(MNIST_SHAPED["dataset"], datasets, seed=0)
    layers = [int(size) for size in MNIST_SHAPED["layers"].split(",")]
    trainer = Trainer(data, Hyperparameters(layers), 1e-3, seed=0)
    trainer.train_epoch()
    barrier.wait()
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        trainer.train_epoch()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def bare_table(runs: dict[int, list[list]]) -> None:
    """Per count, the median trainer's s/epoch, the efficiency it allows, and the slowest's.

    A long search's throughput follows the median trainer (a worker that is done takes the
    next trial); a short one waits for the slowest.
    """
    print(f"{'workers':>7} {'s/epoch':>8} {'efficiency':>10} {'slowest':>7} {'efficiency':>10}")
    typical = {
        n: statistics.median(statistics.median(r) for r in rounds) for n, rounds in runs.items()
    }
    worst = {n: statistics.median(max(r) for r in rounds) for n, rounds in runs.items()}
    base = min(runs)
    for n in sorted(runs):
        print(
            f"{n:>7} {typical[n]:>8.3f} {typical[base] / typical[n]:>10.2f} "
            f"{worst[n]:>7.3f} {typical[base] / worst[n]:>10.2f}"
        )


def slowest(search) -> float:
    """Seconds per epoch of the worker that trained slowest, over all its epochs."""
    return max(
        sum(t.seconds for t in trials) / sum(t.epochs_done for t in trials)
        for trials in trials_by_worker(search).values()
    )


def training_seconds(search) -> float:
    """Seconds the trainer itself reported for the search's epochs."""
    return sum(t.seconds for t in search.trials)


def table(rows: list) -> None:
    """Median throughput, speed-up and efficiency per worker count.

    `s/epoch` is the trainer's own time per epoch: when it grows with the worker count the
    cores slow each other down (shared caches, memory bandwidth, clock) or, beyond the core
    count, take turns; `busy` is the share of the workers' wall time spent training, the
    rest being the pool's overhead, which the last four columns place (testing.worker_time,
    seconds per worker): before its first trial (claim, process start), in its trials but not
    in epochs (data set, database, log.txt, plot), between its trials, and idle at the end
    while the last trials finish.
    """
    unit = "trial-epochs/s" if rows[0][3] else "searches/s"
    print(
        f"{'workers':>7} {'trials':>6} {'wall s':>7} {unit:>14} {'min-max':>13} "
        f"{'speed-up':>8} {'efficiency':>10} {'s/epoch':>8} {'slowest':>7} {'busy':>5} "
        f"{'before':>6} {'in-trial':>8} {'between':>7} {'end':>5}"
    )
    parts = ("before", "in trials", "between", "at the end")
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
            f"{speedup:>7.2f}x {speedup / (n / base_workers):>10.2f} {per_epoch:>8.4f} "
            f"{statistics.median(r[4] for r in runs):>7.4f} {busy:>5.0%} "
            + " ".join(
                f"{statistics.median(r[3][part] for r in runs):>{width}.2f}"
                for part, width in zip(parts, (6, 8, 7, 5), strict=True)
            )
        )


if __name__ == "__main__":
    main()
