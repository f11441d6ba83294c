"""Which slots a runner gets: the local pool, or a Dask cluster where one is configured."""

from __future__ import annotations

from collections.abc import Mapping

from lrsearch.execution.slots import Slots


class ExecutorError(ValueError):
    """The configured executor cannot be used; the message says why, in one line."""


def runner_slots(
    config: Mapping[str, object], size: int, scheduler: str | None = None, wait: bool = False
) -> Slots:
    """The local pool of `size` processes, or the Dask cluster at `scheduler` (else the
    configured LRSEARCH_DASK_SCHEDULER). wait: where the scheduler does not answer yet,
    start anyway and keep trying (the server's runner), else ExecutorError (the CLI).
    """
    address = scheduler or config.get("DASK_SCHEDULER")
    if not address:
        from lrsearch.execution.local import ProcessSlots

        return ProcessSlots(size)
    from lrsearch.execution.cluster import ClusterUnreachable, DaskSlots, is_loopback

    address = str(address)
    if str(config["DATABASE_URL"]).startswith("sqlite") and not is_loopback(address):
        raise ExecutorError(
            f"the Dask cluster at {address} cannot reach this machine's SQLite file: set "
            "LRSEARCH_DATABASE_URL=postgresql+psycopg://USER@HOST/DB, a database every "
            "machine reaches"
        )
    try:
        return DaskSlots(address, str(config["DATA_DIR"]), wait_for_scheduler=wait)
    except ClusterUnreachable as exc:
        raise ExecutorError(str(exc).replace("; retrying", "")) from None
