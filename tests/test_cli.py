"""The whole search, end to end, from the command line."""

from __future__ import annotations

import re
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
