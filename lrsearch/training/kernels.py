"""The trainer's elementwise passes: compiled loops where Numba is installed, NumPy otherwise.

NumPy runs each of these as whole-array passes, one per operation (Adam's update takes ten
over four parameter-sized vectors, which do not fit in a core's cache); a compiled loop
reads and writes each element once. The two forms give the same floats: the loops are
compiled without fast-math, so nothing is reassociated or fused into a multiply-add, and
tests hold every pair to that. A process uses the NumPy forms until `use_compiled()`
(called by every Trainer) swaps the loops in; without Numba, or where it cannot compile
them, they stay, and this package needs NumPy alone. Numba is imported only then, so a
process that never trains (the web server, the command line's own) never loads it.

Floats are those of the arrays: scalars arrive already cast to the arrays' dtype, as NumPy
casts a Python float against a float32 array. The softmax's exp and log stay NumPy's in
both forms (compiled, they would be the C library's, which differ in the last bit), and
its row sums go column after column in both (a matmul's order is the BLAS's own).
"""

from __future__ import annotations

import logging

import numpy as np


def adam_update_numpy(params, grad, m, v, beta1, beta2, eps, step) -> None:
    """M = beta1 M + g; V = beta2 V + g^2; params -= step M / (sqrt(V) + eps); grad is spent."""
    np.multiply(m, beta1, out=m)
    np.add(m, grad, out=m)
    np.multiply(v, beta2, out=v)
    np.square(grad, out=grad)
    np.add(v, grad, out=v)
    np.sqrt(v, out=grad)  # grad is free from here on: it holds the step
    np.add(grad, eps, out=grad)
    np.divide(m, grad, out=grad)
    np.multiply(grad, step, out=grad)
    np.subtract(params, grad, out=params)


def adam_update_loop(params, grad, m, v, beta1, beta2, eps, step) -> None:
    """adam_update_numpy, one element at a time (grad is left as it was)."""
    for i in range(params.shape[0]):
        g = grad[i]
        mi = m[i] * beta1 + g
        vi = v[i] * beta2 + g * g
        m[i] = mi
        v[i] = vi
        params[i] = params[i] - (mi / (np.sqrt(vi) + eps)) * step


def add_bias_relu_numpy(act, bias, zeros) -> None:
    """act = max(act + bias, 0) row by row; NaN stays NaN (zeros: act's shape, all 0)."""
    np.add(act, bias, out=act)
    np.maximum(act, zeros, out=act)


def add_bias_relu_loop(act, bias, zeros) -> None:
    """add_bias_relu_numpy, one element at a time (zeros is not read)."""
    rows, cols = act.shape
    zero = act.dtype.type(0)
    for r in range(rows):
        for j in range(cols):
            x = act[r, j] + bias[j]
            act[r, j] = x if not x <= 0 else zero  # max(x, 0) that keeps NaN, as NumPy's does


def relu_backward_numpy(delta, below, zeros, active) -> None:
    """delta *= (below > 0): the ReLU's derivative (zeros, active: scratch of below's shape)."""
    np.greater(below, zeros, out=active)
    np.multiply(delta, active, out=delta)


def relu_backward_loop(delta, below, zeros, active) -> None:
    """relu_backward_numpy, one element at a time (zeros and active are not used)."""
    rows, cols = delta.shape
    one, zero = delta.dtype.type(1), delta.dtype.type(0)
    for r in range(rows):
        for j in range(cols):
            delta[r, j] = delta[r, j] * (one if below[r, j] > 0 else zero)


def shift_logits_numpy(logits, y, shift, predicted, hits) -> int:
    """Subtract each row's maximum (into shift) from logits; predicted = argmax; hit count."""
    np.maximum.reduce(logits, axis=1, out=shift)
    np.subtract(logits, shift[:, None], out=logits)  # stable log-softmax: logits now <= 0
    np.argmax(logits, axis=1, out=predicted)
    return int(np.count_nonzero(np.equal(predicted, y, out=hits)))


def shift_logits_loop(logits, y, shift, predicted, hits) -> int:
    """shift_logits_numpy, a row at a time: NaN wins both the maximum and the argmax."""
    rows, classes = logits.shape
    n_hits = 0
    for r in range(rows):
        top = logits[r, 0]
        for j in range(1, classes):
            x = logits[r, j]
            if x != x or x > top:  # once top is NaN, nothing is greater
                top = x if top == top else top
        shift[r] = top
        best, arg = logits[r, 0] - top, 0
        logits[r, 0] = best
        for j in range(1, classes):
            x = logits[r, j] - top
            logits[r, j] = x
            if best == best and (x != x or x > best):  # the first NaN, else the first max
                best, arg = x, j
        predicted[r] = arg
        hits[r] = arg == y[r]
        n_hits += arg == y[r]
    return n_hits


def row_sums_numpy(probs, total) -> None:
    """total = each row's sum, column after column (a fixed order, unlike a matmul's)."""
    np.copyto(total, probs[:, 0])
    for j in range(1, probs.shape[1]):
        np.add(total, probs[:, j], out=total)


def row_sums_loop(probs, total) -> None:
    """row_sums_numpy, a row at a time."""
    rows, classes = probs.shape
    for r in range(rows):
        acc = probs[r, 0]
        for j in range(1, classes):
            acc += probs[r, j]
        total[r] = acc


def cross_entropy_rows_numpy(
    logits, y, probs, lse, total, rows, inv_rows, want_grad, flat_index, offsets
) -> None:
    """lse becomes each row's loss; with want_grad, probs d(mean loss)/d(logits).

    logits are shifted, probs their exp, total the row sums and lse their log; rows and
    inv_rows are the row count and its inverse as the arrays' float.
    """
    if want_grad:  # probs / (total * rows): the softmax part of d(mean loss)/d(logits)
        np.multiply(total, rows, out=total)
        np.divide(probs, total[:, None], out=probs)
    true_logit = total  # free from here on
    np.add(offsets, y, out=flat_index)
    np.take(logits.reshape(-1), flat_index, out=true_logit, mode="clip")
    np.subtract(lse, true_logit, out=lse)  # per-sample cross-entropy
    if want_grad:  # minus onehot / rows
        flat_probs = probs.reshape(-1)
        np.take(flat_probs, flat_index, out=true_logit, mode="clip")
        np.subtract(true_logit, inv_rows, out=true_logit)
        np.put(flat_probs, flat_index, true_logit, mode="clip")


def cross_entropy_rows_loop(
    logits, y, probs, lse, total, rows, inv_rows, want_grad, flat_index, offsets
) -> None:
    """cross_entropy_rows_numpy, a row at a time (flat_index and offsets are not used)."""
    for r in range(logits.shape[0]):
        label = y[r]
        lse[r] = lse[r] - logits[r, label]
        if want_grad:
            scale = total[r] * rows
            for j in range(probs.shape[1]):
                probs[r, j] = probs[r, j] / scale
            probs[r, label] = probs[r, label] - inv_rows


NUMPY = {
    "adam_update": adam_update_numpy,
    "add_bias_relu": add_bias_relu_numpy,
    "relu_backward": relu_backward_numpy,
    "shift_logits": shift_logits_numpy,
    "row_sums": row_sums_numpy,
    "cross_entropy_rows": cross_entropy_rows_numpy,
}
LOOPS = {
    "adam_update": adam_update_loop,
    "add_bias_relu": add_bias_relu_loop,
    "relu_backward": relu_backward_loop,
    "shift_logits": shift_logits_loop,
    "row_sums": row_sums_loop,
    "cross_entropy_rows": cross_entropy_rows_loop,
}


def compile_loops() -> dict | None:
    """The loops compiled by Numba (cached on disk where it can be), or None without it."""
    try:  # an optional accelerator: the package needs NumPy only
        import numba
    except ImportError:
        return None
    options = {"nogil": True, "error_model": "numpy"}  # x / 0 is inf, as in NumPy
    try:
        jit = numba.njit(cache=True, **options)
        return {name: jit(loop) for name, loop in LOOPS.items()}
    except RuntimeError:  # no writable cache folder: compile in every process instead
        jit = numba.njit(**options)
        return {name: jit(loop) for name, loop in LOOPS.items()}


def use_compiled() -> bool:
    """Swap the compiled loops in for this process, once; False where they cannot run here.

    Each loop is compiled (or loaded from Numba's cache) and run once on float32 now, not in
    the first step: about a second in all, for Numba readies LLVM. A process that trains
    afterwards, or is forked from this one, then pays nothing for them. Without Numba, or
    where it fails to compile them, the NumPy forms stay.
    """
    global COMPILED, _tried
    if not _tried:
        _tried = True
        loops = compile_loops()
        if loops is not None and _run_once(loops, np.float32):
            globals().update(loops)
            COMPILED = True
    return COMPILED


def _run_once(loops: dict, dtype: type) -> bool:
    """Compile each loop for every argument type a Trainer passes it, by running it once.

    The labels come both writable (a training batch's copy) and read-only (a data set's
    own, in evaluation): Numba compiles each kind apart, and a kind first met in a trial
    would be compiled there, in a new worker's first trial.
    """
    x, b = np.ones((2, 3), dtype), np.ones(3, dtype)
    one = np.dtype(dtype).type(1)
    y, index = np.zeros(2, np.intp), np.empty(2, np.intp)
    read_only = y.copy()
    read_only.flags.writeable = False
    try:
        loops["adam_update"](b.copy(), b.copy(), b.copy(), b.copy(), one, one, one, one)
        loops["add_bias_relu"](x.copy(), b, np.zeros_like(x))
        loops["relu_backward"](x.copy(), x, np.zeros_like(x), np.empty(x.shape, np.bool_))
        loops["row_sums"](x, b[:2].copy())
        for labels in (y, read_only):
            loops["shift_logits"](x.copy(), labels, b[:2].copy(), index, np.empty(2, np.bool_))
            for want_grad in (True, False):
                loops["cross_entropy_rows"](
                    x, labels, x.copy(), b[:2].copy(), b[:2].copy(), one, one, want_grad, index, y
                )
    except Exception:  # a Numba that cannot compile here: NumPy's passes, as without it
        logging.getLogger(__name__).exception("the trainer's loops did not compile")
        return False
    return True


COMPILED, _tried = False, False
adam_update = adam_update_numpy
add_bias_relu = add_bias_relu_numpy
relu_backward = relu_backward_numpy
shift_logits = shift_logits_numpy
row_sums = row_sums_numpy
cross_entropy_rows = cross_entropy_rows_numpy
