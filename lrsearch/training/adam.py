"""Adam with bias correction, updating one flat parameter vector in place."""

from __future__ import annotations

import math

import numpy as np


class Adam:
    """Adam (Kingma & Ba, Algorithm 1) over a flat vector, ten in-place passes per step.

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
        """Apply one update from `grad` (same shape and dtype as params); grad is overwritten."""
        self.steps += 1
        t, b1, b2 = self.steps, self.beta1, self.beta2
        m, v, p, g = self.m, self.v, self.params, grad
        np.multiply(m, b1, out=m)
        np.add(m, g, out=m)
        np.multiply(v, b2, out=v)
        np.square(g, out=g)
        np.add(v, g, out=v)
        # lr * m_hat / (sqrt(v_hat) + eps) == step * M / (sqrt(V) + eps')
        c1 = (1.0 - b1) / (1.0 - b1**t)
        c2 = math.sqrt((1.0 - b2) / (1.0 - b2**t))
        np.sqrt(v, out=g)  # g is free from here on: it holds the step
        np.add(g, self.eps / c2, out=g)
        np.divide(m, g, out=g)
        np.multiply(g, self.lr * c1 / c2, out=g)
        np.subtract(p, g, out=p)
