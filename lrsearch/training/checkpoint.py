"""A trainer's whole state after an epoch, as bytes: what resuming needs to go on exactly
as the uninterrupted run would (weights, Adam's moments and step, the data order and its
random state, the divergence limit). NumPy and the standard library only."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrainerState:
    """Everything of a Trainer that training changes, after `epoch` epochs."""

    epoch: int
    params: np.ndarray
    m: np.ndarray
    v: np.ndarray
    steps: int
    order: np.ndarray  # the training set's order (each epoch reshuffles the last one)
    rng_state: dict  # the shuffling generator's bit_generator.state
    first_loss: float
    loss_limit: float

    def to_bytes(self) -> bytes:
        """An NPZ (uncompressed: a checkpoint is written every epoch, read rarely)."""
        meta = {"epoch": self.epoch, "steps": self.steps, "rng_state": self.rng_state,
                "first_loss": self.first_loss, "loss_limit": self.loss_limit}  # fmt: skip
        out = io.BytesIO()
        np.savez(out, params=self.params, m=self.m, v=self.v, order=self.order,
                 meta=np.array(json.dumps(meta)))  # fmt: skip
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainerState:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            meta = json.loads(str(arrays["meta"]))
            return cls(
                epoch=int(meta["epoch"]), params=arrays["params"], m=arrays["m"],
                v=arrays["v"], steps=int(meta["steps"]), order=arrays["order"],
                rng_state=meta["rng_state"], first_loss=float(meta["first_loss"]),
                loss_limit=float(meta["loss_limit"]),
            )  # fmt: skip
