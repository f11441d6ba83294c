"""Seconds per epoch of lrsearch's NumPy trainer against scikit-learn and PyTorch, one thread.

    .venv/bin/python benchmarks/trainer.py [--epochs 3] [--quick] [--no-sklearn] [--no-torch]

MNIST-shaped synthetic data (60,000 x 784, 10 classes), a 784-256-128-10 ReLU network,
Adam at lr 1e-3, batch 64, float32. Each trainer runs one warm-up epoch, then the median of
`--epochs` timed training epochs is reported (validation is timed separately for lrsearch).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads OpenBLAS

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lrsearch.training import Trainer, load_dataset  # noqa: E402

LAYERS = (784, 256, 128, 10)
BATCH = 64
LR = 1e-3


def matmul_flops_per_epoch(n: int, layers: tuple[int, ...] = LAYERS) -> int:
    """Exact matmul FLOPs of one training epoch: forward, dW per layer, dX but for layer 0."""
    pairs = [a * b for a, b in zip(layers, layers[1:], strict=False)]
    return 2 * n * (2 * sum(pairs) + sum(pairs[1:]))


def sgemm_gflops(m: int, k: int, n: int, seconds: float = 1.0) -> float:
    """Best observed float32 matmul rate for (m, k) @ (k, n), in GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    c = np.empty((m, n), np.float32)
    reps = max(1, int(2e8 / (2 * m * k * n)))
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline or best == float("inf"):
        start = time.perf_counter()
        for _ in range(reps):
            np.matmul(a, b, out=c)
        best = min(best, (time.perf_counter() - start) / reps)
    return 2 * m * k * n / best / 1e9


def time_epochs(run_epoch: Callable[[], object], epochs: int) -> dict[str, float]:
    """Median wall seconds, CPU seconds and minor page faults per epoch, after a warm-up."""
    run_epoch()
    seconds, cpu, faults = [], [], []
    for _ in range(epochs):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start, start_cpu = time.perf_counter(), time.process_time()
        run_epoch()
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return {
        "seconds": statistics.median(seconds),
        "cpu": statistics.median(cpu),
        "faults": statistics.median(faults),
    }


def bench_lrsearch(data, epochs: int) -> dict[str, float]:
    """lrsearch's Trainer: training epochs, then the validation pass on its own."""
    trainer = Trainer(data, LAYERS, LR, batch_size=BATCH, seed=0)
    result = time_epochs(trainer.train_epoch, epochs)
    result["val_seconds"] = time_epochs(trainer.evaluate, epochs)["seconds"]
    return result


def bench_sklearn(data, epochs: int) -> dict[str, float] | None:
    """scikit-learn MLPClassifier, one epoch per partial_fit call."""
    try:
        from sklearn.neural_network import MLPClassifier
    except ImportError:
        return None
    model = MLPClassifier(
        solver="adam",
        hidden_layer_sizes=LAYERS[1:-1],
        batch_size=BATCH,
        learning_rate_init=LR,
        random_state=0,
    )
    classes = np.arange(LAYERS[-1])
    x, y = data.x_train, data.y_train
    return time_epochs(lambda: model.partial_fit(x, y, classes=classes), epochs)


def bench_torch(data, epochs: int) -> dict[str, float] | None:
    """PyTorch on one thread: the same network, Adam and batch, reshuffled every epoch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    torch.manual_seed(0)
    sizes = list(LAYERS)
    modules: list = []
    for n_in, n_out in zip(sizes, sizes[1:], strict=False):
        modules += [torch.nn.Linear(n_in, n_out), torch.nn.ReLU()]
    model = torch.nn.Sequential(*modules[:-1])
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    x, y = torch.from_numpy(np.array(data.x_train)), torch.from_numpy(np.array(data.y_train))

    def epoch() -> None:
        order = torch.randperm(len(x))
        for start in range(0, len(x), BATCH):
            index = order[start : start + BATCH]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[index]), y[index])
            loss.backward()
            optimizer.step()

    return {**time_epochs(epoch, epochs), "version": torch.__version__}


def main(argv: list[str] | None = None) -> None:
    """Print the comparison as a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up")
    parser.add_argument("--quick", action="store_true", help="one timed epoch, 10,000 samples")
    parser.add_argument("--no-sklearn", action="store_true")
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args(argv)
    n = 10_000 if args.quick else 60_000
    epochs = 1 if args.quick else args.epochs
    with threadpool_limits(1):
        run(n, epochs, not args.no_sklearn, not args.no_torch)


def run(n: int, epochs: int, with_sklearn: bool, with_torch: bool) -> None:
    """Measure everything on one BLAS thread and print the table."""
    start = time.perf_counter()
    data = load_dataset(f"synthetic:{n}x{LAYERS[0]}x{LAYERS[-1]}", ".", seed=0)
    generated = time.perf_counter() - start
    peak = sgemm_gflops(2048, 2048, 2048)
    small = sgemm_gflops(BATCH, 784, 256)
    ours = bench_lrsearch(data, epochs)
    rows = [("lrsearch (NumPy)", ours)]
    if with_sklearn and (result := bench_sklearn(data, epochs)) is not None:
        rows.append(("scikit-learn MLPClassifier.partial_fit", result))
    if with_torch and (result := bench_torch(data, epochs)) is not None:
        rows.append((f"PyTorch {result.pop('version')}, 1 thread", result))
    flops = matmul_flops_per_epoch(n)
    achieved, achieved_cpu = flops / ours["seconds"] / 1e9, flops / ours["cpu"] / 1e9
    print(f"numpy {np.__version__}; {n:,} samples; median of {epochs} epoch(s) after a warm-up")
    print(f"synthetic data generated in {generated:.2f} s; {flops / 1e9:.1f} GFLOP/epoch of matmul")
    print(f"sgemm peak (2048^3): {peak:.1f} GFLOP/s; 64x784 @ 784x256: {small:.1f} GFLOP/s")
    print(
        f"lrsearch: {achieved:.1f} GFLOP/s achieved = {achieved / peak:.0%} of peak "
        f"({achieved_cpu:.1f} GFLOP/s = {achieved_cpu / peak:.0%} per CPU second); "
        f"validation pass ({len(data.y_val):,} samples) {ours['val_seconds']:.3f} s\n"
    )
    print("| trainer | s/epoch | x lrsearch | CPU s/epoch | minor page faults/epoch |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, result in rows:
        ratio = result["seconds"] / ours["seconds"]
        print(
            f"| {name} | {result['seconds']:.3f} | {ratio:.2f} | {result['cpu']:.3f} "
            f"| {result['faults']:,.0f} |"
        )


if __name__ == "__main__":
    main()
