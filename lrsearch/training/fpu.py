"""Subnormal floats flushed to zero while training (x86-64 Linux).

A saturated or diverging network drives softmax probabilities, and the gradients made from
them, below float32's smallest normal number (1.2e-38). An x86 core handles each operation
on such a subnormal number in microcode, many times slower than on a normal one: once they
appear, high learning rates make whole epochs several times slower (benchmarks/trainer.py).
Setting the flush-to-zero and denormals-are-zero bits of the SSE control register (MXCSR),
as the deep-learning frameworks do, makes the core treat them as zero instead. What is lost
lies below 1.2e-38; the bits are this thread's, and are restored on leaving the block.
Elsewhere (another OS, C library or processor) the block changes nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import platform
import sys
from collections.abc import Iterator

FTZ_DAZ = 0x8040  # MXCSR bits: flush to zero (15), denormals are zero (6)


class _FEnv(ctypes.Structure):
    """The C library's fenv_t on x86-64 Linux: the x87 environment (28 bytes), then MXCSR."""

    _fields_ = [("x87", ctypes.c_ubyte * 28), ("mxcsr", ctypes.c_uint32)]


@functools.cache
def _fenv() -> tuple | None:
    """fegetenv and fesetenv of the C math library, or None where this does not apply."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return None
    try:
        libm = ctypes.CDLL("libm.so.6")
        get, put = libm.fegetenv, libm.fesetenv
    except (OSError, AttributeError):
        return None
    env = _FEnv()
    if get(ctypes.byref(env)) != 0:
        return None
    return get, put


def available() -> bool:
    """Whether subnormals_flushed() flushes on this machine."""
    return _fenv() is not None


def flushing() -> bool:
    """Whether this thread's arithmetic flushes subnormal numbers to zero now."""
    functions = _fenv()
    if functions is None:
        return False
    env = _FEnv()
    functions[0](ctypes.byref(env))
    return env.mxcsr & FTZ_DAZ == FTZ_DAZ


@contextlib.contextmanager
def subnormals_flushed() -> Iterator[None]:
    """Within the block, this thread's float arithmetic treats subnormal numbers as zero."""
    functions = _fenv()
    if functions is None:
        yield
        return
    get, put = functions
    env = _FEnv()
    get(ctypes.byref(env))
    saved = env.mxcsr & FTZ_DAZ
    if saved == FTZ_DAZ:  # already on (a nested block): leave it to the outer one
        yield
        return
    env.mxcsr |= FTZ_DAZ
    put(ctypes.byref(env))
    try:
        yield
    finally:
        get(ctypes.byref(env))
        env.mxcsr = (env.mxcsr & ~FTZ_DAZ) | saved
        put(ctypes.byref(env))
