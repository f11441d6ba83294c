"""`flask --app app lrsearch cancel|delete|export-model`: the dashboard's buttons, on the
command line."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app

from lrsearch import artifacts, export, store
from lrsearch.cli import OneLineCommand, ensure_schema, fail_usage
from lrsearch.extensions import db
from lrsearch.models import Search, Trial
from lrsearch.settings import MAX_INTEGER


def _search(search_id: int) -> Search:
    found = db.session.get(Search, search_id) if 0 <= search_id <= MAX_INTEGER else None
    if found is None:
        fail_usage(f"no search {search_id}")
    return found


@click.command("cancel", cls=OneLineCommand)
@click.argument("search_id", type=int)
@click.option("--trial", "trial_id", type=int, default=None, help="cancel this trial only")
def cancel_command(search_id: int, trial_id: int | None) -> None:
    """Cancel a search (queued trials now, running ones at their next epoch), or one trial."""
    ensure_schema()
    _search(search_id)
    if trial_id is None:
        store.cancel_search(db.session, search_id)
        click.echo(f"search {search_id}: cancelling")
        return
    trial = db.session.get(Trial, trial_id) if 0 <= trial_id <= MAX_INTEGER else None
    if trial is None or trial.search_id != search_id:
        fail_usage(f"search {search_id} has no trial {trial_id}")
    try:
        cancelled = store.cancel_trial(db.session, trial_id)
    except store.Refused as exc:
        fail_usage(str(exc))
    state = "cancelled" if cancelled.status == "cancelled" else "cancelling at its next epoch"
    click.echo(f"trial {trial_id} of search {search_id}: {state}")


@click.command("delete", cls=OneLineCommand)
@click.argument("search_id", type=int)
def delete_command(search_id: int) -> None:
    """Delete a search: its trials, epochs and log folder (cancel a running one first)."""
    ensure_schema()
    _search(search_id)
    try:
        store.delete_search(db.session, search_id)
    except store.Refused as exc:
        fail_usage(str(exc))
    artifacts.remove_search_folder(current_app.config["DATA_DIR"], search_id)
    click.echo(f"search {search_id} deleted")


@click.command("export-model", cls=OneLineCommand)
@click.argument("trial_id", type=int)
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
def export_model_command(trial_id: int, file: str) -> None:
    """Write a completed trial's model (NPZ: layers, weights, biases, input transform)."""
    ensure_schema()
    trial = db.session.get(Trial, trial_id) if 0 <= trial_id <= MAX_INTEGER else None
    if trial is None:
        fail_usage(f"no trial {trial_id}")
    try:
        data = export.model_npz(db.session, trial, current_app.config["DATA_DIR"])
    except export.NoModel as exc:
        fail_usage(str(exc))
    try:
        Path(file).write_bytes(data)
    except OSError as exc:
        fail_usage(f"cannot write {file}: {exc.strerror or exc}")
    click.echo(f"trial {trial_id}: model written to {file} ({len(data)} bytes)")
