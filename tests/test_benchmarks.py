"""The benchmark scripts still run and print their tables (small settings; no time asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from lrsearch.testing import worker_time

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def run_benchmark(*args: str) -> str:
    """Run one script from the repository root as a user would; its standard output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LRSEARCH_")}
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def table_rows(output: str, first_column: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines() if line.split()[:1] == [first_column]]


def test_trainer_benchmark_prints_its_comparison():
    out = run_benchmark("benchmarks/trainer.py", "--quick", "--no-torch")
    assert "GFLOP/s achieved" in out
    assert "| lrsearch |" in out and "Numba" in out.splitlines()[0]
    assert "| lrsearch, NumPy passes (no Numba) |" in out
    assert "| scikit-learn MLPClassifier.partial_fit |" in out
    high = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| 0.")]
    assert [row[0].strip() for row in high] == ["0.01", "0.1"]
    assert all(float(cell) > 0 for row in high for cell in row[1:])
    assert not (ROOT / "cache").exists()  # nothing left in the checkout


def test_pool_scaling_prints_a_row_per_worker_count():
    out = run_benchmark("benchmarks/pool_scaling.py", "1", "2", "--rounds", "1", "--skip-mnist")
    rows = [row for row in (line.split() for line in out.splitlines()) if row[:1] in (["1"], ["2"])]
    assert [row[0] for row in rows] == ["1", "2"]
    assert rows[0][5] == "1.00x"  # the first count is the base of the speed-up


def test_pool_scaling_prints_the_bare_trainers_ceiling():
    out = run_benchmark(
        "benchmarks/pool_scaling.py", "1", "2", "--rounds", "1", "--bare-only", "--bare-epochs", "1"
    )
    assert "trainers alone" in out and "digits" not in out
    rows = [row for row in (line.split() for line in out.splitlines()) if row[:1] in (["1"], ["2"])]
    assert [row[0] for row in rows] == ["1", "2"]
    assert rows[0][2] == rows[0][4] == "1.00"  # one trainer alone is the base of both
    assert all(float(row[3]) >= float(row[1]) > 0 for row in rows)  # slowest >= median


def test_worker_time_places_every_second_of_each_worker():
    t0 = datetime(2026, 1, 1)

    def trial(worker: str, start: float, end: float, seconds: float):
        at = t0 + timedelta(seconds=start), t0 + timedelta(seconds=end)
        return SimpleNamespace(worker=worker, started_at=at[0], finished_at=at[1], seconds=seconds)

    search = SimpleNamespace(
        created_at=t0,
        trials=[  # worker a: two trials with a gap; worker b: one late, long trial
            trial("a", 3.0, 5.0, 1.5),
            trial("a", 0.5, 2.5, 1.0),
            trial("b", 1.0, 10.0, 8.0),
        ],
    )
    spent = worker_time(search)
    assert spent == pytest.approx(
        {
            "training": (2.5 + 8.0) / 2,
            "in trials": ((4.0 - 2.5) + (9.0 - 8.0)) / 2,
            "before": (0.5 + 1.0) / 2,
            "between": 0.5 / 2,
            "at the end": 5.0 / 2,
        }
    )
    assert sum(spent.values()) == pytest.approx(10.0)  # the search's wall time, per worker


def test_overhead_prints_first_cold_and_warm_runs_and_the_command_line():
    out = run_benchmark("benchmarks/overhead.py", "--quick", "--cli-runs", "1")
    for workload in ("mnist-shaped", "digits"):
        rows = table_rows(out, workload)
        runs = [row[1] if workload == "mnist-shaped" else row[2] for row in rows]
        assert runs == ["first", "cold", "warm"], out
        assert all(float(row[-1]) > 0 for row in rows), out  # each worker's own memory, MB
    [cli] = table_rows(out, "1")  # run 1: seconds to the ranking, to the exit, plots drawn
    assert float(cli[1]) < float(cli[2]) and cli[3] == "40", out


@pytest.mark.browser
def test_dashboard_prints_a_row_per_size_with_the_page_measured():
    out = run_benchmark(
        "benchmarks/dashboard.py", "--sizes", "30", "--live-seconds", "2", "--searches", "120"
    )
    [row] = table_rows(out, "30")
    assert len(row) == 13 and "nan" not in row, out
    assert 0 <= float(row[12].rstrip("%")) <= 100  # the live page's busy share
    [listed] = [line for line in out.splitlines() if line.startswith("120 searches:")]
    assert "nan" not in listed and "page drawn" in listed


def test_search_efficiency_prints_the_range_tests_table():
    out = run_benchmark(
        "benchmarks/search_efficiency.py", "--part", "range", "--seeds", "2",
        "--datasets", "digits", "--epochs", "2", "--workers", "1",
    )  # fmt: skip
    rows = [row for row in (line.split() for line in out.splitlines()) if row[:1] in (["0"], ["1"])]
    assert len(rows) == 2 and all(row[3] in ("yes", "no") for row in rows)
    assert "the grid's best rate inside the suggested range for" in out


@pytest.mark.postgres
def test_dask_scaling_prints_both_executors_side_by_side():
    out = run_benchmark(
        "benchmarks/dask_scaling.py", "1", "--rounds", "1", "--workloads", "write-bound"
    )
    [row] = [line.split() for line in out.splitlines() if line.split()[:1] == ["1"]]
    assert len(row) == 6 and all(float(cell) > 0 for cell in row[1:])
