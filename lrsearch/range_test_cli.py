"""`flask --app app lrsearch range-test`: an LR range test in the foreground, and what it
suggests."""

from __future__ import annotations

import shlex

import click

from lrsearch.cli import (
    DEFAULTS,
    OneLineCommand,
    ensure_schema,
    parsed,
    run_in_foreground,
    spec_options,
)
from lrsearch.extensions import db
from lrsearch.models import Search
from lrsearch.search.range_suggestion import range_test_result, search_settings
from lrsearch.settings import PUBLIC_SETTINGS, RANGE_TEST, RANGE_TEST_DEFAULTS, format_lr

# The settings a range test takes; the others of a search do not apply to it.
OPTIONS = ("name", "dataset", "hidden", "layers", "lr_min", "lr_max", "iterations",
           "batch_size", "beta1", "beta2", "seed")  # fmt: skip


def _range_test(**options: str | None) -> None:
    """Run an LR range test in the foreground and print the range it suggests."""
    raw = {k: v for k, v in options.items() if v is not None}
    ensure_schema()
    run_in_foreground(parsed({**raw, "kind": RANGE_TEST}))


range_test_command = click.command("range-test", cls=OneLineCommand)(
    spec_options(_range_test, OPTIONS, {**DEFAULTS, **RANGE_TEST_DEFAULTS})
)


def print_range_test(search: Search) -> None:
    """A range test's settings, status, suggestion, and the command that searches it."""
    click.echo(
        f"range test {search.id} {search.name!r}: {search.status}; {search.dataset} "
        f"layers={','.join(map(str, search.layers))} lr={format_lr(search.lr_min)} -> "
        f"{format_lr(search.lr_max)} over {search.iterations} batches "
        f"batch={search.batch_size} seed={search.seed}"
    )
    result = range_test_result(db.session, search)
    if result is None or not result.points:
        click.echo("no batch recorded")
        return
    s = result.suggestion
    last = result.points[-1]
    click.echo(f"{len(result.points)} batches recorded, the last at lr={format_lr(last.lr)}")
    if s is None:
        click.echo("no suggestion: the loss never clearly fell; try a larger --lr-max "
                   "or more --iterations")  # fmt: skip
        return
    click.echo(
        f"suggested range: lr_min={format_lr(s.lr_min)} lr_max={format_lr(s.lr_max)} "
        f"(steepest descent at {format_lr(s.steepest)}, lowest loss at "
        f"{format_lr(s.min_loss_lr)})"
    )
    flags = {x.name: x.flag for x in PUBLIC_SETTINGS}
    settings = search_settings(search, s)
    settings.pop("kind")
    words = [f"{flags[k]} {shlex.quote(v)}" for k, v in settings.items()]
    click.echo(f"search it: flask --app app lrsearch run {' '.join(words)}")
