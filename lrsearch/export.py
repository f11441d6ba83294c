"""A completed trial's model as NPZ: its layer sizes, weights and biases (from its final
checkpoint), the input transform its data set went through, and the search's settings.

Load it with NumPy alone (README, "Keep the model"): h = (x - input_mean) / input_scale,
then h = relu(h @ W{i} + b{i}) through the layers, the last without ReLU.
"""

from __future__ import annotations

import io
import json

import numpy as np
from sqlalchemy.orm import Session

from lrsearch.datasets import cache
from lrsearch.models import COMPLETED, Trial
from lrsearch.store.checkpoints import final_checkpoint
from lrsearch.training import split_parameters
from lrsearch.training.checkpoint import stored_params


class NoModel(LookupError):
    """The trial has no model to export; the message says why."""


def model_npz(session: Session, trial: Trial, data_dir: str) -> bytes:
    """The trial's model as NPZ bytes, or NoModel."""
    if trial.status != COMPLETED:
        raise NoModel(f"trial {trial.id} is {trial.status}: only a completed trial has a model")
    stored = final_checkpoint(session, trial.id)
    if stored is None or stored.epoch != trial.epochs_done:
        raise NoModel(f"trial {trial.id} kept no final checkpoint (it ran before checkpoints)")
    search = trial.search
    layers = search.layers
    weights, biases = split_parameters(stored_params(stored.data), layers)
    mean, scale = cache.input_transform(search.dataset, data_dir, search.seed)
    arrays = {f"W{i}": w for i, w in enumerate(weights)} | {
        f"b{i}": b for i, b in enumerate(biases)
    }
    out = io.BytesIO()
    np.savez(
        out,
        layers=np.array(layers, dtype=np.int64),
        input_mean=mean,
        input_scale=scale,
        lr=np.float64(trial.lr),
        settings=np.array(json.dumps({**search.config(), "trial": trial.index, "lr": trial.lr})),
        **arrays,
    )
    return out.getvalue()
