"""Adam with bias correction, updating one flat parameter vector in place."""

from __future__ import annotations

import math

import numpy as np

from lrsearch.training import kernels


class Adam:
    """Adam (Kingma & Ba, Algorithm 1) over a flat vector: kernels.adam_update, one pass
    where Numba compiled it, ten of NumPy's otherwise.

    The moments are kept unnormalised, M = m / (1 - beta1) and V = v / (1 - beta2), so that
    their updates need no scaling pass; the bias corrections and those factors fold into two
    scalars per step. The result is the paper's update up to float rounding.
    """

    def __init__(
        self,
        params: np.ndarray,
        lr: float,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
    ) -> None:
        if params.ndim != 1 or not params.flags.c_contiguous:
            raise ValueError("Adam updates one flat, contiguous parameter vector")
        self.params = params
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = np.zeros_like(params)
        self.v = np.zeros_like(params)
        self.steps = 0

    def step(self, grad: np.ndarray) -> None:
        """Apply one update from `grad` (same shape and dtype as params); grad may be spent."""
        self.steps += 1
        t, b1, b2 = self.steps, self.beta1, self.beta2
        # lr * m_hat / (sqrt(v_hat) + eps) == step * M / (sqrt(V) + eps')
        c1 = (1.0 - b1) / (1.0 - b1**t)
        c2 = math.sqrt((1.0 - b2) / (1.0 - b2**t))
        real = self.params.dtype.type  # the arrays' float, as NumPy casts a Python float
        kernels.adam_update(
            self.params, grad, self.m, self.v,
            real(b1), real(b2), real(self.eps / c2), real(self.lr * c1 / c2),
        )  # fmt: skip
