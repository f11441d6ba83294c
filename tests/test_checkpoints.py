"""Checkpoints (issue 22): a re-run attempt resumes where the last one saved, and ends with
the weights and metrics of the uninterrupted run, bit for bit."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from sqlalchemy import select

from lrsearch.extensions import db
from lrsearch.models import COMPLETED, Epoch, Search
from lrsearch.search.sampler import create_search
from lrsearch.settings import SearchSpec
from lrsearch.store.checkpoints import final_checkpoint
from lrsearch.training import Hyperparameters, load_dataset, train
from lrsearch.training.checkpoint import TrainerState, stored_params
from tests.faults import RunnerThread, trials, wait_for


def test_resuming_from_a_checkpoint_goes_on_as_the_uninterrupted_run(tmp_path):
    data = load_dataset("digits", str(tmp_path), seed=0)
    hyper = Hyperparameters(layers=[64, 32, 10], epochs=6)
    saved: dict[int, bytes] = {}

    def keep(trainer, epoch: int) -> None:
        saved[epoch] = trainer.state(epoch).to_bytes()

    whole = train(data, hyper, 3e-3, seed=4, on_state=keep)
    for epoch in (1, 3, 5):
        resumed = train(data, hyper, 3e-3, seed=4, resume=TrainerState.from_bytes(saved[epoch]))
        assert [e.epoch for e in resumed.history] == list(range(epoch + 1, 7))
        for a, b in zip(whole.history[epoch:], resumed.history, strict=True):
            assert (a.loss, a.acc_train, a.val_loss, a.acc_val) == (
                b.loss, b.acc_train, b.val_loss, b.acc_val)  # fmt: skip
    final = TrainerState.from_bytes(saved[6])
    again: dict[int, bytes] = {}
    train(data, hyper, 3e-3, seed=4, resume=TrainerState.from_bytes(saved[2]),
          on_state=lambda t, e: again.__setitem__(e, t.state(e).to_bytes()))  # fmt: skip
    assert np.array_equal(TrainerState.from_bytes(again[6]).params, final.params)
    # a completed trial's final state is kept weights-only: a quarter of the size
    trimmed = final.to_bytes(weights_only=True)
    assert np.array_equal(stored_params(trimmed), final.params)
    assert len(trimmed) < 0.4 * len(saved[6])
    with pytest.raises(ValueError, match="cannot be resumed"):
        TrainerState.from_bytes(trimmed)


def epochs_of(trial_id: int, attempt: int) -> list[Epoch]:
    query = select(Epoch).where(Epoch.trial_id == trial_id, Epoch.attempt == attempt)
    return list(db.session.scalars(query.order_by(Epoch.epoch)))


@pytest.mark.slow
def test_a_worker_killed_mid_trial_resumes_and_ends_bit_for_bit_as_the_uninterrupted(app):
    app.config["CHECKPOINT_SECONDS"] = 0  # after every epoch
    spec = {"dataset": "synthetic:20000x64x10", "hidden": [256, 256], "trials": 1, "epochs": 8,
            "workers": 1, "seed": 3, "lr_min": 1e-3, "lr_max": 1e-2}  # fmt: skip
    plain = create_search(db.session, SearchSpec(**spec))
    broken = create_search(db.session, SearchSpec(**spec))
    with RunnerThread(app, workers=1, search_id=plain.id):
        wait_for(lambda: db.session.get(Search, plain.id).status == COMPLETED, 120)
    with RunnerThread(app, workers=1, search_id=broken.id):
        running = wait_for(
            lambda: [t for t in trials(broken.id) if t.epochs_done >= 3 and t.attempt == 1
                     and "/runner" not in t.worker],
            120, "three epochs",
        )  # fmt: skip
        os.kill(int(running[0].worker.rsplit(":", 1)[1]), signal.SIGKILL)
        wait_for(lambda: db.session.get(Search, broken.id).status == COMPLETED, 120)
    [whole], [resumed] = trials(plain.id), trials(broken.id)
    assert (resumed.attempt, resumed.crashes, resumed.status) == (2, 1, COMPLETED)
    first, second = epochs_of(resumed.id, 1), epochs_of(resumed.id, 2)
    reference = epochs_of(whole.id, 1)
    assert [e.epoch for e in second] == list(range(1, 9))
    metrics = ("loss", "acc_train", "val_loss", "acc_val")
    assert [[getattr(e, m) for m in metrics] for e in second] == [
        [getattr(e, m) for m in metrics] for e in reference
    ]
    # Carried over, not trained again: the resumed attempt's early epochs are the first's,
    # their very seconds; it trained only the epochs after its checkpoint.
    seconds_before = {e.epoch: e.seconds for e in first}
    carried = [e for e in second if seconds_before.get(e.epoch) == e.seconds]
    assert len(carried) >= 2 and [e.epoch for e in carried] == list(range(1, len(carried) + 1))
    ours, theirs = final_checkpoint(db.session, resumed.id), final_checkpoint(db.session, whole.id)
    assert ours.epoch == theirs.epoch == 8
    # (the final checkpoints keep the weights only: equal weights after every step of both
    # runs need equal Adam moments all along)
    assert np.array_equal(stored_params(ours.data), stored_params(theirs.data))


def predict(model, x: np.ndarray) -> np.ndarray:
    """The README's example: the classes a saved model gives raw inputs."""
    h = (x - model["input_mean"]) / model["input_scale"]
    last = len(model["layers"]) - 2
    for i in range(last + 1):
        h = h @ model[f"W{i}"] + model[f"b{i}"]
        if i < last:
            h = np.maximum(h, 0)
    return h.argmax(axis=1)


@pytest.mark.slow
def test_a_completed_trials_model_downloads_and_predicts_as_it_validated(
    app, client, cli, tmp_path
):
    import io
    import json
    import zipfile

    search = create_search(db.session, SearchSpec(trials=2, epochs=4, hidden=[32], seed=2,
                                                  lr_min=3e-3, lr_max=1e-2))  # fmt: skip
    with RunnerThread(app, workers=2, search_id=search.id):
        wait_for(lambda: db.session.get(Search, search.id).status == COMPLETED, 60)
    trial = trials(search.id)[0]
    kept = np.load(io.BytesIO(final_checkpoint(db.session, trial.id).data))
    assert sorted(kept.files) == ["meta", "params"]  # weights only: no moments, no order
    answer = client.get(f"/trials/{trial.id}/model.npz")
    assert answer.status_code == 200
    model = np.load(io.BytesIO(answer.data))
    assert list(model["layers"]) == [64, 32, 10]
    assert json.loads(str(model["settings"]))["lr"] == trial.lr
    data = load_dataset("digits", str(tmp_path), seed=2)  # pixels / 16: raw = x * 16
    accuracy = float(np.mean(predict(model, data.x_val * 16) == data.y_val))
    assert accuracy == pytest.approx(trial.final_val_acc, abs=1e-9)
    out = tmp_path / "model.npz"
    result = cli.invoke(args=["lrsearch", "export-model", str(trial.id), str(out)])
    assert result.exit_code == 0 and out.read_bytes() == answer.data
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/searches/{search.id}/archive.zip").data))
    assert any(name.endswith("/best-model.npz") for name in archive.namelist())
    # no model for a trial that did not complete
    queued = create_search(db.session, SearchSpec(trials=1, epochs=1))
    missing = client.get(f"/trials/{trials(queued.id)[0].id}/model.npz")
    assert missing.status_code == 404 and b"only a completed trial" in missing.data
    bad = cli.invoke(args=["lrsearch", "export-model", str(trials(queued.id)[0].id), str(out)])
    assert bad.exit_code == 2
