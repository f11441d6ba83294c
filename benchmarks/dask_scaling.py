"""The same searches through the local pool and through a Dask LocalCluster of as many
worker processes, on PostgreSQL: throughput, start latency and database writes.

Usage: python benchmarks/dask_scaling.py [WORKERS ...] [--rounds N]      (default: 2)
       python benchmarks/dask_scaling.py 4 8 16                          (a 16-core machine)

Two workloads, each a real search run to its end by the runner, the executors taking turns
each round (the median round is printed):
- mnist-shaped: synthetic:60000x784x10, layers 784-256-128-10, 2 epochs a trial, 2 trials
  a worker; trial-epochs per second, and the ratio cluster / local (target: 0.9 or more).
- write-bound: digits through a 64-8-10 network, 100 epochs a trial, 2 trials a worker:
  an epoch trains in about a millisecond and is one write transaction (its row and its
  trial's summary), so epochs per second is the database writes per second that the
  workers, the runner and PostgreSQL reach together.
Start latency: from the search's creation to the first moment a trial was training (its
first epoch's end less that epoch's seconds), the cluster's workers already started.
The database is a fresh one on LRSEARCH_BENCH_POSTGRES (postgresql+psycopg://postgres@
127.0.0.1:5432 by default), dropped afterwards; the cluster's workers have one thread each.
"""

from __future__ import annotations

import argparse
import os
import statistics
from datetime import timedelta

from common import bench_app, machine, run_search, shared_datasets, start_fork_server
from sqlalchemy import func, select

from lrsearch.execution.cluster import DaskSlots
from lrsearch.execution.local import ProcessSlots
from lrsearch.extensions import db
from lrsearch.models import Epoch, Trial
from lrsearch.testing import POSTGRES_SERVER, fresh_postgres

SERVER = os.environ.get("LRSEARCH_BENCH_POSTGRES", POSTGRES_SERVER)
WORKLOADS = {
    "mnist-shaped": {"dataset": "synthetic:60000x784x10", "layers": "784,256,128,10",
                     "epochs": 2},
    "write-bound": {"dataset": "digits", "layers": "64,8,10", "epochs": 100},
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workers", nargs="*", type=int, default=[2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trials-per-worker", type=int, default=2)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    args = parser.parse_args()
    import distributed

    print(f"# dask_scaling on {machine()}, PostgreSQL {SERVER.rsplit('@', 1)[-1]}, "
          f"distributed {distributed.__version__}, {args.rounds} rounds (median)")  # fmt: skip
    start_fork_server()
    synthetic = [WORKLOADS[w]["dataset"] for w in args.workloads]
    synthetic = [d for d in synthetic if d.startswith("synthetic")]
    with shared_datasets(*synthetic) as datasets, fresh_postgres(SERVER, "lrsearch_bench") as url:
        for name in args.workloads:
            print(f"\n{name}: {WORKLOADS[name]}")
            print(f"{'workers':>7} {'local ep/s':>10} {'cluster ep/s':>12} {'ratio':>6} "
                  f"{'local start s':>13} {'cluster start s':>15}")  # fmt: skip
            for n in args.workers:
                row = measure(WORKLOADS[name], n, args, datasets, url)
                print(f"{n:>7} {row['local'][0]:>10.2f} {row['cluster'][0]:>12.2f} "
                      f"{row['cluster'][0] / row['local'][0]:>6.2f} {row['local'][1]:>13.2f} "
                      f"{row['cluster'][1]:>15.2f}")  # fmt: skip


def measure(workload: dict, n: int, args, datasets, url: str) -> dict[str, tuple]:
    """Median (epochs/s, start latency s) of each executor over the rounds."""
    import distributed

    settings = {**workload, "trials": n * args.trials_per_worker, "sampler": "grid",
                "lr_min": 1e-3, "lr_max": 1e-2}  # fmt: skip
    runs: dict[str, list[tuple]] = {"local": [], "cluster": []}
    # The workers make their own copy of a synthetic data set, in their first (untimed) run.
    with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=40) as cluster:  # fmt: skip
        with bench_app(datasets, DATABASE_URL=url) as app:
            cluster_slots = DaskSlots(cluster.scheduler_address, app.config["DATA_DIR"])
            local_slots = ProcessSlots(n)
            local_slots.start()
            run_search(app, n, slots=cluster_slots, **{**settings, "trials": n, "epochs": 1})
            try:
                for _ in range(args.rounds):
                    for executor, slots in (("local", local_slots), ("cluster", cluster_slots)):
                        runs[executor].append(one_run(app, n, slots, settings))
            finally:
                local_slots.shutdown()
                cluster_slots.shutdown()
    return {k: tuple(statistics.median(r[i] for r in v) for i in range(2)) for k, v in runs.items()}


def one_run(app, n: int, slots, settings: dict) -> tuple[float, float]:
    wall, _, search = run_search(app, n, slots=slots, **settings)
    epochs = db.session.scalar(
        select(func.count()).select_from(Epoch).join(Trial).where(Trial.search_id == search.id)
    )
    first = db.session.execute(
        select(Epoch.created_at, Epoch.seconds)
        .join(Trial)
        .where(Trial.search_id == search.id)
        .order_by(Epoch.created_at)
        .limit(1)
    ).one()
    start = first[0] - timedelta(seconds=first[1]) - search.created_at
    return epochs / wall, start.total_seconds()


if __name__ == "__main__":
    main()
