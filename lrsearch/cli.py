"""`flask --app app lrsearch ...`: run a search in the foreground, list and show searches."""

from __future__ import annotations

import signal
import sys
import time

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from lrsearch import store
from lrsearch.datasets import catalog
from lrsearch.execution import plots
from lrsearch.execution.executors import ExecutorError, runner_slots
from lrsearch.extensions import db
from lrsearch.models import Search, status_note
from lrsearch.search import ranking, refine
from lrsearch.search.runner import Runner, RunnerSettings
from lrsearch.search.sampler import create_search
from lrsearch.settings import (
    MAX_INTEGER,
    PUBLIC_SETTINGS,
    RANGE_TEST,
    SearchSpec,
    SpecError,
    format_lr,
    parse_spec,
    setting_text,
)
from lrsearch.store import reads
from lrsearch.store.trial_errors import error_summary

group = AppGroup("lrsearch", help="Learning-rate search from the command line.")


class OneLineCommand(click.Command):
    """A command whose usage errors are one line and exit 2."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            click.echo(f"Error: {exc.format_message()}", err=True)
            ctx.exit(2)


def fail_usage(message: str) -> None:
    """Print one line and exit 2."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(2)


def ensure_schema() -> None:
    """Apply the migrations, so a fresh data folder needs no manual step."""
    from flask_migrate import upgrade

    upgrade(directory=current_app.config["MIGRATIONS_DIR"])


def runner_settings(app: Flask) -> RunnerSettings:
    """The runner's plain settings from the app's configuration."""
    c = app.config
    return RunnerSettings(
        database_url=c["DATABASE_URL"],
        data_dir=c["DATA_DIR"],
        heartbeat_seconds=float(c["HEARTBEAT_SECONDS"]),
        stale_after_seconds=float(c["STALE_AFTER_SECONDS"]),
        max_attempts=int(c["MAX_ATTEMPTS"]),
        max_interruptions=int(c["MAX_INTERRUPTIONS"]),
        dataset_options=catalog.runner_options(c),
        checkpoint_seconds=float(c["CHECKPOINT_SECONDS"]),
    )


DEFAULTS = SearchSpec().as_dict()
# Settings whose default the command line takes from elsewhere (workers: LRSEARCH_WORKERS).
NO_DEFAULT_SHOWN = ("workers", "name", "layers")


def spec_options(command, names: tuple[str, ...] | None = None, defaults=DEFAULTS):
    """Add one text option per public setting (or per one of `names`); parse_spec checks
    them all at once."""
    for setting in reversed(PUBLIC_SETTINGS):
        if names is not None and setting.name not in names:
            continue
        default = defaults[setting.name]
        shown = "" if setting.name in NO_DEFAULT_SHOWN else f" [default: {setting_text(default)}]"
        help_text = setting.help + shown
        command = click.option(setting.flag, setting.name, default=None, help=help_text)(command)
    return command


DASK_OPTION = click.option(
    "--dask-scheduler",
    default=None,
    help="run trials on this Dask cluster (tcp://host:8786) [LRSEARCH_DASK_SCHEDULER]",
)


@group.command("run", cls=OneLineCommand)
@DASK_OPTION
@spec_options
def run_command(dask_scheduler: str | None = None, **options: str | None) -> None:
    """Run a search in the foreground and print its ranking."""
    raw = {k: v for k, v in options.items() if v is not None}
    raw.setdefault("workers", current_app.config["WORKERS"])
    ensure_schema()
    spec = parsed(raw)
    run_in_foreground(spec, slots=slots_or_exit(spec.workers, dask_scheduler))


def slots_or_exit(size: int, scheduler: str | None, wait: bool = False):
    """The runner's slots (see execution.executors), or one line and exit 2."""
    try:
        return runner_slots(current_app.config, size, scheduler, wait)
    except ExecutorError as exc:
        fail_usage(str(exc))


@group.command("refine", cls=OneLineCommand)
@click.argument("search_id", type=int)
@click.option("--factor", default=None, help="rates in [best / factor, best x factor] [3]")
@click.option("--trials", default=None, help="trials of the new search [the parent's]")
def refine_command(search_id: int, factor: str | None, trials: str | None) -> None:
    """Run a new search around a finished one's best rate, in the foreground."""
    ensure_schema()
    parent = db.session.get(Search, search_id) if 0 <= search_id <= MAX_INTEGER else None
    if parent is None:
        fail_usage(f"no search {search_id}")
    try:
        raw = refine.refined_settings(db.session, parent, factor, trials)
    except SpecError as exc:
        fail_usage("; ".join(f"{k}: {v}" for k, v in exc.errors.items()))
    run_in_foreground(parsed(raw), parent_id=parent.id)


def parsed(raw: dict) -> SearchSpec:
    """The settings checked, or one line and exit 2."""
    try:
        return parse_spec(raw, current_app.config, catalog.shape_of(db.session))
    except SpecError as exc:
        flag = {s.name: s.flag for s in PUBLIC_SETTINGS}
        fail_usage("; ".join(f"{flag.get(k, k)}: {v}" for k, v in exc.errors.items()))


def run_in_foreground(spec: SearchSpec, parent_id: int | None = None, slots=None) -> None:
    """Store the search, run it here (in `slots`, else a local pool) with a progress bar,
    and print its ranking."""
    slots = slots or slots_or_exit(spec.workers, None)
    search = create_search(db.session, spec, parent_id)
    click.echo(
        f"search {search.id}: {spec.trials} rates in [{format_lr(spec.lr_min)}, "
        f"{format_lr(spec.lr_max)}] on {spec.dataset}, {spec.workers} workers",
        err=True,
    )
    runner = Runner(runner_settings(current_app), slots, search.id)
    if spec.kind == RANGE_TEST:
        click.echo(f"range test {search.id}: {spec.iterations} batches, lr "
                   f"{format_lr(spec.lr_min)} -> {format_lr(spec.lr_max)}", err=True)  # fmt: skip
    progress = Progress(search.id, spec.trials * spec.epochs)
    reported = []

    def report() -> None:
        """The answer, as soon as every trial has ended (the workers draw plots after)."""
        progress.update(final=True)
        db.session.expire_all()
        print_search(db.session.get(Search, search.id))
        sys.stdout.flush()  # the answer now, even into a pipe, while the plots are drawn
        db.session.rollback()
        reported.append(True)

    # Ctrl-C (SIGINT, to the whole process group; the workers ignore it) stops the runner at
    # its next turn, as SIGTERM does: raised as KeyboardInterrupt, it could land inside a
    # database statement or the ranking's output.
    interrupted = []

    def on_ctrl_c(*_) -> None:
        interrupted.append(True)
        runner.stop()

    handlers = {signal.SIGTERM: lambda *_: runner.stop(), signal.SIGINT: on_ctrl_c}
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        runner.run(until_done=True, on_tick=progress.update, on_end=report)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if interrupted and reported:  # the search had ended: the rest are drawn when asked for
        click.echo("\nstopped; plots not drawn yet are drawn when first asked for", err=True)
    elif interrupted:
        click.echo("\ncancelling...", err=True)
        store.cancel_search(db.session, search.id)
    if not runner.stopping.is_set():
        # The workers drew every plot; one whose drawing failed is tried again here: the
        # log folder is for people.
        db.session.expire_all()
        for trial in reads.trials_of(db.session, search.id):
            plots.ensure_plot(db.session, trial, current_app.config["DATA_DIR"])
    if not reported:
        report()


class Progress:
    """A one-line progress bar on stderr, redrawn at most a few times a second."""

    def __init__(self, search_id: int, planned: int):
        self.search_id, self.planned = search_id, planned
        self.started, self.last = time.monotonic(), 0.0

    def update(self, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < 0.5:
            return
        self.last = now
        done = reads.epochs_done(db.session, self.search_id)
        db.session.rollback()
        share = min(done / self.planned, 1.0) if self.planned else 1.0
        bar = "#" * int(share * 30)
        elapsed = now - self.started
        eta = f"eta {elapsed / share - elapsed:4.0f}s" if 0 < share < 1 else " " * 8
        line = f"[{bar:<30}] {done}/{self.planned} epochs {share:4.0%} {eta}"
        click.echo(
            ("\r" if sys.stderr.isatty() else "") + line,
            err=True,
            nl=final or not sys.stderr.isatty(),
        )


def print_search(search: Search) -> None:
    """The search's settings, status and ranking table; a range test's suggestion."""
    if search.kind == RANGE_TEST:
        from lrsearch.range_test_cli import print_range_test

        print_range_test(search)
        return
    note = status_note(search.status, reads.trial_totals(db.session, search.id).counts)
    click.echo(
        f"search {search.id} {search.name!r}: {note}; {search.dataset} "
        f"layers={','.join(map(str, search.layers))} lr=[{format_lr(search.lr_min)}, "
        f"{format_lr(search.lr_max)}] {search.sampler} trials={search.n_trials} "
        f"epochs={search.epochs} batch={search.batch_size} seed={search.seed}"
        + (
            f" asha(eta={search.reduction_factor}, grace={search.grace_period}, "
            f"brackets={search.brackets}, {search.metric})"
            if search.scheduler == "asha"
            else ""
        )
        + (f" refines={search.parent_id}" if search.parent_id else "")
    )
    click.echo(
        f"{'rank':>4}  {'lr':>9}  {'best val acc':>12} {'(epoch)':>7}  "
        f"{'final val acc':>13}  {'train-val gap':>13}  status"
    )
    trials = reads.trials_of(db.session, search.id)
    for rank, trial in enumerate(ranking.rank_by_accuracy(trials), 1):
        gap = ranking.gap(trial)
        click.echo(
            f"{rank:>4}  {format_lr(trial.lr):>9}  {_num(trial.best_val_acc):>12} "
            f"{'(' + str(trial.best_epoch) + ')' if trial.best_epoch else '':>7}  "
            f"{_num(trial.final_val_acc):>13}  {_num(gap, signed=True):>13}  "
            f"{trial.status}{': ' + trial.error if trial.error else ''}"
        )
    shown, more = error_summary(db.session, search.id)
    if shown:
        click.echo("errors of the failed trials:")
    for message, count in shown:
        click.echo(f"  {count} trial{'s' if count != 1 else ''}: {message}")
    if more:
        click.echo(f"  and {more} other errors (each trial's on its page)")
    by_id = {t.id: t for t in trials}
    best = by_id.get(ranking.best_trial_id(db.session, search.id))
    healthy = by_id.get(ranking.healthiest_trial_id(db.session, search.id))
    if best:
        click.echo(
            f"highest validation accuracy: lr={format_lr(best.lr)} "
            f"(best val acc {best.best_val_acc:.4f} at epoch {best.best_epoch})"
        )
    if healthy:
        click.echo(
            f"healthiest curve: lr={format_lr(healthy.lr)} (final train "
            f"{healthy.final_acc_train:.4f}, val {healthy.final_val_acc:.4f}, "
            f"gap {ranking.gap(healthy):+.4f})"
        )


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


@group.command("list", cls=OneLineCommand)
def list_command() -> None:
    """List the stored searches."""
    ensure_schema()
    listings = ranking.list_searches(db.session, newest_first=False)
    click.echo(
        f"{'id':>4}  {'status':<10} {'dataset':<12} {'trials':>6} {'epochs':>6}  "
        f"{'best lr':>9}  {'best val acc':>12}  created"
    )
    for s, best in ((x.search, x.best) for x in listings):
        click.echo(
            f"{s.id:>4}  {s.status:<10} {s.dataset[:12]:<12} {s.n_trials:>6} "
            f"{s.epochs:>6}  {format_lr(best.lr) if best else '-':>9}  "
            f"{_num(best.best_val_acc if best else None):>12}  "
            f"{s.created_at:%Y-%m-%d %H:%M} {s.name}"
        )


@group.command("show", cls=OneLineCommand)
@click.argument("search_id", type=int)
def show_command(search_id: int) -> None:
    """Show one search and its ranking."""
    ensure_schema()
    # An id past the INTEGER column: PostgreSQL would refuse to compare it (a traceback).
    search = db.session.get(Search, search_id) if 0 <= search_id <= MAX_INTEGER else None
    if search is None:
        fail_usage(f"no search {search_id}")
    print_search(search)


@group.command("runner", cls=OneLineCommand)
@DASK_OPTION
def runner_command(dask_scheduler: str | None = None) -> None:
    """Run queued trials of every search until stopped (the server starts one)."""
    ensure_schema()
    app = current_app._get_current_object()
    # The local pool starts the fork server unless app.py did; a Dask scheduler that does
    # not answer yet is waited for (the dashboard says so).
    slots = slots_or_exit(app.config["WORKERS"], dask_scheduler, wait=True)
    if hasattr(slots, "start"):
        slots.start()
    runner = Runner(runner_settings(app), slots)  # it fetches and imports data sets too
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: runner.stop())
    where = dask_scheduler or app.config.get("DASK_SCHEDULER")
    executor = f"Dask cluster {where}" if where else f"{app.config['WORKERS']} workers"
    click.echo(f"runner: {executor} on {app.config['DATABASE_URL']}", err=True)
    runner.run()


def init_app(app: Flask) -> None:
    """Register the commands."""
    from lrsearch.datasets_cli import datasets_group
    from lrsearch.manage_cli import cancel_command, delete_command, export_model_command
    from lrsearch.range_test_cli import range_test_command

    group.add_command(datasets_group)
    group.add_command(range_test_command)
    group.add_command(cancel_command)
    group.add_command(delete_command)
    group.add_command(export_model_command)
    app.cli.add_command(group)
