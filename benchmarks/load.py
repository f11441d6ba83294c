"""Load: 50 concurrent clients poll a running search's API under gunicorn for 20 s.

Usage: python benchmarks/load.py [--clients 50] [--seconds 20] [--web-workers 2]

Prints requests/s, p50 and p99 latency and the error count (status >= 500 or a broken
connection) for the search detail and the incremental poll, while the runner trains.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import tempfile
import threading
import time

from common import machine

from lrsearch.testing import request, server

SEARCH = {"dataset": "digits", "layers": [64, 128, 10], "trials": 40, "epochs": 50, "workers": 2}


def client_loop(
    host: str,
    port: int,
    paths: list[str],
    stop: threading.Event,
    latencies: list[float],
    errors: list[str],
) -> None:
    """One client: a kept-alive connection, requests back to back."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    i = 0
    while not stop.is_set():
        path = paths[i % len(paths)]
        i += 1
        started = time.perf_counter()
        try:
            status, _ = request(host, port, "GET", path, connection=conn)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(type(exc).__name__)
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=30)
            continue
        latencies.append(time.perf_counter() - started)
        if status >= 500:
            errors.append(str(status))
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--web-workers", type=int, default=2)
    args = parser.parse_args()
    print(
        f"# load on {machine()}: {args.clients} clients, {args.seconds:g} s, "
        f"{args.web_workers} gunicorn workers x 4 threads, runner with 2 workers"
    )
    with (
        tempfile.TemporaryDirectory() as data_dir,
        server(data_dir, web_workers=args.web_workers) as (host, port, _),
    ):
        status, created = request(host, port, "POST", "/api/searches", SEARCH)
        assert status == 201, created
        sid = created["id"]
        time.sleep(2)  # let the runner start training
        paths = [f"/api/searches/{sid}", f"/api/searches/{sid}/poll?after=0"]
        stop, latencies, errors = threading.Event(), [], []
        threads = [
            threading.Thread(target=client_loop, args=(host, port, paths, stop, latencies, errors))
            for _ in range(args.clients)
        ]
        started = time.perf_counter()
        for t in threads:
            t.start()
        time.sleep(args.seconds)
        stop.set()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        _, detail = request(host, port, "GET", f"/api/searches/{sid}")
    cuts = statistics.quantiles(latencies, n=100)
    print(
        f"{'requests':>9} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
        f"{'epochs trained meanwhile':>25}"
    )
    print(
        f"{len(latencies):>9} {len(latencies) / elapsed:>7.1f} {cuts[49] * 1000:>7.1f} "
        f"{cuts[98] * 1000:>7.1f} {len(errors):>6} {detail['search']['epochs_done']:>25}"
    )
    if errors:
        print("errors:", sorted(set(errors)))


if __name__ == "__main__":
    main()
