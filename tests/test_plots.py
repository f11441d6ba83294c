"""Plots: drawn by the worker for long trials, otherwise in idle time or when asked for."""

from __future__ import annotations

import io
import zipfile

import pytest

from lrsearch import artifacts
from lrsearch.extensions import db
from lrsearch.models import COMPLETED
from lrsearch.search import store
from lrsearch.search.spec import SearchSpec
from tests.faults import RunnerThread, search_status, trials, wait_for

PNG = b"\x89PNG\r\n\x1a\n"


def plot_of(app, trial):
    folder = artifacts.trial_folder(app.config["DATA_DIR"], trial.search_id, trial.index, trial.lr)
    return folder / artifacts.PLOT_NAME


@pytest.mark.slow
def test_a_short_trials_plot_is_drawn_when_first_asked_for(app, client):
    search = store.create_search(db.session, SearchSpec(trials=2, epochs=3, workers=2))
    with RunnerThread(app, workers=2, search_id=search.id):
        wait_for(lambda: search_status(search.id) == COMPLETED, 60)
    first, second = trials(search.id)
    assert first.plot_pending and not plot_of(app, first).exists()
    with client.get(f"/trials/{first.id}/plot.png") as response:
        assert response.status_code == 200 and response.data.startswith(PNG)
        assert plot_of(app, first).read_bytes() == response.data
    names = zipfile.ZipFile(io.BytesIO(client.get(f"/searches/{search.id}/archive.zip").data))
    assert sum(n.endswith("/curves.png") for n in names.namelist()) == 2
    assert plot_of(app, second).exists()


@pytest.mark.slow
def test_the_servers_runner_draws_left_over_plots_when_idle(app):
    search = store.create_search(db.session, SearchSpec(trials=3, epochs=3, workers=2))
    with RunnerThread(app, workers=2):
        wait_for(lambda: search_status(search.id) == COMPLETED, 60)
        wait_for(lambda: all(plot_of(app, t).exists() for t in trials(search.id)), 30)
        assert not any(t.plot_pending for t in trials(search.id))


def test_a_running_trial_has_no_plot_yet(client, make_search):
    search = make_search(trials=1, epochs=2)
    trial = search.trials[0]
    trial.status = "running"
    db.session.commit()
    assert client.get(f"/trials/{trial.id}/plot.png").status_code == 404
