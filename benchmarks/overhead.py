"""The share of a search's wall time not spent training: database, logs, plots, scheduling.

Usage: python benchmarks/overhead.py [--quick] [--workers N] [--trials N] [--epochs N]
                                     [--cli-runs N] [--checkpoints-only]

overhead = 1 - (seconds the trainer reported for its epochs) / (wall seconds x workers),
the wall time running from the search's creation to the end of its last trial; "w/o the
end" leaves out, per worker, the time from its last trial's end to the search's end (no
trial left to run: the other workers' last trials, whose length varies with the machine).
The plots that short trials leave for later are drawn after that, by the idle workers,
before the runner returns (`plots after`), as the command line does; the server draws
them in idle time.
Three runs of each workload, one after the other:
- first: a new data folder and a fresh pool: worker processes start, and the synthetic
  data set is generated (once per data folder, ever);
- cold:  a fresh pool on the same folder: the CLI's case from then on;
- warm:  the pool of the cold run, still running: the server's case, whose runner keeps its
  workers (and their mapped data set) between searches.
The fork server the pools fork from is started before the first run, and its start is
printed apart: a runner (the server's, or a CLI run) starts it once. The last column is
the memory each worker holds of its own after the run (median; Linux): what it does not
share with the fork server, which it was forked from.
Last, the digits search through the command line, end to end as a user sees it: a new
process (its imports, the fork server's start, the search, then the left-over plots), on a
new data folder each run; the seconds until the ranking was printed and until it exited.
Then a checkpoint's cost next to an mnist-shaped epoch (60000x784, 784-256-128-10, batch
64, one thread): the trainer's state as bytes and its write to the database (SQLite in a
fresh data folder, and PostgreSQL on 127.0.0.1 where it answers), median of 5; and what a
checkpoint after every epoch costs the training thread as a worker saves them, in the
background: 8 pairs of 2 epochs with one each and 2 without, the median pair's ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import bench_app, machine, run_search, start_fork_server

from lrsearch.execution.local import ProcessSlots
from lrsearch.testing import worker_time

WORKLOADS = {
    "mnist-shaped": {
        "dataset": "synthetic:60000x784x10",
        "layers": "784,256,128,10",
        "trials": 8,
        "epochs": 5,
    },
    "digits 40x20": {"dataset": "digits", "layers": "64,128,10", "trials": 40, "epochs": 20},
}


def measure(name: str, settings: dict, workers: int) -> list[tuple]:
    """First, cold and warm runs of one workload."""
    rows = []
    with bench_app() as app:
        slots = None
        try:
            for mode in ("first", "cold", "warm"):
                if mode != "warm":
                    if slots is not None:
                        slots.shutdown()
                    slots = ProcessSlots(workers)
                wall, returned, search = run_search(app, workers, slots=slots, **settings)
                assert search.status == "completed", [t.error for t in search.trials]
                training = sum(t.seconds for t in search.trials)
                in_trials = sum(
                    (t.finished_at - t.started_at).total_seconds() for t in search.trials
                )
                share = 1 - training / (wall * workers)
                plots = returned - wall
                at_end = worker_time(search)["at the end"]
                n = len(search.trials)
                memory = own_memory(slots)
                rows.append(
                    (name, mode, wall, training, in_trials, n, share, plots, at_end, memory)
                )
        finally:
            if slots is not None:
                slots.shutdown()
    return rows


def own_memory(slots: ProcessSlots) -> float | None:
    """The workers' median memory of their own (not shared with the fork server), in MB."""
    sizes = []
    for process in slots.processes():
        try:
            rollup = Path(f"/proc/{process.pid}/smaps_rollup").read_text()
        except OSError:  # not Linux, or gone
            continue
        fields = dict(line.split(":", 1) for line in rollup.splitlines()[1:])
        own = sum(int(fields[k].split()[0]) for k in ("Private_Clean", "Private_Dirty"))
        sizes.append(own / 1024)
    return statistics.median(sizes) if sizes else None


def checkpoint_cost(rounds: int = 5, blocks: int = 8, per_block: int = 2) -> None:
    """A checkpoint's parts (state to bytes, the database write) next to an epoch, and the
    training thread's cost of one every epoch as a worker saves them (in the background)."""
    from sqlalchemy.exc import OperationalError
    from threadpoolctl import threadpool_limits

    from lrsearch.testing import POSTGRES_SERVER, fresh_postgres
    from lrsearch.training import Hyperparameters, Trainer, load_dataset

    with tempfile.TemporaryDirectory(prefix="lrsearch-ckpt-") as folder, threadpool_limits(1):
        data = load_dataset("synthetic:60000x784x10", folder, seed=0)
        trainer = Trainer(data, Hyperparameters([784, 256, 128, 10], epochs=1), 1e-3)
        epoch = statistics.median(_seconds(trainer.train_epoch) for _ in range(3))
        state = statistics.median(
            _seconds(lambda: trainer.state(1).to_bytes()) for _ in range(rounds)
        )
        blob = trainer.state(1).to_bytes()
        server = os.environ.get("LRSEARCH_BENCH_POSTGRES", POSTGRES_SERVER)
        print(f"\ncheckpoints: mnist-shaped epoch {epoch:.3f} s; state to bytes {state * 1000:.1f} "
              f"ms ({len(blob) / 2**20:.1f} MiB)")  # fmt: skip
        with bench_app() as app:
            _checkpoint_figures("SQLite", app.config["DATABASE_URL"], trainer, blob, epoch,
                                state, rounds, blocks, per_block)  # fmt: skip
        try:
            with fresh_postgres(server, "lrsearch_bench") as url, bench_app() as app:
                _migrate(app, url)
                _checkpoint_figures("PostgreSQL", url, trainer, blob, epoch, state, rounds,
                                    blocks, per_block)  # fmt: skip
        except OperationalError:
            print(f"PostgreSQL: {server} not reachable, skipped")


def _checkpoint_figures(name, url, trainer, blob, epoch, state, rounds, blocks, per_block):
    """Print a write's median, and epochs with a checkpoint each against epochs without,
    side by side in alternating blocks (each block with checkpoints ends when its last is
    written: the cost of a checkpoint the next epoch would hide counts in full)."""
    from lrsearch.execution.trial_writes import TrialWrites
    from lrsearch.store import process_engine
    from lrsearch.store.checkpoints import save_checkpoint

    engine = process_engine(url)
    try:
        with engine.connect() as connection:
            trial = _a_trial(connection)
            write = statistics.median(
                _seconds(lambda: save_checkpoint(connection, trial, 1, 1, blob))
                for _ in range(rounds)
            )
            ratios, handed = [], []
            for _ in range(blocks):
                plain = sum(_seconds(trainer.train_epoch) for _ in range(per_block))
                started = time.perf_counter()
                writes = TrialWrites(connection, trial, 1, lambda m: None)
                for n in range(1, per_block + 1):
                    trainer.train_epoch()
                    state_bytes = lambda n=n: trainer.state(n).to_bytes()  # noqa: E731
                    started_handing = time.perf_counter()
                    writes.checkpoint(n, state_bytes, last=False)
                    handed.append(time.perf_counter() - started_handing)
                writes.close()
                ratios.append((time.perf_counter() - started) / plain)
    finally:
        engine.dispose()
    print(f"{name}: write {write * 1000:.1f} ms; state and write {(state + write) / epoch:.2%} "
          f"of the epoch. Saved in the background: the training thread's part "
          f"{statistics.median(handed) * 1000:.1f} ms ({statistics.median(handed) / epoch:.2%}); "
          f"epochs with one each against without: {statistics.median(ratios) - 1:+.2%} "
          f"(median of {blocks} pairs of {per_block}; from {min(ratios) - 1:+.2%} to "
          f"{max(ratios) - 1:+.2%})")  # fmt: skip


def _seconds(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _a_trial(connection) -> int:
    """A running trial to keep checkpoints for."""
    from sqlalchemy.orm import Session

    from lrsearch.models import Search, Trial
    from lrsearch.settings import SearchSpec

    with Session(bind=connection) as session:
        search = Search.from_spec(SearchSpec(trials=1, epochs=1), status="running")
        search.trials = [Trial(index=0, lr=1e-3, seed=0, status="running", attempt=1)]
        session.add(search)
        session.commit()
        return search.trials[0].id


def _migrate(app, url: str) -> None:
    from flask_migrate import upgrade

    from lrsearch import create_app

    other = create_app({"DATA_DIR": app.config["DATA_DIR"], "SECRET_KEY": "b", "DATABASE_URL": url})
    with other.app_context():
        upgrade(directory=other.config["MIGRATIONS_DIR"])
        from lrsearch.extensions import db

        db.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smaller mnist-shaped search")
    parser.add_argument("--trials", type=int, help="trials of the mnist-shaped search (8)")
    parser.add_argument("--epochs", type=int, help="epochs of each mnist-shaped trial (5)")
    parser.add_argument("--cli-runs", type=int, default=3, help="command-line runs (3)")
    parser.add_argument("--checkpoints-only", action="store_true", help="only their cost")
    args = parser.parse_args()
    if args.checkpoints_only:
        print(f"# overhead on {machine()}")
        checkpoint_cost()
        return
    if args.quick:
        WORKLOADS["mnist-shaped"].update(trials=2, epochs=2)
    if args.trials:
        WORKLOADS["mnist-shaped"].update(trials=args.trials)
    if args.epochs:
        WORKLOADS["mnist-shaped"].update(epochs=args.epochs)
    print(f"# overhead on {machine()}, {args.workers} workers")
    print(f"fork server started in {start_fork_server():.2f} s (imports, once per runner)")
    print(
        f"{'workload':<14} {'run':<5} {'wall s':>7} {'training s':>10} "
        f"{'in-trial extra s':>16} {'outside trials s':>16} {'at the end s':>12} "
        f"{'overhead':>9} {'w/o the end':>11} {'plots after s':>13} {'worker MB own':>13}"
    )
    for name, settings in WORKLOADS.items():
        for name_, mode, wall, training, in_trials, n, share, plots, at_end, memory in measure(
            name, settings, args.workers
        ):
            # in-trial: per trial, its time between claim and end not spent in epochs (the
            # database, log.txt, the plot); outside: per worker, its time in no trial at all
            # (process start, claims, and at the end: waiting, with no trial left, for the
            # other workers' last trials, which vary with the machine's minute)
            extra, outside = (in_trials - training) / n, wall - in_trials / args.workers
            without = 1 - training / ((wall - at_end) * args.workers)
            print(
                f"{name_:<14} {mode:<5} {wall:>7.2f} {training:>10.2f} {extra:>16.3f} "
                f"{outside:>16.3f} {at_end:>12.3f} {share:>9.1%} {without:>11.1%} "
                f"{plots:>13.2f} {'-' if memory is None else f'{memory:.0f}':>13}"
            )
    if args.cli_runs:
        digits = WORKLOADS["digits 40x20"]
        shape = f"{digits['trials']} x {digits['epochs']} digits"
        print(f"\ncommand line: {shape}, {args.workers} workers, a new data folder each run")
        print(f"{'run':>3} {'ranking printed s':>17} {'exited s':>8} {'plots':>5}")
        for run in range(1, args.cli_runs + 1):
            ranked, exited, plots = command_line(digits, args.workers, seed=run)
            print(f"{run:>3} {ranked:>17.2f} {exited:>8.2f} {plots:>5}")
    checkpoint_cost()


def command_line(settings: dict, workers: int, seed: int) -> tuple[float, float, int]:
    """Run `flask lrsearch run` on a new data folder: seconds to its ranking and to its exit."""
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="lrsearch-bench-cli-") as data_dir:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LRSEARCH_")}
        env["LRSEARCH_DATA_DIR"] = data_dir
        command = [sys.executable, "-m", "flask", "--app", "app", "lrsearch", "run"]
        for option in ("dataset", "layers", "trials", "epochs"):
            command += [f"--{option}", str(settings[option])]
        command += ["--workers", str(workers), "--seed", str(seed)]
        started = time.perf_counter()
        with subprocess.Popen(
            command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        ) as process:
            ranked = None
            for line in process.stdout:
                if ranked is None and line.lstrip().startswith("rank"):
                    ranked = time.perf_counter() - started
        exited = time.perf_counter() - started
        assert process.returncode == 0 and ranked is not None, process.returncode
        plots = len(list(Path(data_dir).glob("logs/*/*/curves.png")))
    return ranked, exited, plots


if __name__ == "__main__":
    main()
