"""Data sets end to end on the API: upload or fetch, imported by the runner, searched on,
removed; refusals with their reasons; what the workers map."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lrsearch.datasets import cache, catalog, jobs
from lrsearch.extensions import db
from lrsearch.models import Dataset, Search
from lrsearch.store import datasets as records
from tests.faults import RunnerThread, mapped_files, wait_for

HEADERS = {"X-Requested-With": "test"}


def csv_bytes(rows: int = 60, features: int = 4, classes: int = 3, header: bool = True) -> bytes:
    """A learnable CSV: the label is which of the first `classes` features is largest."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, features))
    y = np.argmax(x[:, :classes], axis=1)
    names = ["cat", "dog", "eel", "fox"][:classes]
    lines = [",".join([*(f"f{i}" for i in range(features)), "animal"])] if header else []
    lines += [",".join([*(f"{v:.4f}" for v in row), names[k]]) for row, k in zip(x, y, strict=True)]
    return ("\n".join(lines) + "\n").encode()


def upload(client, name: str, content: bytes, filename: str = "data.csv", **form):
    data = {"name": name, "file": (io.BytesIO(content), filename), **form}
    return client.post("/api/datasets", data=data, headers=HEADERS,
                       content_type="multipart/form-data")  # fmt: skip


def dataset(name: str) -> Dataset:
    db.session.expire_all()
    return records.get_dataset(db.session, name)


def ready(app, name: str) -> Dataset:
    """Let a runner import or fetch it; the record once it ended."""
    with RunnerThread(app, workers=1):
        wait_for(lambda: dataset(name).status in ("ready", "failed"), 60)
    return dataset(name)


def leftovers(app) -> list[str]:
    root = cache.datasets_root(app.config["DATA_DIR"])
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_an_uploaded_csv_is_imported_by_the_runner_and_a_search_runs_on_it(app, client):
    response = upload(client, "animals", csv_bytes())
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert (body["name"], body["status"]) == ("animals", "importing")
    assert response.headers["Location"].endswith("/api/datasets/animals")
    record = ready(app, "animals")
    assert record.status == "ready", record.error
    assert (record.samples, record.features, record.classes) == (60, 4, 3)
    assert record.labels == ["cat", "dog", "eel"] and sum(record.class_counts) == 60
    assert record.val_samples is None and len(record.sha256) == 64 and record.disk_bytes > 0
    assert leftovers(app) == [
        "arrays/animals/meta.json",
        "arrays/animals/x.npy",
        "arrays/animals/y.npy",
    ]  # fmt: skip  (the upload is gone)
    shown = client.get("/api/datasets/animals").get_json()
    assert shown["split"].startswith("80/20") and shown["searches"] == []
    started = client.post("/api/searches", json={"dataset": "animals", "hidden": [8],
                                                 "trials": 2, "epochs": 3, "seed": 1})  # fmt: skip
    assert started.status_code == 201, started.get_json()
    assert started.get_json()["layers"] == [4, 8, 3]
    with RunnerThread(app, workers=2):
        wait_for(lambda: db.session.get(Search, started.get_json()["id"]).status == "completed")
    detail = client.get(f"/api/searches/{started.get_json()['id']}").get_json()
    assert [t["status"] for t in detail["trials"]] == ["completed", "completed"]
    assert client.get("/api/datasets/animals").get_json()["searches"][0]["status"] == "completed"


def test_an_npz_with_a_validation_part_keeps_it(app, client, tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=rng.normal(size=(40, 28, 28)), y_train=np.arange(40) % 2,
             x_val=rng.normal(size=(10, 28, 28)), y_val=np.arange(10) % 2)  # fmt: skip
    assert upload(client, "pictures", path.read_bytes(), "d.npz").status_code == 202
    record = ready(app, "pictures")
    assert record.status == "ready", record.error
    assert (record.samples, record.val_samples, record.features) == (50, 10, 784)
    shown = client.get("/api/datasets/pictures").get_json()
    assert shown["split"] == "given" and shown["image_shape"] == [28, 28]
    samples = client.get("/api/datasets/pictures/samples?per_class=3").get_json()
    assert [len(c["images"]) for c in samples["classes"]] == [3, 3]
    assert all(0 <= v <= 255 for c in samples["classes"] for i in c["images"] for v in i)


@pytest.mark.parametrize(
    ("name", "content", "filename", "status", "words"),
    [
        ("bad name", b"1,2\n", "a.csv", 400, "must start with a letter"),
        ("digits", b"1,2\n", "a.csv", 400, "built in"),
        ("ok", b"1,2\n", "a.txt", 400, "not a CSV or NPZ"),
        ("ok", b"", "a.csv", 400, "is empty"),
    ],
)
def test_bad_uploads_are_refused_at_once_and_leave_nothing(
    app, client, name, content, filename, status, words
):
    response = upload(client, name, content, filename)
    assert response.status_code == status
    assert words in response.get_json()["reason"]
    assert records.list_datasets(db.session) == [] and leftovers(app) == []


def test_a_duplicate_name_is_refused(app, client):
    assert upload(client, "twice", csv_bytes()).status_code == 202
    response = upload(client, "twice", csv_bytes())
    assert response.status_code == 400 and "exists already" in response.get_json()["reason"]
    assert response.get_json()["errors"] == {"name": response.get_json()["reason"]}
    assert [d.name for d in records.list_datasets(db.session)] == ["twice"]


def test_an_upload_over_the_cap_is_refused_before_it_is_read(app, client):
    app.config["MAX_DATASET_MB"] = 1
    part = b'Content-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\n'
    body = b"--x\r\n" + part + b"1,2\n" * 400_000 + b"\r\n--x--\r\n"  # (in memory)
    response = client.post("/api/datasets", data=body, headers=HEADERS,
                           content_type="multipart/form-data; boundary=x")  # fmt: skip
    assert response.status_code == 413
    assert records.list_datasets(db.session) == [] and leftovers(app) == []


def test_the_upload_api_needs_what_a_cross_site_form_cannot_send(client):
    data = {"name": "x", "label_column": "0"}  # (a file part would be spooled unread)
    response = client.post("/api/datasets", data=data, content_type="multipart/form-data")
    assert response.status_code == 415
    assert "X-Requested-With" in response.get_json()["reason"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"a,b,label\n1,2,x\n3,oops,y\n", "row 3"),
        (b"1,2,x\n1,2\n", "row 2"),
        (b"1,2,x\n3,4,x\n5,6,x\n", "at least 2 classes"),
    ],
)
def test_a_bad_file_ends_failed_with_its_reason_and_no_files(app, client, content, reason):
    assert upload(client, "broken", content).status_code == 202
    record = ready(app, "broken")
    assert record.status == "failed" and reason in record.error
    assert leftovers(app) == []
    shown = client.get("/api/datasets/broken").get_json()
    assert shown["status"] == "failed" and reason in shown["error"]


def test_a_search_is_refused_until_its_data_set_is_ready(app, client):
    def refusal(name: str) -> str:
        response = client.post("/api/searches", json={"dataset": name})
        assert response.status_code == 400
        return response.get_json()["errors"]["dataset"]

    assert refusal("mnist") == (
        "mnist is not downloaded: press Fetch on the Datasets page or run "
        "flask --app app lrsearch datasets fetch mnist"
    )
    assert "unknown data set 'mine'" in refusal("mine")
    upload(client, "mine", csv_bytes())
    assert "still being imported" in refusal("mine")
    records.fail_dataset(db.session, dataset("mine").id, "it broke")
    assert "mine failed (it broke): remove it" in refusal("mine")
    assert db.session.query(Search).count() == 0


def test_hidden_sizes_or_agreeing_layers(app, client):
    def start(**settings):
        return client.post("/api/searches", json={"trials": 1, "epochs": 1, **settings})

    assert start(hidden=[16, 8]).get_json()["layers"] == [64, 16, 8, 10]
    assert start(hidden=[]).get_json()["layers"] == [64, 10]
    assert start(layers=[64, 32, 10]).get_json()["hidden"] == [32]
    refused = start(layers=[784, 32, 10]).get_json()["errors"]
    assert refused == {"layers": "the first size must be the dataset's 64 input features"}
    assert start(layers=[64, 32, 10], hidden=[16]).get_json()["hidden"] == [32]  # layers win
    refused = start(hidden=[0]).get_json()["errors"]
    assert refused == {"hidden": "hidden sizes must be between 1 and 4096"}


def test_a_data_set_in_use_is_not_removed(app, client):
    upload(client, "busy", csv_bytes())
    assert ready(app, "busy").status == "ready"
    started = client.post("/api/searches", json={"dataset": "busy", "trials": 1, "epochs": 1})
    assert started.status_code == 201
    refused = client.delete("/api/datasets/busy")
    assert refused.status_code == 409 and "queued or running" in refused.get_json()["reason"]
    client.post(f"/api/searches/{started.get_json()['id']}/cancel", json={})
    assert client.delete("/api/datasets/busy").status_code == 200
    assert dataset("busy") is None and leftovers(app) == []
    assert client.delete("/api/datasets/busy").status_code == 404


def test_a_job_whose_runner_died_is_failed_as_interrupted(app, client):
    upload(client, "orphan", csv_bytes())
    [taken] = records.take_dataset_jobs(db.session, 5)
    assert records.take_dataset_jobs(db.session, 5) == []  # taken once
    db.session.execute(
        Dataset.__table__.update().values(heartbeat_at=dataset("orphan").created_at.replace(year=2000))
    )  # fmt: skip
    db.session.commit()
    with RunnerThread(app, workers=1):
        wait_for(lambda: dataset("orphan").status == "failed")
    assert "interrupted" in dataset("orphan").error


def test_two_workers_map_one_copy_of_a_data_set(app, client):
    upload(client, "shared", csv_bytes(rows=300))
    assert ready(app, "shared").status == "ready"
    from lrsearch.execution.local import ProcessSlots

    slots = ProcessSlots(2)
    try:
        futures = [slots.submit(mapped_files, "shared", app.config["DATA_DIR"]) for _ in range(2)]
        found = [f.result(timeout=60) for f in futures]
    finally:
        slots.shutdown()
    pids = {pid for pid, _ in found}
    assert len(pids) == 2  # two processes ...
    files = [set(paths) for _, paths in found]
    assert files[0] == files[1] and len(files[0]) == 4  # ... mapping the same four files
    assert all("datasets/cache/stored-shared-" in path for path in files[0])
    copies = {Path(p).parent for p in files[0]}
    assert len(copies) == 1


def test_the_datasets_page_lists_every_data_set(app, client):
    upload(client, "listed", csv_bytes())
    html = client.get("/datasets").get_data(as_text=True)
    rows = json.loads(
        __import__("html").unescape(html.split('data-datasets="', 1)[1].split('"', 1)[0])
    )
    assert [r["name"] for r in rows] == ["digits", "synthetic", "listed", "mnist", "fashion-mnist"]
    assert {r["status"] for r in rows if r["name"] in ("mnist", "fashion-mnist")} == {
        "not downloaded"
    }


def test_fetch_through_the_api_then_search_on_it(app, client, mirror):
    refused = client.post("/api/datasets/mnist/fetch", data="{}")
    assert refused.status_code == 415
    response = client.post("/api/datasets/mnist/fetch", json={})
    assert response.status_code == 202 and response.get_json()["status"] == "fetching"
    assert client.post("/api/datasets/mnist/fetch", json={}).status_code == 409
    record = ready(app, "mnist")
    assert record.status == "ready", record.error
    assert (record.samples, record.val_samples, record.features, record.classes) == (
        120,
        20,
        784,
        10,
    )
    assert any(r.startswith("/missing/") for r in mirror.requests)  # tried, then the next
    assert client.post("/api/datasets/nothing/fetch", json={}).status_code == 404
    started = client.post("/api/searches", json={"dataset": "mnist", "hidden": [8], "trials": 1,
                                                 "epochs": 1})  # fmt: skip
    assert started.status_code == 201 and started.get_json()["layers"] == [784, 8, 10]


def test_a_fetch_from_no_good_mirror_fails_with_each_mirrors_reason(app, client, mirror):
    app.config["DATASET_MIRRORS"] = f"{mirror.url('missing')},{mirror.url('corrupt')}"
    client.post("/api/datasets/fashion-mnist/fetch", json={})
    record = ready(app, "fashion-mnist")
    assert record.status == "failed"
    assert "HTTP 404" in record.error and "checksum mismatch" in record.error
    assert not list(cache.datasets_root(app.config["DATA_DIR"]).rglob("*.part*"))
    retried = client.post("/api/datasets/fashion-mnist/fetch", json={})  # a failed one: again
    assert retried.status_code == 202


CSV_PIECES = st.sampled_from(["1", "-2.5", "x", "cat", "", "nan", "1e3", ",", ",", "\n", '"', ";"])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    content=st.one_of(st.binary(max_size=200), st.lists(CSV_PIECES, max_size=60).map("".join)),
    suffix=st.sampled_from([".csv", ".npz"]),
)
def test_any_upload_ends_ready_or_failed_and_nothing_is_half_written(app, client, content, suffix):
    """Never a 500; refused at once with nothing kept, or imported to ready (every array
    there) or failed (with a one-line reason and no file)."""
    body = content.encode() if isinstance(content, str) else content
    response = upload(client, "fuzzed", body, f"data{suffix}")
    assert response.status_code in (202, 400), response.get_data(as_text=True)
    data_dir = app.config["DATA_DIR"]
    if response.status_code == 202:
        record = dataset("fuzzed")
        options = catalog.runner_options(app.config)
        status = jobs.prepare_dataset(record.id, app.config["DATABASE_URL"], data_dir, options)
        record = dataset("fuzzed")
        assert record.status == status and status in ("ready", "failed")
        folder = cache.arrays_folder(data_dir, "fuzzed")
        if status == "ready":
            assert {"meta.json", "x.npy", "y.npy"} <= {p.name for p in folder.iterdir()}
            assert record.samples >= 2 * record.classes >= 4
        else:
            assert not folder.exists() and record.error and "\n" not in record.error
        assert client.delete("/api/datasets/fuzzed").status_code == 200
    assert records.list_datasets(db.session) == [] and leftovers(app) == []


def test_removing_a_data_set_added_from_a_file_keeps_the_file(app, cli, client, tmp_path):
    path = tmp_path / "mine.csv"
    path.write_bytes(csv_bytes())
    assert cli.invoke(args=["lrsearch", "datasets", "add", "mine", str(path)]).exit_code == 0
    assert client.delete("/api/datasets/mine").status_code == 200
    assert path.is_file() and leftovers(app) == []


def test_removing_a_data_set_leaves_another_whose_name_starts_alike(app, client):
    for name in ("iris", "iris-v2"):
        upload(client, name, csv_bytes(rows=30))
        assert ready(app, name).status == "ready"
        cache.load(name, app.config["DATA_DIR"], seed=0)  # its workers' copy
    assert client.delete("/api/datasets/iris").status_code == 200
    assert all("iris-v2" in path for path in leftovers(app))
    assert any(path.startswith("cache/stored-iris-v2-") for path in leftovers(app))


def test_a_data_set_removed_and_added_again_is_read_anew(app, client):
    upload(client, "again", csv_bytes(rows=30, features=4))
    ready(app, "again")
    first = cache.load("again", app.config["DATA_DIR"], seed=0)
    client.delete("/api/datasets/again")
    upload(client, "again", csv_bytes(rows=30, features=5))
    ready(app, "again")
    assert cache.load("again", app.config["DATA_DIR"], seed=0).n_features == 5 != first.n_features


def test_too_few_samples_for_a_validation_part_are_refused(app, client):
    content = b"".join(b"%d,%d\n" % (i, i % 10) for i in range(20))  # 2 a class: none held out
    upload(client, "tiny", content)
    record = ready(app, "tiny")
    assert record.status == "failed" and "leave none for validation" in record.error


def test_samples_take_a_whole_number_else_the_default(client):
    assert client.get("/api/datasets/digits/samples?per_class=x").status_code == 200  # default
    body = client.get("/api/datasets/digits/samples?per_class=2").get_json()
    assert body["shape"] == [8, 8] and [len(c["images"]) for c in body["classes"]] == [2] * 10
