"""NumPy training: data sets, an MLP, Adam and an epoch-by-epoch training loop.

This package imports NumPy and the standard library only, so it can be used and tested
without the web application; where Numba is installed, `kernels` compiles the elementwise
passes into loops that give the same floats sooner.
"""

from __future__ import annotations

from lrsearch.training.adam import Adam
from lrsearch.training.datasets import (
    DATASETS,
    Dataset,
    DatasetError,
    DatasetNotFound,
    clear_dataset_cache,
    dataset_shape,
    load_dataset,
    parse_dataset,
)
from lrsearch.training.mlp import MLP, check_layers, parameter_count, split_parameters
from lrsearch.training.trainer import (
    EpochFit,
    EpochMetrics,
    Hyperparameters,
    Trainer,
    TrainResult,
    train,
)

__all__ = [
    "DATASETS",
    "MLP",
    "Adam",
    "Dataset",
    "DatasetError",
    "DatasetNotFound",
    "EpochFit",
    "EpochMetrics",
    "Hyperparameters",
    "TrainResult",
    "Trainer",
    "check_layers",
    "clear_dataset_cache",
    "dataset_shape",
    "load_dataset",
    "parameter_count",
    "parse_dataset",
    "split_parameters",
    "train",
]
