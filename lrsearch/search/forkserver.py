"""Imported once by the fork server that worker processes fork from (runner.ProcessSlots).

Whatever this import leaves in memory, every worker inherits instead of paying for it in
its first trial: the worker's modules (Flask, SQLAlchemy, NumPy), matplotlib with its
fonts loaded and the plot figure built (0.2 s of CPU a worker, twice that in wall time
when workers outnumber cores), and the trainer's compiled loops (about 1 s: LLVM readied).
"""

from __future__ import annotations

import logging

from lrsearch import artifacts
from lrsearch.search import worker  # noqa: F401
from lrsearch.training import kernels

try:
    artifacts.warm_plots()
except Exception:  # a worker draws its plots fine without the head start
    logging.getLogger(__name__).exception("could not prepare plotting in the fork server")
kernels.use_compiled()  # where they cannot compile, it logs why and NumPy's passes run
