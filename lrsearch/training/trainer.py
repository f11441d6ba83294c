"""Minibatch training of an MLP with Adam, reporting each epoch through a callback.

Training is bit-for-bit reproducible from its seed on one machine with the same number of
BLAS threads (OpenBLAS rounds differently with another thread count); workers use one.
Its epochs and validation passes flush subnormal floats to zero (see fpu).
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from lrsearch.training import kernels
from lrsearch.training.adam import Adam
from lrsearch.training.checkpoint import TrainerState
from lrsearch.training.datasets import Dataset
from lrsearch.training.fpu import subnormals_flushed
from lrsearch.training.mlp import DEFAULT_CHUNK, MLP, check_layers

# A batch loss above this many times the first batch's (or ln K, if larger) counts as
# diverged: huge rates kill every ReLU and keep the loss finite, so NaN alone misses them.
EXPLOSION_FACTOR = 1000.0


@dataclass(frozen=True)
class EpochMetrics:
    """What one finished epoch reports, in the seed's log.txt terms."""

    epoch: int  # 1-based
    epochs: int  # planned total
    loss: float  # mean training cross-entropy over the epoch's minibatches (running, as Keras)
    acc_train: float  # training accuracy over the epoch's minibatches (running, as Keras)
    val_loss: float  # full validation-set cross-entropy after the epoch
    acc_val: float  # full validation-set accuracy after the epoch
    seconds: float  # wall seconds of the epoch (training + validation)


@dataclass
class TrainResult:
    """How training ended and every epoch it finished."""

    status: str  # "completed" | "diverged" | "stopped"
    history: list[EpochMetrics] = field(default_factory=list)
    message: str = ""  # for diverged: e.g. "loss became nan in epoch 3 (batch 17)"


@dataclass(frozen=True)
class Hyperparameters:
    """What a search fixes for every trial's training; the rate and the seed are the trial's."""

    layers: Sequence[int]  # input first, output last
    epochs: int = 20
    batch_size: int = 64
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


@dataclass(frozen=True)
class EpochFit:
    """The training half of an epoch: running loss and accuracy, or where it diverged."""

    loss: float
    accuracy: float
    diverged_at: int | None = None  # 1-based batch whose loss was not finite or exploded
    reason: str = ""  # e.g. "loss became nan"


class Trainer:
    """One network, its optimizer and buffers, trained an epoch at a time on a data set."""

    def __init__(self, data: Dataset, hyper: Hyperparameters, lr: float, *, seed: int = 0) -> None:
        layers = _check_arguments(data, hyper, lr)
        batch_size = hyper.batch_size
        kernels.use_compiled()  # the same floats as NumPy's passes, sooner
        init_seed, shuffle_seed = np.random.SeedSequence(seed).spawn(2)
        self.net = MLP(layers, seed=np.random.default_rng(init_seed), dtype=np.float32)
        self.optimizer = Adam(
            self.net.params, float(lr), float(hyper.beta1), float(hyper.beta2), float(hyper.eps)
        )
        self.grad = np.zeros_like(self.net.params)
        self.batch_size = batch_size
        self.x_train, self.y_train = _as_arrays(data.x_train, data.y_train, layers)
        self.x_val, self.y_val = _as_arrays(data.x_val, data.y_val, layers)
        self._shuffle_rng = np.random.default_rng(shuffle_seed)
        self._order = np.arange(len(self.x_train), dtype=np.intp)
        self._x_batch = np.empty((batch_size, layers[0]), np.float32)
        self._y_batch = np.empty(batch_size, np.intp)
        self.net.reserve(max(batch_size, DEFAULT_CHUNK))
        self._first_loss = math.nan
        self._loss_limit = math.inf  # set from the first batch's loss

    def train_epoch(self) -> EpochFit:
        """Run one pass over the reshuffled training set; stop at a non-finite or exploding loss."""
        n = len(self._order)
        loss_sum, hits = 0.0, 0
        with np.errstate(all="ignore"), subnormals_flushed():
            for batch, (x, y) in enumerate(self.batches(), start=1):
                rows = len(y)
                batch_loss, batch_hits = self.net.step_gradient(x, y, self.grad)
                if not batch_loss <= self._loss_limit * rows:  # also true for nan
                    return self._diverged(batch_loss / rows, batch)
                if self.optimizer.steps == 0:
                    self._first_loss = batch_loss / rows
                    scale = max(self._first_loss, math.log(self.net.layers[-1]))
                    self._loss_limit = EXPLOSION_FACTOR * scale
                self.optimizer.step(self.grad)
                loss_sum += batch_loss
                hits += batch_hits
        return EpochFit(loss_sum / n, hits / n)

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One reshuffled pass over the training set: (x, y) per minibatch, in buffers that
        the next batch overwrites."""
        self._shuffle_rng.shuffle(self._order)
        n, size = len(self._order), self.batch_size
        x, y = self._x_batch, self._y_batch
        for start in range(0, n, size):
            index = self._order[start : start + size]
            rows = len(index)
            if rows < size:  # the last, smaller batch
                x, y = x[:rows], y[:rows]
            self.x_train.take(index, axis=0, out=x, mode="clip")
            self.y_train.take(index, out=y, mode="clip")
            yield x, y

    def _diverged(self, loss: float, batch: int) -> EpochFit:
        if math.isfinite(loss):
            reason = (
                f"loss exploded to {loss:.4g} (over {EXPLOSION_FACTOR:g} times "
                f"the first batch's {self._first_loss:.4g})"
            )
        else:
            reason = f"loss became {loss}"
        return EpochFit(loss, math.nan, diverged_at=batch, reason=reason)

    def state(self, epoch: int) -> TrainerState:
        """A copy of everything training has changed, after `epoch` epochs."""
        return TrainerState(
            epoch=epoch, params=self.net.params.copy(), m=self.optimizer.m.copy(),
            v=self.optimizer.v.copy(), steps=self.optimizer.steps, order=self._order.copy(),
            rng_state=self._shuffle_rng.bit_generator.state, first_loss=self._first_loss,
            loss_limit=self._loss_limit,
        )  # fmt: skip

    def restore(self, state: TrainerState) -> None:
        """Go on from `state` (of a trainer of the same network, data and seed)."""
        if state.params.shape != self.net.params.shape or state.order.shape != self._order.shape:
            raise ValueError("the checkpoint is of another network or data set")
        self.net.params[...] = state.params
        self.optimizer.m[...] = state.m
        self.optimizer.v[...] = state.v
        self.optimizer.steps = state.steps
        self._order[...] = state.order
        self._shuffle_rng.bit_generator.state = state.rng_state
        self._first_loss, self._loss_limit = state.first_loss, state.loss_limit

    def evaluate(self) -> tuple[float, float]:
        """Validation loss and accuracy of the current parameters."""
        with np.errstate(all="ignore"), subnormals_flushed():
            return self.net.evaluate(self.x_val, self.y_val)


def train(
    data: Dataset,
    hyper: Hyperparameters,
    lr: float,
    *,
    seed: int = 0,
    on_epoch: Callable[[EpochMetrics], bool | None] | None = None,
    resume: TrainerState | None = None,
    on_state: Callable[[Trainer, int], None] | None = None,
) -> TrainResult:
    """Train an MLP; on_epoch runs after each epoch, and returning True stops it ("stopped").

    resume: go on after that checkpoint's epoch, exactly as the run that saved it would
    have (its history then holds the later epochs only). on_state(trainer, epoch) runs after
    each epoch that goes on, to save a checkpoint (Trainer.state).
    """
    epochs = hyper.epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    trainer = Trainer(data, hyper, lr, seed=seed)
    first = 1
    if resume is not None:
        trainer.restore(resume)
        first = resume.epoch + 1
    history: list[EpochMetrics] = []
    for epoch in range(first, epochs + 1):
        started = time.perf_counter()
        fit = trainer.train_epoch()
        if fit.diverged_at is not None:
            message = f"{fit.reason} in epoch {epoch} (batch {fit.diverged_at})"
            return TrainResult("diverged", history, message)
        val_loss, acc_val = trainer.evaluate()
        if not math.isfinite(val_loss):
            return TrainResult(
                "diverged", history, f"validation loss became {val_loss} after epoch {epoch}"
            )
        metrics = EpochMetrics(
            epoch, epochs, fit.loss, fit.accuracy, val_loss, acc_val, time.perf_counter() - started
        )
        history.append(metrics)
        if on_epoch is not None and on_epoch(metrics):
            return TrainResult("stopped", history)
        if on_state is not None:
            on_state(trainer, epoch)
    return TrainResult("completed", history)


def _check_arguments(data: Dataset, hyper: Hyperparameters, lr: float) -> tuple[int, ...]:
    layers, batch_size = hyper.layers, hyper.batch_size
    beta1, beta2, eps = hyper.beta1, hyper.beta2, hyper.eps
    sizes = check_layers(layers)
    if sizes[0] != data.n_features or sizes[-1] != data.n_classes:
        raise ValueError(
            f"layers {list(sizes)} do not fit data set {data.name!r}: the first size must be "
            f"its {data.n_features} features and the last its {data.n_classes} classes"
        )
    real = isinstance(lr, numbers.Real) and not isinstance(lr, bool)
    if not (real and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
        raise ValueError(f"beta1 and beta2 must lie in [0, 1), got {beta1!r} and {beta2!r}")
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive finite number, got {eps!r}")
    if len(data.y_train) == 0 or len(data.y_val) == 0:
        raise ValueError(f"data set {data.name!r} has an empty training or validation part")
    return sizes


def _as_arrays(x: np.ndarray, y: np.ndarray, layers: tuple[int, ...]) -> tuple:
    x = np.ascontiguousarray(x, dtype=np.float32)  # a no-op for a Dataset's own arrays
    y = np.ascontiguousarray(y, dtype=np.intp)
    if x.ndim != 2 or x.shape[1] != layers[0] or y.shape != (len(x),):
        raise ValueError(f"data of shape {x.shape} with labels {y.shape} do not fit {list(layers)}")
    if y.min() < 0 or y.max() >= layers[-1]:
        raise ValueError(f"labels must lie in [0, {layers[-1]})")
    return x, y
