"""Imported once by the fork server that worker processes fork from (local.ProcessSlots).

Whatever this import leaves in memory, every worker inherits instead of paying for it in
its first trial, where each of these took longer than a digits trial trains: the worker's
modules (Flask, SQLAlchemy, NumPy), one BLAS thread set, the models' mappers set up, the
digits file read, matplotlib with its fonts loaded and the plot figure built, and the
trainer's compiled loops (LLVM readied).
"""

from __future__ import annotations

import gc
import logging

from sqlalchemy.orm import configure_mappers

from lrsearch import artifacts
from lrsearch.execution import process, worker  # noqa: F401 (imported for the workers)
from lrsearch.training import datasets, kernels

process.limit_blas()  # one BLAS thread, inherited by every worker
configure_mappers()  # else done by each worker's first query
try:
    datasets.digits_table()
except datasets.DatasetError:  # no scikit-learn: digits trials fail with the reason
    pass
try:
    artifacts.warm_plots()
except Exception:  # a worker draws its plots fine without the head start
    logging.getLogger(__name__).exception("could not prepare plotting in the fork server")
kernels.use_compiled()  # where they cannot compile, it logs why and NumPy's passes run

# What was imported and built above lives as long as the process. Frozen, out of the
# collector's sight, it stays on pages each worker shares with this process, where a
# collection in a worker would write to every object (each page copied), and each worker
# would hold far more memory of its own (overhead.py's last column).
gc.freeze()
