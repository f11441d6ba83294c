"""`flask --app app lrsearch datasets ...`: fetch, add, list, show and remove data sets.

Fetch and add run in the foreground with a progress bar, writing the same records the
runner writes for the Datasets page; a bad file exits 2 with one line and leaves nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from lrsearch.datasets import catalog
from lrsearch.datasets.jobs import prepare_dataset
from lrsearch.extensions import db
from lrsearch.models import Dataset
from lrsearch.store import datasets as records

datasets_group = AppGroup("datasets", help="Fetch, add, list, show and remove data sets.")


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"Error: {' '.join(message.split())}", err=True)
    sys.exit(code)


def _schema() -> None:
    from lrsearch.cli import ensure_schema

    ensure_schema()


def _run_job(record: Dataset, what: str) -> Dataset:
    """Prepare the data set here, with a progress bar; the record as it ended."""
    dataset_id, name = record.id, record.name
    config = current_app.config
    with click.progressbar(length=1000, label=f"{what} {name}", file=sys.stderr) as bar:
        done = [0]

        def on_progress(share: float, note: str) -> None:
            step = int(share * 1000) - done[0]
            if step > 0:
                bar.update(step)
                done[0] += step

        try:
            prepare_dataset(dataset_id, config["DATABASE_URL"], config["DATA_DIR"],
                            catalog.runner_options(config), on_progress)  # fmt: skip
        except KeyboardInterrupt:  # failed, its files gone (prepare_dataset): forget it too
            records.delete_dataset(db.session, name)
            _fail(f"{name}: interrupted; nothing kept", code=130)
        bar.update(1000 - done[0])
    db.session.expire_all()
    return db.session.get(Dataset, dataset_id)


@datasets_group.command("fetch")
@click.argument("name")
def fetch_command(name: str) -> None:
    """Download mnist or fashion-mnist from its mirrors and convert it."""
    _schema()
    try:
        record = catalog.request_fetch(db.session, name, taken=True)
    except catalog.DatasetRequestError as exc:
        _fail(str(exc))
    ended = _run_job(record, "fetching")
    if ended.status != "ready":
        error = ended.error
        records.delete_dataset(db.session, name)
        _fail(f"{name}: {error}", code=1)
    _print(ended)


@datasets_group.command("add")
@click.argument("name")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--label-column", default=None, help="CSV: the label column, by name or number")
def add_command(name: str, file: Path, label_column: str | None) -> None:
    """Import a CSV or NPZ file as data set NAME."""
    _schema()
    try:
        catalog.check_new_name(db.session, name)
    except catalog.DatasetRequestError as exc:
        _fail(f"{name}: {exc}")
    if not file.is_file():
        _fail(f"{file}: no such file")
    if file.suffix.lower() not in (".csv", ".npz"):
        _fail(f"{file} is not a CSV or NPZ file (.csv or .npz)")
    record = catalog.request_local_import(db.session, name, file.resolve(), label_column)
    ended = _run_job(record, "importing")
    if ended.status != "ready":
        error = ended.error
        records.delete_dataset(db.session, name)  # nothing left behind
        _fail(f"{file}: {error}")
    _print(ended)


@datasets_group.command("list")
def list_command() -> None:
    """List the stored data sets (digits and synthetic are built in)."""
    _schema()
    click.echo(f"{'name':<20} {'status':<10} {'samples':>8} {'features':>8} {'classes':>7}  source")
    for d in records.list_datasets(db.session):
        click.echo(
            f"{d.name:<20} {d.status:<10} {d.samples or '-':>8} {d.features or '-':>8} "
            f"{d.classes or '-':>7}  {d.source}"
        )


@datasets_group.command("show")
@click.argument("name")
def show_command(name: str) -> None:
    """Show one data set: its shape, classes, split, and searches."""
    _schema()
    record = records.get_dataset(db.session, name)
    if record is None:
        _fail(f"no data set {name}")
    _print(record)


def _print(d: Dataset) -> None:
    click.echo(f"{d.name}: {d.status}{' (' + d.error + ')' if d.error else ''}; {d.source}")
    if d.samples:
        split = f"{d.val_samples} given for validation" if d.val_samples else "80/20 by seed"
        click.echo(f"  {d.samples} samples ({split}), {d.features} features, {d.classes} classes")
        counts = ", ".join(
            f"{label}: {n}" for label, n in zip(d.labels, d.class_counts, strict=True)
        )
        click.echo(f"  classes: {counts}")
        click.echo(f"  sha256 {d.sha256}, {d.disk_bytes / 1e6:.1f} MB on disk")
    used = records.searches_using(db.session, [d.name]).get(d.name, [])
    if used:
        click.echo("  searches: " + ", ".join(f"{i} ({status})" for i, _, status in used))


@datasets_group.command("remove")
@click.argument("name")
def remove_command(name: str) -> None:
    """Remove a data set and its files (refused while a queued or running search uses it)."""
    _schema()
    try:
        catalog.remove(db.session, current_app.config["DATA_DIR"], name)
    except catalog.DatasetRequestError as exc:
        _fail(str(exc))
    click.echo(f"removed {name}")
