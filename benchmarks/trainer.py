"""Seconds per epoch of lrsearch's NumPy trainer against scikit-learn and PyTorch, one thread.

    .venv/bin/python benchmarks/trainer.py [--epochs 3] [--quick] [--no-sklearn] [--no-torch]

MNIST-shaped synthetic data (60,000 x 784, 10 classes), a 784-256-128-10 ReLU network,
Adam at lr 1e-3, batch 64, float32. Each trainer runs one warm-up epoch; then the trainers
take turns, one epoch each per round, for `--epochs` rounds, so that a slow minute of a
shared machine falls on all of them alike. The median epoch is reported (validation is
timed separately for lrsearch). Where Numba is installed, lrsearch also takes its turn on
NumPy's whole-array passes instead of the compiled loops (the same floats). Last,
lrsearch at two high learning rates, with subnormal floats flushed to zero as it trains and
with them kept, in turns the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from unittest import mock

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads OpenBLAS

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lrsearch.training import Hyperparameters, Trainer, kernels  # noqa: E402
from lrsearch.training import trainer as trainer_module  # noqa: E402
from lrsearch.training.datasets import make_synthetic  # noqa: E402

LAYERS = (784, 256, 128, 10)
BATCH = 64
LR = 1e-3
PEAK = "sgemm"


def matmul_flops_per_epoch(n: int, layers: tuple[int, ...] = LAYERS) -> int:
    """Exact matmul FLOPs of one training epoch: forward, dW per layer, dX but for layer 0."""
    pairs = [a * b for a, b in zip(layers, layers[1:], strict=False)]
    return 2 * n * (2 * sum(pairs) + sum(pairs[1:]))


def sgemm_gflops(m: int, k: int, n: int, seconds: float = 1.0) -> float:
    """Best observed float32 matmul rate for (m, k) @ (k, n), in GFLOP/s."""
    run, flops = sgemm_reps(m, k, n)
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline or best == float("inf"):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return flops / best / 1e9


def sgemm_reps(m: int, k: int, n: int) -> tuple[Callable[[], None], int]:
    """A call doing about 0.2 GFLOP of float32 (m, k) @ (k, n) products, and its FLOPs."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    c = np.empty((m, n), np.float32)
    reps = max(1, int(2e8 / (2 * m * k * n)))

    def run() -> None:
        for _ in range(reps):
            np.matmul(a, b, out=c)

    return run, 2 * m * k * n * reps


def time_epoch(run_epoch: Callable[[], object]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and minor page faults of one call."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start, start_cpu = time.perf_counter(), time.process_time()
    run_epoch()
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return seconds, cpu, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def time_in_turns(contenders: dict[str, Callable[[], object]], rounds: int) -> dict[str, dict]:
    """One warm-up epoch each, then `rounds` rounds of one epoch each; medians per contender."""
    for run_epoch in contenders.values():
        run_epoch()
    samples: dict[str, list[tuple[float, float, int]]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run_epoch in contenders.items():
            samples[name].append(time_epoch(run_epoch))
    return {
        name: {
            key: statistics.median(sample[i] for sample in runs)
            for i, key in enumerate(("seconds", "cpu", "faults"))
        }
        for name, runs in samples.items()
    }


def lrsearch_epoch(data) -> Callable[[], object]:
    """lrsearch's Trainer: one training epoch per call."""
    return Trainer(data, Hyperparameters(LAYERS, batch_size=BATCH), LR, seed=0).train_epoch


def patched(run_epoch: Callable[[], object], patch: Callable[[], object]) -> Callable[[], object]:
    """The same epoch, run inside a fresh `patch()` (a mock.patch) each time."""

    def run() -> object:
        with patch():
            return run_epoch()

    return run


def numpy_passes(run_epoch: Callable[[], object]) -> Callable[[], object]:
    """The same epoch on NumPy's whole-array passes instead of the compiled loops."""
    return patched(run_epoch, lambda: mock.patch.multiple(kernels, **kernels.NUMPY))


def sklearn_epoch(data) -> Callable[[], object] | None:
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
    return lambda: model.partial_fit(x, y, classes=classes)


def torch_epoch(data) -> tuple[Callable[[], object], str] | None:
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

    return epoch, torch.__version__


def main(argv: list[str] | None = None) -> None:
    """Print the comparison as a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="timed rounds after the warm-up")
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
    data = make_synthetic(n, LAYERS[0], LAYERS[-1], seed=0)
    generated = time.perf_counter() - start
    peak = sgemm_gflops(2048, 2048, 2048)
    small = sgemm_gflops(BATCH, 784, 256)
    ours = "lrsearch"
    contenders = {ours: lrsearch_epoch(data)}
    if kernels.COMPILED:  # the loops' gain, side by side (the floats are the same)
        contenders["lrsearch, NumPy passes (no Numba)"] = numpy_passes(lrsearch_epoch(data))
    if with_sklearn and (epoch := sklearn_epoch(data)) is not None:
        contenders["scikit-learn MLPClassifier.partial_fit"] = epoch
    if with_torch and (found := torch_epoch(data)) is not None:
        contenders[f"PyTorch {found[1]}, 1 thread"] = found[0]
    # The peak is also measured in every round, between the epochs: a neighbour that slows
    # the trainers slows it too, and the share of peak compares like with like.
    sgemm, sgemm_flops = sgemm_reps(2048, 2048, 2048)
    results = time_in_turns({**contenders, PEAK: lambda: [sgemm() for _ in range(3)]}, epochs)
    peak_in_rounds = 3 * sgemm_flops / results.pop(PEAK)["seconds"] / 1e9
    validation = Trainer(data, Hyperparameters(LAYERS, batch_size=BATCH), LR, seed=0).evaluate
    val_seconds = time_in_turns({"validation": validation}, epochs)["validation"]["seconds"]
    flops = matmul_flops_per_epoch(n)
    mine = results[ours]
    achieved, achieved_cpu = flops / mine["seconds"] / 1e9, flops / mine["cpu"] / 1e9
    loops = f"Numba {version('numba')} loops" if kernels.COMPILED else "NumPy passes"
    print(
        f"numpy {np.__version__}, {loops}; {n:,} samples; median of {epochs} round(s) after "
        "a warm-up, the trainers taking turns"
    )
    print(f"synthetic data generated in {generated:.2f} s; {flops / 1e9:.1f} GFLOP/epoch of matmul")
    print(
        f"sgemm peak (2048^3): {peak:.1f} GFLOP/s best before the rounds, "
        f"{peak_in_rounds:.1f} GFLOP/s in them (median); "
        f"64x784 @ 784x256: {small:.1f} GFLOP/s"
    )
    print(
        f"lrsearch: {achieved:.1f} GFLOP/s achieved = {achieved / peak_in_rounds:.0%} of the "
        f"peak in the rounds, {achieved / peak:.0%} of the best "
        f"({achieved_cpu:.1f} GFLOP/s per CPU second); "
        f"validation pass ({len(data.y_val):,} samples) {val_seconds:.3f} s\n"
    )
    print("| trainer | s/epoch | x lrsearch | CPU s/epoch | minor page faults/epoch |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, result in results.items():
        ratio = result["seconds"] / mine["seconds"]
        print(
            f"| {name} | {result['seconds']:.3f} | {ratio:.2f} | {result['cpu']:.3f} "
            f"| {result['faults']:,.0f} |"
        )
    high_rates(data, epochs)


HIGH_RATES = (1e-2, 1e-1)  # the default range's top, and the top of a wide one


def high_rates(data, epochs: int) -> None:
    """Epochs at high learning rates, subnormal floats flushed (as shipped) against kept.

    Such rates saturate the softmax, whose tiny probabilities and gradients fall below
    float32's normal range; the trainers take turns as above.
    """
    print(
        "\nhigh learning rates: s/epoch with subnormal floats flushed to zero (as shipped) "
        "and kept (as before)\n"
    )
    print("| lr | flushed s/epoch | kept s/epoch | kept / flushed |")
    print("| --- | ---: | ---: | ---: |")
    for lr in HIGH_RATES:
        flushed = Trainer(data, Hyperparameters(LAYERS, batch_size=BATCH), lr, seed=0).train_epoch
        kept = subnormals_kept(
            Trainer(data, Hyperparameters(LAYERS, batch_size=BATCH), lr, seed=0).train_epoch
        )
        seconds = time_in_turns({"flushed": flushed, "kept": kept}, epochs)
        a, b = seconds["flushed"]["seconds"], seconds["kept"]["seconds"]
        print(f"| {lr:g} | {a:.3f} | {b:.3f} | {b / a:.2f} |")


def subnormals_kept(run_epoch: Callable[[], object]) -> Callable[[], object]:
    """The same epoch with the trainer's flushing of subnormal floats turned off."""
    return patched(
        run_epoch,
        lambda: mock.patch.object(trainer_module, "subnormals_flushed", contextlib.nullcontext),
    )


if __name__ == "__main__":
    main()
