"""Imported once by the fork server that worker processes fork from (runner.ProcessSlots).

Whatever this import leaves in memory, every worker inherits instead of paying for it in
its first trial: the worker's modules (Flask, SQLAlchemy, NumPy), one BLAS thread set
(threadpoolctl: 5 ms a worker), the models' mappers set up, the digits file read,
matplotlib with its fonts loaded and the plot figure built (0.2 s of CPU a worker, twice
that in wall time when workers outnumber cores), and the trainer's compiled loops (about
1 s: LLVM readied). Parsing the digits file took each new worker's first trial 20 ms and
setting up the mappers 10-50 ms, where a digits trial trains in 35 ms.
"""

from __future__ import annotations

import gc
import logging

from sqlalchemy.orm import configure_mappers

from lrsearch import artifacts
from lrsearch.search import worker
from lrsearch.training import datasets, kernels

worker.limit_blas()  # one BLAS thread, inherited by every worker
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
# collection in a worker would write to every object (each page copied). Each digits worker
# held 77-79 MB of its own memory after 20 trials, 37-39 MB with this (overhead.py).
gc.freeze()
