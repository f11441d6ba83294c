"""`flask --app app lrsearch datasets ...`: add, list, show, remove in the foreground; bad
files exit 2 with one line and leave nothing."""

from __future__ import annotations

import numpy as np
import pytest

from lrsearch.datasets import cache
from lrsearch.extensions import db
from lrsearch.store import datasets as records
from tests.test_catalog import csv_bytes


def run(cli, *args: str):
    return cli.invoke(args=["lrsearch", "datasets", *args])


def stored_files(app) -> list[str]:
    root = cache.datasets_root(app.config["DATA_DIR"])
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_add_list_show_and_remove(app, cli, tmp_path):
    path = tmp_path / "animals.csv"
    path.write_bytes(csv_bytes(rows=30))
    added = run(cli, "add", "animals", str(path), "--label-column", "animal")
    assert added.exit_code == 0, added.output
    assert "animals: ready" in added.output and "30 samples" in added.output
    assert "cat: " in added.output and path.is_file()  # the user's file stays
    listed = run(cli, "list")
    assert listed.exit_code == 0 and "animals" in listed.output and "ready" in listed.output
    shown = run(cli, "show", "animals")
    assert "4 features, 3 classes" in shown.output and "80/20 by seed" in shown.output
    removed = run(cli, "remove", "animals")
    assert removed.exit_code == 0 and "removed animals" in removed.output
    assert records.list_datasets(db.session) == [] and stored_files(app) == []


def test_an_npz_with_string_labels(app, cli, tmp_path):
    path = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.normal(size=(20, 3)), y_train=np.array(["a", "b"] * 10))
    result = run(cli, "add", "letters", str(path))
    assert result.exit_code == 0, result.output
    assert "a: 10, b: 10" in result.output


@pytest.mark.parametrize(
    ("name", "content", "suffix", "words"),
    [
        ("bad", b"a,b,label\n1,2,x\n3,oops,y\n", ".csv", "row 3"),
        ("bad", b"1,2,x\n1,2\n", ".csv", "row 2"),
        ("bad", b"1,nan,x\n1,2,y\n", ".csv", "NaN"),
        ("bad", b"\x00\x01\x02", ".npz", "not a CSV or NPZ"),
        ("bad", b"1,2\n", ".txt", "not a CSV or NPZ"),
        ("no good", b"1,2,x\n", ".csv", "must start with a letter"),
        ("digits", b"1,2,x\n", ".csv", "built in"),
    ],
)
def test_a_bad_file_exits_2_with_one_line_and_leaves_nothing(
    app, cli, tmp_path, name, content, suffix, words
):
    path = tmp_path / f"data{suffix}"
    path.write_bytes(content)
    result = run(cli, "add", name, str(path))
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and words in errors[0], result.output
    assert "Traceback" not in result.output
    assert records.list_datasets(db.session) == [] and stored_files(app) == []


def test_removing_an_unknown_data_set_exits_2(cli):
    result = run(cli, "remove", "nothing")
    assert result.exit_code == 2 and "no data set nothing" in result.output


def test_fetch_with_a_progress_bar(app, cli, mirror):
    result = run(cli, "fetch", "mnist")
    assert result.exit_code == 0, result.output
    assert "fetching mnist" in result.output and "mnist: ready" in result.output
    assert "120 samples (20 given for validation), 784 features, 10 classes" in result.output
    again = run(cli, "fetch", "mnist")
    assert again.exit_code == 2 and "mnist is ready already" in again.output


def test_a_failed_fetch_exits_with_one_line_and_keeps_no_record(app, cli, mirror):
    app.config["DATASET_MIRRORS"] = mirror.url("missing")
    result = run(cli, "fetch", "mnist")
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "HTTP 404" in errors[0] and mirror.url("missing") in errors[0]
    assert records.list_datasets(db.session) == []
