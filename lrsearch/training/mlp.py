"""A ReLU multilayer perceptron with a softmax cross-entropy output, in NumPy.

All weights and biases are views into one flat parameter vector, and gradients are written
into one flat vector of the same layout, so the optimizer updates everything in a few
whole-array operations. Every intermediate lives in a preallocated workspace: a training
step allocates no large temporaries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lrsearch.training import kernels

DEFAULT_CHUNK = 1024  # rows per forward pass when evaluating a whole data set


def check_layers(layers: Sequence[int]) -> tuple[int, ...]:
    """Validate layer sizes such as [784, 256, 128, 10] and return them as a tuple."""
    sizes = tuple(layers)
    if len(sizes) < 2:
        raise ValueError(f"layers needs at least an input and an output size, got {list(sizes)}")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
            raise ValueError(f"layer sizes must be positive integers, got {list(sizes)}")
    if sizes[-1] < 2:
        raise ValueError(f"the output layer needs at least 2 classes, got {sizes[-1]}")
    return tuple(int(size) for size in sizes)


def parameter_count(layers: Sequence[int]) -> int:
    """Number of weights and biases of a network with these layer sizes."""
    sizes = check_layers(layers)
    return sum(n_in * n_out + n_out for n_in, n_out in zip(sizes, sizes[1:], strict=False))


def split_parameters(flat: np.ndarray, layers: Sequence[int]) -> tuple[list, list]:
    """Weight matrices (in, out) and bias vectors as views into a flat parameter vector."""
    sizes = check_layers(layers)
    weights, biases, start = [], [], 0
    for n_in, n_out in zip(sizes, sizes[1:], strict=False):
        weights.append(flat[start : start + n_in * n_out].reshape(n_in, n_out))
        start += n_in * n_out
        biases.append(flat[start : start + n_out])
        start += n_out
    if start != flat.size:
        raise ValueError(f"expected {start} parameters for layers {list(sizes)}, got {flat.size}")
    return weights, biases


class _Workspace:
    """Preallocated buffers for up to `rows` samples; a pass uses the first r rows of each."""

    def __init__(self, layers: tuple[int, ...], rows: int, dtype: np.dtype) -> None:
        self.rows = rows
        self.dtype = dtype
        self.acts = [np.empty((rows, n), dtype) for n in layers[1:]]  # last one: the logits
        self.deltas = [np.empty((rows, n), dtype) for n in layers[1:-1]]
        self.active = [np.empty((rows, n), np.bool_) for n in layers[1:-1]]
        # NumPy's maximum and greater are several times faster against an array of the same
        # shape than against a scalar 0, and sums are faster as products with ones.
        self.zeros = [np.zeros((rows, n), dtype) for n in layers[1:-1]]
        self.ones_rows = np.ones(rows, dtype)
        self.probs = np.empty((rows, layers[-1]), dtype)
        self.offsets = np.arange(rows, dtype=np.intp) * layers[-1]
        self.flat_index = np.empty(rows, np.intp)
        self.row_a = np.empty(rows, dtype)
        self.row_b = np.empty(rows, dtype)
        self.predicted = np.empty(rows, np.intp)
        self.hits = np.empty(rows, np.bool_)
        self._views: dict[int, _Views] = {}

    def views(self, rows: int) -> _Views:
        """The first `rows` rows of every buffer, sliced once per size (a few per trainer)."""
        views = self._views.get(rows)
        if views is None:
            views = self._views[rows] = _Views(self, rows)
        return views


class _Views:
    """A workspace's buffers cut to one pass's rows, once: slicing them anew was a visible
    share of a small step's time."""

    def __init__(self, ws: _Workspace, rows: int) -> None:
        self.acts = [a[:rows] for a in ws.acts]
        self.deltas = [d[:rows] for d in ws.deltas]
        self.active = [a[:rows] for a in ws.active]
        self.zeros = [z[:rows] for z in ws.zeros]
        self.ones_rows = ws.ones_rows[:rows]
        self.probs = ws.probs[:rows]
        self.offsets = ws.offsets[:rows]
        self.flat_index = ws.flat_index[:rows]
        self.lse, self.total = ws.row_a[:rows], ws.row_b[:rows]
        self.predicted, self.hits = ws.predicted[:rows], ws.hits[:rows]
        real = ws.dtype.type  # as NumPy casts a Python number against the arrays
        self.rows, self.inv_rows = real(rows), real(1.0 / rows)


class MLP:
    """A ReLU network with softmax output whose parameters live in one flat vector."""

    def __init__(
        self,
        layers: Sequence[int],
        *,
        seed: int | np.random.Generator = 0,
        dtype: type | np.dtype = np.float32,
    ) -> None:
        self.layers = check_layers(layers)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.params = np.zeros(parameter_count(self.layers), self.dtype)
        self.weights, self.biases = split_parameters(self.params, self.layers)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        for w in self.weights:  # He initialisation; biases start at zero
            rng.standard_normal(out=w, dtype=self.dtype)
            w *= math.sqrt(2.0 / w.shape[0])
        self._ws: _Workspace | None = None
        self._grad_views: tuple[np.ndarray, list, list] | None = None

    def reserve(self, rows: int) -> None:
        """Allocate buffers for passes over up to `rows` samples at once."""
        if self._ws is None or self._ws.rows < rows:
            self._ws = _Workspace(self.layers, max(rows, 1), self.dtype)

    def loss(self, x: np.ndarray, y: np.ndarray) -> float:
        """Mean cross-entropy of the batch (x, y)."""
        x, y = self._inputs(x, y)
        self.reserve(len(x))
        loss_sum, _ = self._cross_entropy(self._forward(x), y, want_grad=False)
        return loss_sum / len(x)

    def loss_and_grad(
        self, x: np.ndarray, y: np.ndarray, grad: np.ndarray | None = None
    ) -> tuple[float, np.ndarray]:
        """Mean cross-entropy of the batch and its gradient, laid out like `params`."""
        x, y = self._inputs(x, y)
        if grad is None:
            grad = np.empty_like(self.params)
        self.reserve(len(x))
        loss_sum, _ = self.step_gradient(x, y, grad)
        return loss_sum / len(x), grad

    def step_gradient(self, x: np.ndarray, y: np.ndarray, grad: np.ndarray) -> tuple[float, int]:
        """Write the batch's mean-loss gradient into `grad`; return (summed loss, hits).

        The fast path of training: x must have this network's dtype, y must be integer
        labels within range, and `reserve(len(x))` must have been called.
        """
        logits = self._forward(x)
        loss_sum, hits = self._cross_entropy(logits, y, want_grad=True)
        self._backward(x, self._split_grad(grad))
        return loss_sum, hits

    def evaluate(
        self, x: np.ndarray, y: np.ndarray, chunk: int = DEFAULT_CHUNK
    ) -> tuple[float, float]:
        """Mean cross-entropy and accuracy over a whole data set, in chunks of rows."""
        x, y = self._inputs(x, y)
        n = len(x)
        if n == 0:
            return math.nan, math.nan
        self.reserve(min(n, chunk))
        rows = min(chunk, self._ws.rows)
        loss_sum, hits = 0.0, 0
        for start in range(0, n, rows):
            stop = start + rows
            part_loss, part_hits = self._cross_entropy(
                self._forward(x[start:stop]), y[start:stop], want_grad=False
            )
            loss_sum += part_loss
            hits += part_hits
        return loss_sum / n, hits / n

    def _inputs(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=self.dtype)
        y = np.ascontiguousarray(y, dtype=np.intp)
        if x.ndim != 2 or x.shape[1] != self.layers[0] or y.shape != (len(x),):
            raise ValueError(
                f"expected x of shape (n, {self.layers[0]}) and y of shape (n,), "
                f"got {x.shape} and {y.shape}"
            )
        if len(y) and (y.min() < 0 or y.max() >= self.layers[-1]):
            raise ValueError(f"labels must lie in [0, {self.layers[-1]})")
        return x, y

    def _split_grad(self, grad: np.ndarray) -> tuple[list, list]:
        cached = self._grad_views
        if cached is None or cached[0] is not grad:
            if grad.shape != self.params.shape or grad.dtype != self.dtype:
                raise ValueError("grad must be a flat vector shaped and typed like params")
            cached = (grad, *split_parameters(grad, self.layers))
            self._grad_views = cached
        return cached[1], cached[2]

    def _forward(self, x: np.ndarray) -> np.ndarray:
        v, out = self._ws.views(x.shape[0]), x
        last = len(self.weights) - 1
        for i, (w, b, act) in enumerate(zip(self.weights, self.biases, v.acts, strict=True)):
            np.matmul(out, w, out=act)
            if i < last:
                kernels.add_bias_relu(act, b, v.zeros[i])
            else:
                np.add(act, b, out=act)
            out = act
        return out

    def _cross_entropy(
        self, logits: np.ndarray, y: np.ndarray, want_grad: bool
    ) -> tuple[float, int]:
        """Summed loss and hit count; with want_grad, leaves d(mean loss)/d(logits) in probs."""
        v = self._ws.views(logits.shape[0])
        lse, total, probs = v.lse, v.total, v.probs
        n_hits = kernels.shift_logits(logits, y, lse, v.predicted, v.hits)
        np.exp(logits, out=probs)  # NumPy's exp and log in either form: the same floats
        kernels.row_sums(probs, total)
        np.log(total, out=lse)  # log-sum-exp of the shifted logits
        kernels.cross_entropy_rows(
            logits, y, probs, lse, total, v.rows, v.inv_rows, want_grad, v.flat_index, v.offsets
        )
        return float(np.add.reduce(lse, dtype=np.float64)), n_hits

    def _backward(self, x: np.ndarray, grads: tuple[list, list]) -> None:
        v = self._ws.views(x.shape[0])
        grad_w, grad_b = grads
        delta = v.probs
        for i in range(len(self.weights) - 1, -1, -1):
            below = x if i == 0 else v.acts[i - 1]
            np.matmul(below.T, delta, out=grad_w[i])
            np.matmul(v.ones_rows, delta, out=grad_b[i])
            if i == 0:
                break  # no gradient for the input itself
            prev = v.deltas[i - 1]
            np.matmul(delta, self.weights[i].T, out=prev)
            kernels.relu_backward(prev, below, v.zeros[i - 1], v.active[i - 1])
            delta = prev
