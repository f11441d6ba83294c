"""The prepared fast path: statements compiled once and run on the DBAPI cursor.

Used for what runs for every trial or epoch (a claim, a trial's start, each epoch's write
and its end), where SQLAlchemy's per-call machinery (cache key, parameter and result
set-up), run after an epoch of training has evicted its code from the CPU's caches, cost
more than the statements themselves (figures in benchmarks/README.md). SQLAlchemy still
writes the SQL for each dialect and converts each value as it would (its types' bind
processors); only the per-call machinery is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement


class PreparedStatement:
    """One statement, compiled for one dialect with a fixed set of parameter names."""

    def __init__(self, statement: ClauseElement, dialect: Dialect, names: Iterable[str]):
        given = set(names)
        compiled = statement.compile(dialect=dialect, column_keys=list(given))
        self.sql = compiled.string
        self.order = compiled.positiontup  # None for a named paramstyle (psycopg's)
        rendered = compiled.bind_names  # each bind parameter -> its name in the SQL
        if expanding := sorted(name for bind, name in rendered.items() if bind.expanding):
            raise ValueError(f"{expanding} expand at each execution: give each value its own")
        # A column's Python-side default (created_at=utcnow) is evaluated by SQLAlchemy's
        # execution, which this skips: such values must be among the names given.
        defaults = {c.key for c in (*compiled.insert_prefetch, *compiled.update_prefetch)}
        required = {name for bind, name in rendered.items() if bind.required}
        if missing := (defaults | required) - given:
            raise ValueError(f"no value given for {sorted(missing)} in {self.sql}")
        # Values the statement holds itself, such as `status = 'running'` in its WHERE.
        self.fixed = {
            name: bind.effective_value for bind, name in rendered.items() if name not in given
        }
        self.processors = {
            name: processor
            for bind, name in rendered.items()
            if (processor := dialect.type_descriptor(bind.type).bind_processor(dialect))
        }
        self.names = list(rendered.values())
        self.escaped = compiled.escaped_bind_names

    def parameters(self, values: Mapping[str, Any]) -> list | dict:
        """The DBAPI parameters for `values` (one per name the statement was compiled with)."""
        values = {**self.fixed, **values}
        for name, processor in self.processors.items():
            values[name] = processor(values[name])
        if self.order is not None:
            return [values[name] for name in self.order]
        return {self.escaped.get(name, name): values[name] for name in self.names}


def run_in_transaction(connection: Connection, steps) -> Any:
    """Run steps(execute) in one DBAPI transaction on the connection's driver connection.

    execute(statement, values) returns the cursor. The connection must have no SQLAlchemy
    transaction open (its own would be committed or rolled back behind its back). Commits;
    on an error rolls back and raises it as SQLAlchemy's exception of the same kind
    (OperationalError for a locked database, so transactions.retry_transaction applies).
    """
    if connection.in_transaction():
        raise RuntimeError("run_in_transaction needs a connection outside a transaction")
    driver = connection.connection.driver_connection
    dbapi = connection.dialect.loaded_dbapi
    cursor = driver.cursor()
    sql = parameters = None
    try:

        def execute(statement: PreparedStatement, values: Mapping[str, Any]):
            nonlocal sql, parameters
            sql, parameters = statement.sql, statement.parameters(values)
            cursor.execute(sql, parameters)
            return cursor

        result = steps(execute)
        driver.commit()
        return result
    except dbapi.Error as exc:
        try:
            driver.rollback()
        except dbapi.Error:  # the connection is gone: the error below says why
            pass
        raise DBAPIError.instance(
            sql, parameters, exc, dbapi.Error, dialect=connection.dialect
        ) from exc
    finally:
        cursor.close()
