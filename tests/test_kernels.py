"""The trainer's compiled loops give the very floats of the NumPy passes they replace."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lrsearch.training import Hyperparameters, Trainer, kernels
from lrsearch.training.datasets import make_synthetic

COMPILED = kernels.compile_loops()
DTYPES = [np.float32, np.float64]
pytestmark = [
    pytest.mark.skipif(COMPILED is None, reason="Numba is not installed"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),  # inf - inf and the like: as trained
]

# Every float, the awkward ones included: NaN, infinities, signed zeros, subnormals.
any_float = st.floats(width=32, allow_nan=True, allow_infinity=True, allow_subnormal=True)


def floats(dtype, shape) -> st.SearchStrategy:
    return hnp.arrays(dtype, shape, elements=any_float)


def assert_same(a: np.ndarray, b: np.ndarray, name: str = "") -> None:
    """Equal values and NaN in the same places (zeros' signs aside)."""
    np.testing.assert_array_equal(a, b, err_msg=name, strict=True)


def test_a_trainer_swaps_the_compiled_loops_in() -> None:
    """requirements.txt installs Numba, so that is what trains."""
    Trainer(make_synthetic(50, 4, 2), Hyperparameters([4, 3, 2]), 1e-3)
    assert kernels.COMPILED and kernels.adam_update is not kernels.adam_update_numpy


def test_use_compiled_readies_every_loop_for_what_a_trainer_passes(monkeypatch) -> None:
    """A worker forked after use_compiled() compiles nothing in its first trial.

    Each kind of argument (a data set's read-only labels among them) is compiled apart.
    """
    loops = kernels.compile_loops()
    assert kernels._run_once(loops, np.float32)
    readied = {name: list(loop.signatures) for name, loop in loops.items()}
    for name, loop in loops.items():
        monkeypatch.setattr(kernels, name, loop)
    monkeypatch.setattr(kernels, "_tried", True)  # use_compiled() keeps these
    monkeypatch.setattr(kernels, "COMPILED", True)
    data = make_synthetic(200, 5, 3)
    for array in (data.x_train, data.y_train, data.x_val, data.y_val):
        array.flags.writeable = False  # as load_dataset hands them out
    trainer = Trainer(data, Hyperparameters([5, 4, 3], batch_size=64), 1e-3)
    trainer.train_epoch()
    trainer.evaluate()
    assert {name: list(loop.signatures) for name, loop in loops.items()} == readied


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=60, deadline=None)
@given(data=st.data(), n=st.integers(1, 40))
def test_adam_update(dtype, data, n) -> None:
    params, grad, m, v = (data.draw(floats(dtype, n)) for _ in range(4))
    v = np.abs(v)  # a second moment is never negative
    real = np.dtype(dtype).type
    scalars = [real(data.draw(st.floats(0, 1, width=32))) for _ in range(2)]
    scalars += [real(data.draw(st.floats(2.0**-40, 1.0, width=32))) for _ in range(2)]
    expected = [a.copy() for a in (params, grad, m, v)]
    kernels.adam_update_numpy(*expected, *scalars)
    got = [a.copy() for a in (params, grad, m, v)]
    COMPILED["adam_update"](*got, *scalars)
    for name, i in (("params", 0), ("m", 2), ("v", 3)):
        assert_same(got[i], expected[i], name)
    assert_same(got[1], grad)  # the loop leaves the gradient as it was


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=60, deadline=None)
@given(data=st.data(), rows=st.integers(1, 9), cols=st.integers(1, 9))
def test_add_bias_relu(dtype, data, rows, cols) -> None:
    act, bias = data.draw(floats(dtype, (rows, cols))), data.draw(floats(dtype, cols))
    zeros = np.zeros_like(act)
    expected, got = act.copy(), act.copy()
    kernels.add_bias_relu_numpy(expected, bias, zeros)
    COMPILED["add_bias_relu"](got, bias, zeros)
    assert_same(got, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=60, deadline=None)
@given(data=st.data(), rows=st.integers(1, 9), cols=st.integers(1, 9))
def test_relu_backward(dtype, data, rows, cols) -> None:
    delta, below = (data.draw(floats(dtype, (rows, cols))) for _ in range(2))
    scratch = np.zeros_like(below), np.empty(below.shape, np.bool_)
    expected, got = delta.copy(), delta.copy()
    kernels.relu_backward_numpy(expected, below, *scratch)
    COMPILED["relu_backward"](got, below, *scratch)
    assert_same(got, expected)


def train_bits(monkeypatch, chosen: dict, lr: float) -> tuple[np.ndarray, list]:
    kernels.use_compiled()  # done once: the Trainer below leaves these as they are
    for name, kernel in chosen.items():
        monkeypatch.setattr(kernels, name, kernel)
    data = make_synthetic(600, 20, 4, seed=3)
    trainer = Trainer(data, Hyperparameters([20, 32, 16, 4], batch_size=32), lr, seed=5)
    fits = [trainer.train_epoch() for _ in range(3)]
    return trainer.net.params.copy(), fits


@pytest.mark.parametrize("lr", [1e-3, 0.5])  # 0.5: saturated softmax, subnormal gradients
def test_training_gives_the_same_bits_either_way(monkeypatch, lr) -> None:
    compiled = train_bits(monkeypatch, COMPILED, lr)
    plain = train_bits(monkeypatch, kernels.NUMPY, lr)
    assert repr(compiled[1]) == repr(plain[1])  # repr: nan equals nan
    assert compiled[0].tobytes() == plain[0].tobytes()


def test_loops_compile_where_no_cache_folder_can_be_written(monkeypatch) -> None:
    """Numba refuses cache=True when neither __pycache__ nor a user cache is writable."""
    import numba

    real_njit = numba.njit

    def njit(*args, cache=False, **options):
        if cache:
            raise RuntimeError("cannot cache function: no locator available")
        return real_njit(*args, **options)

    monkeypatch.setattr(numba, "njit", njit)
    loops = kernels.compile_loops()
    assert loops is not None and set(loops) == set(kernels.NUMPY)
    act = np.array([[-1.0, 2.0]], np.float32)
    loops["add_bias_relu"](act, np.ones(2, np.float32), np.zeros_like(act))
    assert act.tolist() == [[0.0, 3.0]]


def test_numpy_passes_stay_where_the_loops_fail_to_compile(monkeypatch, caplog) -> None:
    def broken(*args) -> None:
        raise RuntimeError("LLVM could not lower this loop")

    monkeypatch.setattr(kernels, "compile_loops", lambda: dict.fromkeys(kernels.LOOPS, broken))
    for name, form in kernels.NUMPY.items():
        monkeypatch.setattr(kernels, name, form)
    monkeypatch.setattr(kernels, "COMPILED", False)
    monkeypatch.setattr(kernels, "_tried", False)
    assert kernels.use_compiled() is False
    assert kernels.adam_update is kernels.adam_update_numpy
    assert "did not compile" in caplog.text
    trainer = Trainer(make_synthetic(200, 6, 3, seed=1), Hyperparameters([6, 8, 3]), 1e-2, seed=2)
    assert np.isfinite(trainer.train_epoch().loss)


def logits_rows(data, dtype, rows: int, classes: int) -> np.ndarray:
    """Logits, now and then with the awkward floats, and ties for the maximum."""
    if data.draw(st.booleans()):
        return data.draw(floats(dtype, (rows, classes)))
    small = st.integers(-3, 3).map(float)  # ties are likely
    return data.draw(hnp.arrays(dtype, (rows, classes), elements=small))


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=80, deadline=None)
@given(data=st.data(), rows=st.integers(1, 9), classes=st.integers(2, 12))
def test_shift_logits(dtype, data, rows, classes) -> None:
    logits = logits_rows(data, dtype, rows, classes)
    y = data.draw(hnp.arrays(np.intp, rows, elements=st.integers(0, classes - 1)))
    results = []
    for form in (kernels.shift_logits_numpy, COMPILED["shift_logits"]):
        out = logits.copy(), np.empty(rows, dtype), np.empty(rows, np.intp), np.empty(rows, bool)
        results.append((form(out[0], y, *out[1:]), *out))
    (hits_a, *a), (hits_b, *b) = results
    assert hits_a == hits_b
    for name, x, z in zip(("logits", "shift", "predicted", "hits"), a, b, strict=True):
        assert_same(z, x, name)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=60, deadline=None)
@given(data=st.data(), rows=st.integers(1, 9), classes=st.integers(2, 12))
def test_row_sums(dtype, data, rows, classes) -> None:
    probs = data.draw(floats(dtype, (rows, classes)))
    expected, got = np.empty(rows, dtype), np.empty(rows, dtype)
    kernels.row_sums_numpy(probs, expected)
    COMPILED["row_sums"](probs, got)
    assert_same(got, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("want_grad", [True, False])
@settings(max_examples=60, deadline=None)
@given(data=st.data(), rows=st.integers(1, 9), classes=st.integers(2, 12))
def test_cross_entropy_rows(dtype, want_grad, data, rows, classes) -> None:
    logits, probs = (data.draw(floats(dtype, (rows, classes))) for _ in range(2))
    lse, total = (data.draw(floats(dtype, rows)) for _ in range(2))
    y = data.draw(hnp.arrays(np.intp, rows, elements=st.integers(0, classes - 1)))
    real = np.dtype(dtype).type
    offsets = np.arange(rows, dtype=np.intp) * classes
    results = []
    for form in (kernels.cross_entropy_rows_numpy, COMPILED["cross_entropy_rows"]):
        p, l_, t = probs.copy(), lse.copy(), total.copy()
        form(logits, y, p, l_, t, real(rows), real(1.0 / rows), want_grad, y.copy(), offsets)
        results.append((p, l_))
    (p_a, l_a), (p_b, l_b) = results
    assert_same(l_b, l_a, "lse")
    assert_same(p_b, p_a, "probs")
