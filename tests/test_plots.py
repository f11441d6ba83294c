"""Plots: drawn by the worker for long trials, otherwise in idle time or when asked for."""

from __future__ import annotations

import io
import zipfile

import pytest

from lrsearch import artifacts, store
from lrsearch.execution import plots
from lrsearch.extensions import db
from lrsearch.models import COMPLETED
from lrsearch.search.sampler import create_search
from lrsearch.settings import SearchSpec
from tests.faults import RunnerThread, search_status, trials, wait_for

PNG = b"\x89PNG\r\n\x1a\n"


def plot_of(app, trial):
    folder = artifacts.trial_folder(app.config["DATA_DIR"], trial.search_id, trial.index, trial.lr)
    return folder / artifacts.PLOT_NAME


def run_short_trials(app, search) -> None:
    """Run a search's trials here, one after the other: each leaves its plot for later."""
    from lrsearch.cli import runner_settings
    from lrsearch.execution.worker import run_trial

    settings = runner_settings(app)
    while claimed := store.claim_trials(db.session, 1, search_id=search.id):
        [(trial_id, attempt)] = claimed
        assert run_trial(trial_id, attempt, settings.database_url, settings.data_dir) == COMPLETED


def test_a_short_trials_plot_is_drawn_when_first_asked_for(app, client):
    search = create_search(db.session, SearchSpec(trials=2, epochs=3, workers=2))
    run_short_trials(app, search)
    first, second = trials(search.id)
    assert first.plot_pending and not plot_of(app, first).exists()
    with client.get(f"/trials/{first.id}/plot.png") as response:
        assert response.status_code == 200 and response.data.startswith(PNG)
        assert plot_of(app, first).read_bytes() == response.data
    names = zipfile.ZipFile(io.BytesIO(client.get(f"/searches/{search.id}/archive.zip").data))
    assert sum(n.endswith("/curves.png") for n in names.namelist()) == 2
    assert plot_of(app, second).exists()


@pytest.mark.slow
def test_a_searchs_own_runner_draws_its_left_over_plots_on_its_workers(app, monkeypatch):
    """As the command line's runner does: the ranking first, then every plot, side by side."""
    from lrsearch.cli import runner_settings
    from lrsearch.execution.local import ProcessSlots
    from lrsearch.search.runner import Runner

    other = create_search(db.session, SearchSpec(trials=1, epochs=2, workers=1))
    run_short_trials(app, other)
    search = create_search(db.session, SearchSpec(trials=6, epochs=3, workers=2))
    monkeypatch.setattr(artifacts, "draw_plot", lambda *_: pytest.fail("drawn by the runner"))
    ended = []

    def on_end() -> None:
        db.session.expire_all()
        ended.append([t.status for t in trials(search.id)])
        db.session.rollback()

    runner = Runner(runner_settings(app), ProcessSlots(2), search.id)
    runner.run(until_done=True, on_end=on_end)
    assert ended == [[COMPLETED] * 6]  # once, when the last trial had ended
    db.session.expire_all()
    assert all(plot_of(app, t).is_file() and not t.plot_pending for t in trials(search.id))
    [left] = trials(other.id)  # another search's plot waits for whoever asks for it
    assert left.plot_pending and not plot_of(app, left).exists()


@pytest.mark.slow
def test_the_servers_runner_draws_left_over_plots_when_idle(app):
    search = create_search(db.session, SearchSpec(trials=3, epochs=3, workers=2))
    with RunnerThread(app, workers=2):
        wait_for(lambda: search_status(search.id) == COMPLETED, 60)
        wait_for(lambda: all(plot_of(app, t).exists() for t in trials(search.id)), 30)
        assert not any(t.plot_pending for t in trials(search.id))


@pytest.mark.parametrize("threshold, inline", [(0.0, True), (1e9, False)])
def test_a_worker_draws_the_plot_when_training_took_enough_cpu_time(
    app, monkeypatch, threshold, inline
):
    """Inline after a long trial (CPU seconds against INLINE_AFTER_SECONDS), else left over."""
    from lrsearch.cli import runner_settings
    from lrsearch.execution.worker import run_trial

    monkeypatch.setattr(plots, "INLINE_AFTER_SECONDS", threshold)
    search = create_search(db.session, SearchSpec(trials=1, epochs=2, workers=1))
    [(trial_id, attempt)] = store.claim_trials(db.session, 1, search_id=search.id)
    settings = runner_settings(app)
    assert run_trial(trial_id, attempt, settings.database_url, settings.data_dir) == COMPLETED
    [trial] = trials(search.id)
    assert plot_of(app, trial).exists() is inline
    assert trial.plot_pending is not inline


def test_a_running_trial_has_no_plot_yet(client, make_search):
    search = make_search(trials=1, epochs=2)
    trial = search.trials[0]
    trial.status = "running"
    db.session.commit()
    assert client.get(f"/trials/{trial.id}/plot.png").status_code == 404


def history(epochs: int, scale: float) -> list[dict[str, float]]:
    return [
        {
            "epoch": e,
            "loss": scale / e,
            "val_loss": 1.2 * scale / e,
            "acc_train": 1 - 0.5 / e,
            "acc_val": 1 - 0.6 / e,
        }
        for e in range(1, epochs + 1)
    ]


def test_a_plot_depends_only_on_its_own_trial(tmp_path):
    """The one figure a process reuses carries nothing over from the trial drawn before it."""
    long, short = history(20, 1.0), history(2, 300.0)
    artifacts.draw_plot(tmp_path / "a.png", "trial a", long)
    artifacts.draw_plot(tmp_path / "b.png", "trial b", short)
    artifacts.draw_plot(tmp_path / "a-again.png", "trial a", long)
    first, again = (tmp_path / "a.png").read_bytes(), (tmp_path / "a-again.png").read_bytes()
    assert first == again
    assert first != (tmp_path / "b.png").read_bytes()
    assert not list(tmp_path.glob("*.tmp.png"))


def test_threads_drawing_at_once_each_get_their_own_plot(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    histories = {f"t{i}": history(3 + i, 1.0 + i) for i in range(6)}
    for name, epochs in histories.items():
        artifacts.draw_plot(tmp_path / f"{name}-alone.png", name, epochs)
    with ThreadPoolExecutor(4) as pool:
        list(
            pool.map(
                lambda item: artifacts.draw_plot(tmp_path / f"{item[0]}.png", *item),
                histories.items(),
            )
        )
    for name in histories:
        assert (tmp_path / f"{name}.png").read_bytes() == (
            tmp_path / f"{name}-alone.png"
        ).read_bytes()


@pytest.mark.parametrize("epochs, scale", [(20, 1.0), (2, 300.0), (1, 1e-6), (1000, 5e6)])
def test_titles_and_labels_stay_where_matplotlib_places_them(tmp_path, monkeypatch, epochs, scale):
    """The figure fixes their places once instead of measuring tick labels on every draw."""
    title, epochs_ = "lr=1.00e-03  (digits, trial 0)", history(epochs, scale)
    artifacts.draw_plot(tmp_path / "fixed.png", title, epochs_)
    monkeypatch.setattr(artifacts, "_keep_places", lambda figure: None)
    auto = artifacts._plot_figure.__wrapped__()  # matplotlib measures on every draw
    monkeypatch.setattr(artifacts, "_plot_figure", lambda: auto)
    artifacts.draw_plot(tmp_path / "auto.png", title, epochs_)
    assert (tmp_path / "fixed.png").read_bytes() == (tmp_path / "auto.png").read_bytes()


@pytest.mark.parametrize("own_search, slots_drawing", [(False, 1), (True, 2)])
def test_left_over_plots_take_one_idle_slot_in_the_server_and_all_for_one_search(
    app, own_search, slots_drawing
):
    """The server leaves its other cores to the web; the command line waits for the plots."""
    from concurrent.futures import ThreadPoolExecutor, wait

    from lrsearch.cli import runner_settings
    from lrsearch.execution.slots import ExecutorSlots
    from lrsearch.search.runner import PLOTS_PER_CHORE, Runner

    search = create_search(db.session, SearchSpec(trials=12, epochs=2, workers=2))
    run_short_trials(app, search)
    slots = ExecutorSlots(ThreadPoolExecutor(2), 2)
    runner = Runner(runner_settings(app), slots, search.id if own_search else None)
    runner.draw_pending_plots()
    assert len(runner.chores) == slots_drawing
    wait(runner.chores)
    runner.close()
    db.session.expire_all()
    drawn = [t for t in trials(search.id) if plot_of(app, t).exists()]
    assert len(drawn) == slots_drawing * PLOTS_PER_CHORE
    assert sum(t.plot_pending for t in trials(search.id)) == 12 - len(drawn)
