"""The whole search, end to end, from the command line."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from sqlalchemy import func, select

from lrsearch.extensions import db
from lrsearch.models import COMPLETED, DIVERGED, Epoch, Search, Trial

SEED_LINE = re.compile(
    r"^\[(\d+)/(\d+)\] loss:\d+\.\d{4},acc_train:\d\.\d{4},val_loss:\d+\.\d{4},acc_val:\d\.\d{4}$"
)


def run(cli, *args: str):
    return cli.invoke(args=["lrsearch", "run", *args], catch_exceptions=False)


@pytest.mark.slow
def test_a_real_search_runs_end_to_end(cli, app):
    result = run(
        cli,
        "--dataset",
        "digits",
        "--layers",
        "64,128,10",
        "--trials",
        "8",
        "--epochs",
        "20",
        "--workers",
        "2",
        "--seed",
        "0",
    )
    assert result.exit_code == 0, result.output
    search = db.session.execute(select(Search)).scalar_one()
    assert search.status == COMPLETED
    assert [t.status for t in search.trials] == [COMPLETED] * 8
    epochs = db.session.execute(select(func.count()).select_from(Epoch)).scalar_one()
    assert epochs == 8 * 20
    pairs = db.session.execute(select(Epoch.trial_id, Epoch.epoch)).all()
    assert len(set(pairs)) == 160
    folders = sorted((Path(app.config["DATA_DIR"]) / "logs" / "search-0001").iterdir())
    assert len(folders) == 8
    for folder in folders:
        lines = (folder / "log.txt").read_text().splitlines()
        assert len(lines) == 20
        assert all(SEED_LINE.match(line) for line in lines), lines[:2]
        assert [int(SEED_LINE.match(line)[1]) for line in lines] == list(range(1, 21))
        assert (folder / "curves.png").stat().st_size > 10_000
    out = result.stdout
    assert "rank" in out and "best val acc" in out and "train-val gap" in out
    assert len(re.findall(r"^\s+\d+\s+\d\.\d+e-\d+|^\s+\d+\s+0\.\d+", out, re.M)) == 8
    assert "highest validation accuracy: lr=" in out
    assert "healthiest curve: lr=" in out
    best = max(search.trials, key=lambda t: t.best_val_acc)
    assert best.best_val_acc >= 0.95


@pytest.mark.slow
def test_a_diverging_trial_keeps_its_epochs_while_the_others_complete(cli):
    result = run(
        cli,
        "--trials",
        "3",
        "--sampler",
        "grid",
        "--lr-min",
        "1e-3",
        "--lr-max",
        "10",
        "--epochs",
        "6",
        "--workers",
        "2",
    )
    assert result.exit_code == 0, result.output
    trials = db.session.execute(select(Trial).order_by(Trial.index)).scalars().all()
    assert [t.status for t in trials[:2]] == [COMPLETED, COMPLETED]
    diverged = trials[2]
    assert diverged.status == DIVERGED
    assert "loss" in diverged.error
    kept = db.session.execute(
        select(func.count()).select_from(Epoch).where(Epoch.trial_id == diverged.id)
    ).scalar_one()
    assert kept == diverged.epochs_done < 6
    assert db.session.get(Search, 1).status == COMPLETED


@pytest.mark.parametrize(
    "args",
    [
        ["--trials", "zero"],
        ["--lr-min", "1e-2", "--lr-max", "1e-3"],
        ["--layers", "64,128,9"],
        ["--sampler", "sobol"],
        ["--no-such-option"],
    ],
)
def test_a_bad_option_exits_2_with_one_line(cli, args):
    result = cli.invoke(args=["lrsearch", "run", *args])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert db.session.execute(select(func.count()).select_from(Search)).scalar_one() == 0


def test_list_and_show_print_what_is_stored(cli, make_search):
    search = make_search(trials=3, epochs=4, name="first")
    listed = cli.invoke(args=["lrsearch", "list"])
    assert listed.exit_code == 0
    assert re.search(rf"^\s+{search.id}\s+completed\s+digits", listed.stdout, re.M)
    shown = cli.invoke(args=["lrsearch", "show", str(search.id)])
    assert shown.exit_code == 0
    assert shown.stdout.count("completed") >= 4
    missing = cli.invoke(args=["lrsearch", "show", "999"])
    assert missing.exit_code == 2 and "no search 999" in missing.stderr


@pytest.mark.postgres
@pytest.mark.usefixtures("on_postgresql")
def test_show_an_id_past_the_integer_column_on_postgresql(cli):
    for search_id in (str(2**31), "-1"):
        missing = cli.invoke(args=["lrsearch", "show", "--", search_id])
        assert missing.exit_code == 2 and f"no search {search_id}" in missing.stderr
        assert "Traceback" not in missing.output


def process_group(pgid: int) -> list[int]:
    """The live processes of a process group, from the process table."""
    members = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                state, _, group = f.read().rsplit(")", 1)[1].split()[:3]
        except OSError:
            continue
        if state != "Z" and int(group) == pgid:
            members.append(int(entry))
    return members


def start_in_a_terminal_group(tmp_path, *options: str) -> subprocess.Popen:
    """`flask lrsearch run` in its own process group, as a terminal starts a command."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LRSEARCH_")}
    env["LRSEARCH_DATA_DIR"] = str(tmp_path)
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", "lrsearch", "run", *options],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def ctrl_c(process: subprocess.Popen) -> str:
    """What Ctrl-C in a terminal does: SIGINT to the whole group (runner, fork server,
    workers); the command's standard error once it has exited, and nothing left running."""
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    deadline = time.monotonic() + 10
    while process_group(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_group(process.pid)  # no worker or fork server left behind
    return err


def ctrl_c_now() -> None:
    """Ctrl-C, delivered to this process at this very point of the command."""
    os.kill(os.getpid(), signal.SIGINT)


DIGITS = ("--dataset", "digits", "--layers", "64,128,10", "--seed", "0")


@pytest.mark.slow
def test_ctrl_c_while_the_ranking_is_printed_lets_it_finish_once(cli, monkeypatch):
    import lrsearch.cli as command

    print_search = command.print_search

    def print_with_ctrl_c(search):
        print_search(search)
        ctrl_c_now()

    monkeypatch.setattr(command, "print_search", print_with_ctrl_c)
    result = run(cli, *DIGITS, "--trials", "4", "--epochs", "2", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "stopped; plots not drawn yet" in result.stderr
    assert result.stdout.count("highest validation accuracy") == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back


@pytest.mark.slow
def test_ctrl_c_in_the_runners_database_work_cancels_the_search(cli, monkeypatch):
    from lrsearch import store

    claim, calls = store.claim_trials, []

    def claim_with_ctrl_c(session, *args, **kwargs):
        calls.append(True)
        if len(calls) == 3:  # trials are running by now
            ctrl_c_now()
        return claim(session, *args, **kwargs)

    monkeypatch.setattr(store, "claim_trials", claim_with_ctrl_c)
    result = run(cli, *DIGITS, "--trials", "6", "--epochs", "300", "--workers", "2")
    assert result.exit_code == 0, result.output
    assert "cancelling..." in result.stderr and "Traceback" not in result.output
    search = db.session.execute(select(Search)).scalar_one()
    assert search.status == "cancelled"
    assert {t.status for t in search.trials} <= {"cancelled", "completed"}


@pytest.mark.slow
def test_ctrl_c_during_the_search_cancels_it(tmp_path):
    with start_in_a_terminal_group(
        tmp_path, "--trials", "6", "--epochs", "300", "--workers", "2"
    ) as process:
        for line in process.stderr:
            if re.search(r"\] [1-9]\d*/1800 epochs", line):  # training: some epochs done
                break
        err = ctrl_c(process)
    assert "cancelling..." in err
    with closing(sqlite3.connect(tmp_path / "lrsearch.sqlite3")) as database:
        [(status,)] = database.execute("SELECT status FROM search").fetchall()
        trial_statuses = {s for (s,) in database.execute("SELECT status FROM trial")}
    assert status == "cancelled" and trial_statuses <= {"cancelled", "completed"}


@pytest.mark.slow
def test_ctrl_c_once_the_ranking_is_out_stops_the_plots_and_exits(tmp_path):
    with start_in_a_terminal_group(
        tmp_path, "--trials", "40", "--epochs", "2", "--workers", "2"
    ) as process:
        for line in process.stdout:
            if line.lstrip().startswith("rank"):  # the answer is out: the plots come next
                break
        err = ctrl_c(process)
    assert "plots not drawn yet are drawn when first asked for" in err
    assert len(list(tmp_path.glob("logs/*/*/curves.png"))) < 40


@pytest.mark.slow
def test_ctrl_c_while_the_workers_modules_load_prints_no_traceback(tmp_path):
    # A moment after the fork server started (first): the command still imports the app,
    # and the fork server the workers' modules, which takes it a second or two.
    with start_in_a_terminal_group(tmp_path, *DIGITS, "--trials", "2") as process:
        deadline = time.monotonic() + 30
        while len(process_group(process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    # "Aborted!" (now and then Python then ends itself by the signal), or the search cancelled
    assert process.returncode in (0, 1, -signal.SIGINT), err
    deadline = time.monotonic() + 15
    while process_group(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not process_group(process.pid)  # the fork server ends once its imports are done


FORK_SERVER_AFTER_IMPORT = """
import sys
sys.argv = {argv!r}
import {module}
from multiprocessing import forkserver
print(forkserver._forkserver._forkserver_pid is not None)
"""


def fork_server_started_by_import(module: str, argv: list[str]) -> bool:
    """Whether importing `module` in a fresh interpreter with this argv starts a fork server."""
    done = subprocess.run(
        [sys.executable, "-c", FORK_SERVER_AFTER_IMPORT.format(argv=argv, module=module)],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split() == ["True"]


@pytest.mark.parametrize(
    ("argv", "started"),
    [
        (["flask", "--app", "app", "lrsearch", "run", "--dataset", "digits"], True),
        (["/venv/lib/flask/__main__.py", "--app", "app", "lrsearch", "runner"], True),
        (["flask", "--app", "app", "--debug", "lrsearch", "run", "--help"], True),
        (["flask", "--app", "app", "lrsearch", "list"], False),
        (["flask", "--app", "app", "lrsearch", "show", "run"], False),
        (["flask", "--app", "app", "db", "upgrade"], False),
        (["flask", "--app", "app", "lrsearch"], False),
        (["gunicorn", "app:app"], False),
    ],
)
def test_a_command_that_runs_workers_starts_their_fork_server_as_its_app_is_imported(argv, started):
    # ... by app.py, before the app's modules, so that both imports run side by side.
    assert fork_server_started_by_import("app", argv) is started


def test_importing_the_package_starts_nothing():
    run = ["flask", "--app", "app", "lrsearch", "run", "--dataset", "digits"]
    assert not fork_server_started_by_import("lrsearch", run)
