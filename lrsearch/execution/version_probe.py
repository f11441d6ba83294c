"""What a Dask worker has installed, asked before it gets a trial.

This module is pickled by value (cloudpickle.register_pickle_by_value), so a worker runs
it even where lrsearch is missing or laid out differently: the answer is a version, never
a pickling error.
"""


def installed_version() -> str | None:
    """lrsearch's version on this machine, or None where it is not installed."""
    try:
        import lrsearch
    except ImportError:
        return None
    return getattr(lrsearch, "__version__", "unknown")
