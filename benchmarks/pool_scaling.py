"""How the worker pool scales: wall time and throughput of whole searches, end to end.

Usage: python benchmarks/pool_scaling.py [WORKERS ...]     (default: 1 2 4)
       python benchmarks/pool_scaling.py 1 4 8 16           (on a 16-core machine)

Two workloads, each a real search (database, log.txt, plots, process start included):
- mnist-shaped: synthetic:60000x784x10, layers 784-256-128-10, 2 epochs per trial,
  2 trials per worker; prints trial-epochs per second.
- digits: one search on digits, 64-128-10, 20 epochs per trial, with 2 trials per worker
  of the largest count (at least 40 trials, as in overhead.py), the same search at every
  count; prints searches per second.
Speed-up is against the first worker count; efficiency is speed-up / (workers / first).
The fork server the pools fork from is started (and its imports paid) before any timing.
"""

from __future__ import annotations

import argparse

from common import bench_app, machine, run_search

from lrsearch.search.runner import ProcessSlots
from lrsearch.search.worker import warm_up as warm_up_worker

MNIST_SHAPED = {"dataset": "synthetic:60000x784x10", "layers": "784,256,128,10", "epochs": 2}
DIGITS = {"dataset": "digits", "layers": "64,128,10", "epochs": 20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workers", nargs="*", type=int, default=[1, 2, 4])
    parser.add_argument("--trials-per-worker", type=int, default=2)
    parser.add_argument("--skip-mnist", action="store_true")
    args = parser.parse_args()
    print(f"# pool_scaling on {machine()}")
    warm_up()
    if not args.skip_mnist:
        print("\nmnist-shaped: synthetic:60000x784x10, 784-256-128-10, 2 epochs per trial")
        rows = []
        for n in args.workers:
            with bench_app(MAX_WORKERS=256) as app:
                trials = n * args.trials_per_worker
                wall, search = run_search(app, n, trials=trials, **MNIST_SHAPED)
                assert search.status == "completed", search.status
                epochs = trials * MNIST_SHAPED["epochs"]
                rows.append((n, trials, wall, epochs / wall, epochs, training_seconds(search)))
        table(rows, "trial-epochs/s")
    trials = max(40, 2 * max(args.workers))
    print(f"\ndigits: {trials} trials x 20 epochs, 64-128-10 (one search, end to end)")
    rows = []
    for n in args.workers:
        with bench_app(MAX_WORKERS=256) as app:
            wall, search = run_search(app, n, trials=trials, **DIGITS)
            assert search.status == "completed", search.status
            rows.append((n, trials, wall, 1 / wall, trials * 20, training_seconds(search)))
    table(rows, "searches/s")


def warm_up() -> None:
    """Start the fork server (it imports the worker's modules once, for every pool)."""
    slots = ProcessSlots(1)
    try:
        slots.submit(warm_up_worker).result()
    finally:
        slots.shutdown()


def training_seconds(search) -> float:
    """Seconds the trainer itself reported for the search's epochs."""
    return sum(t.seconds for t in search.trials)


def table(rows: list[tuple[int, int, float, float, int, float]], unit: str) -> None:
    """Wall time, throughput, speed-up and efficiency per worker count.

    `s/epoch` is the trainer's own time per epoch: when it grows with the worker count the
    cores slow each other down (shared caches, memory bandwidth, clock); `busy` is the
    share of the workers' wall time spent training, the rest being the pool's overhead.
    """
    base_workers, base_rate = rows[0][0], rows[0][3]
    print(
        f"{'workers':>7} {'trials':>6} {'wall s':>8} {unit:>15} {'speed-up':>9} "
        f"{'efficiency':>10} {'s/epoch':>8} {'busy':>5}"
    )
    for n, trials, wall, rate, epochs, training in rows:
        speedup = rate / base_rate
        per_epoch, busy = training / epochs, training / (wall * n)
        print(
            f"{n:>7} {trials:>6} {wall:>8.2f} {rate:>15.3f} {speedup:>8.2f}x "
            f"{speedup / (n / base_workers):>10.2f} {per_epoch:>8.3f} {busy:>5.0%}"
        )


if __name__ == "__main__":
    main()
