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

    def to_bytes(self, weights_only: bool = False) -> bytes:
        """An NPZ (uncompressed: a checkpoint is written every epoch, read rarely).

        weights_only: without Adam's moments and the data order, a quarter of the size: a
        completed trial's final state, kept for its model (stored_params), never resumed.
        """
        meta = {"epoch": self.epoch, "steps": self.steps, "rng_state": self.rng_state,
                "first_loss": self.first_loss, "loss_limit": self.loss_limit}  # fmt: skip
        arrays = {"params": self.params}
        if not weights_only:
            arrays |= {"m": self.m, "v": self.v, "order": self.order}
        out = io.BytesIO()
        np.savez(out, **arrays, meta=np.array(json.dumps(meta)))
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainerState:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            if "m" not in arrays:
                raise ValueError("a weights-only state cannot be resumed from")
            meta = json.loads(str(arrays["meta"]))
            return cls(
                epoch=int(meta["epoch"]), params=arrays["params"], m=arrays["m"],
                v=arrays["v"], steps=int(meta["steps"]), order=arrays["order"],
                rng_state=meta["rng_state"], first_loss=float(meta["first_loss"]),
                loss_limit=float(meta["loss_limit"]),
            )  # fmt: skip


def stored_params(data: bytes) -> np.ndarray:
    """The weights of a stored state, whole or weights-only."""
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        return arrays["params"]
