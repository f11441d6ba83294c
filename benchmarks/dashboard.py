"""The dashboard at scale: JSON, polls, archives and page drawing at 200-5,000 trials.

Usage: python benchmarks/dashboard.py [--sizes 200 1000 5000] [--no-browser] [--live-seconds S]
                                     [--searches 2000]

Fills a fresh database with finished searches of N trials x 30 epochs (with log folders:
log.txt and a plot in each), then measures, per size: the search JSON the page loads
(/api/searches/<id>, cold = first request of a new process, and warm), the columnar epochs
JSON of every trial (/epochs?after=0, what the page fetches when asked to draw all: its
first 200,000 epochs where there are more) and of the curves the page draws first (the
best ten of a search over 20 trials), an incremental poll with nothing new (after the
newest epoch, as the page polls once it has read them all), the archive download, the
time until the search page has drawn its charts in headless Chromium, and, with the
search made to run (its trials' last epochs landing, 20 trials a second), the share of
time the page's main thread is busy in long tasks as it polls and redraws.

With --searches N (0 to skip), a second database holds N searches of 4 trials each: the
searches list's first page as JSON (/api/searches, cold and warm), a filtered page, and
the list page drawn in Chromium (its 50 rows and their status bars).
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine

from lrsearch import artifacts
from lrsearch.testing import CHROMIUM, CHROMIUM_ARGS, server

EPOCHS = 30
ROOT = Path(__file__).resolve().parent.parent

FILL = r"""
import math, sys, time
from datetime import timedelta
sys.path.insert(0, {root!r})
from lrsearch import create_app, artifacts
from lrsearch.extensions import db
from lrsearch.models import Epoch, Search, Trial, utcnow
from lrsearch.search.sampler import sample_learning_rates, trial_seed
from flask_migrate import upgrade
app = create_app({{"DATA_DIR": {data_dir!r}, "SECRET_KEY": "bench", "MAX_TRIALS": 100000}})
with app.app_context():
    upgrade(directory=app.config["MIGRATIONS_DIR"])
    for n in {sizes!r}:
        search = Search(name=f"{{n}} trials", dataset="digits", lr_min=1e-5, lr_max=1e-1,
                        sampler="random", n_trials=n, epochs={epochs}, batch_size=64,
                        beta1=0.9, beta2=0.999, workers=2, seed=0, status="completed",
                        started_at=utcnow(), finished_at=utcnow())
        search.layers = [64, 128, 10]
        db.session.add(search)
        db.session.commit()
        rates = sample_learning_rates(1e-5, 1e-1, n, seed=n)
        finished = utcnow() - timedelta(hours=1)  # a search that ended an hour ago
        trials = [dict(search_id=search.id, index=i, lr=lr, seed=trial_seed(0, i),
                       status="completed" if i % 50 else "diverged", attempt=1,
                       epochs_done={epochs}, updated_at=finished, created_at=finished,
                       crashes=0, interruptions=0, seconds=0.3, plot_pending=False)
                  for i, lr in enumerate(rates)]
        db.session.execute(Trial.__table__.insert(), trials)
        ids = db.session.execute(db.select(Trial.id, Trial.lr, Trial.index)
                                 .where(Trial.search_id == search.id)).all()
        rows, summaries = [], []
        for tid, lr, index in ids:
            skill = 1 - math.exp(-lr * 3000)
            history = []
            for e in range(1, {epochs} + 1):
                s = skill * (1 - math.exp(-e / 5))
                row = dict(trial_id=tid, attempt=1, epoch=e, loss=2.3 * (1 - s) + 0.05,
                           acc_train=0.1 + 0.89 * s, val_loss=2.3 * (1 - s) + 0.1,
                           acc_val=0.1 + 0.85 * s, seconds=0.01, created_at=utcnow())
                rows.append(row)
                history.append(row)
            last = history[-1]
            summaries.append(dict(id=tid, best_val_acc=last["acc_val"], best_epoch={epochs},
                                  min_val_loss=last["val_loss"], final_loss=last["loss"],
                                  final_acc_train=last["acc_train"],
                                  final_val_loss=last["val_loss"], final_val_acc=last["acc_val"],
                                  updated_at=finished))
            folder = artifacts.trial_folder({data_dir!r}, search.id, index, lr)
            folder.mkdir(parents=True)
            (folder / "log.txt").write_text("".join(
                artifacts.log_line(r["epoch"], {epochs}, r["loss"], r["acc_train"],
                                   r["val_loss"], r["acc_val"]) + "\n" for r in history))
            (folder / artifacts.PLOT_NAME).write_bytes(open({plot!r}, "rb").read())
        db.session.execute(Epoch.__table__.insert(), rows)
        db.session.execute(db.update(Trial), summaries)
        db.session.commit()
        print(search.id, n, flush=True)
"""

TIMINGS = r"""
import sys, time, json
sys.path.insert(0, {root!r})
from lrsearch import create_app
app = create_app({{"DATA_DIR": {data_dir!r}, "SECRET_KEY": "bench"}})
client = app.test_client()
sid = {sid}
def timed(url, stream=False):
    started = time.perf_counter()
    response = client.get(url)
    size = len(response.get_data()) if not stream else sum(len(c) for c in response.response)
    assert response.status_code == 200, (url, response.status_code)
    return time.perf_counter() - started, size, response
cold, size, r = timed(f"/api/searches/{{sid}}")
warm, _, r = timed(f"/api/searches/{{sid}}")
server_time = r.get_json()["server_time"]
epochs, epochs_size, r = timed(f"/api/searches/{{sid}}/epochs?after=0")
last = r.get_json()["last_id"]
while not r.get_json()["complete"]:  # as the page does: on until the newest, then polls
    r = client.get(f"/api/searches/{{sid}}/epochs?after={{last}}")
    last = r.get_json()["last_id"]
from lrsearch.extensions import db
from lrsearch.models import Search
from lrsearch.web.pages import first_curves
with app.app_context():
    drawn = first_curves(db.session.get(Search, sid))[1]
only = "" if drawn is None else "&trials=" + ",".join(map(str, drawn))
first, first_size, _ = timed(f"/api/searches/{{sid}}/epochs?after=0{{only}}")
polls = [timed(f"/api/searches/{{sid}}/poll?after={{last}}&since={{server_time}}")[0]
         for _ in range(20)]
polls.sort()
archive, archive_size, _ = timed(f"/searches/{{sid}}/archive.zip", stream=True)
print(json.dumps(dict(cold=cold, warm=warm, size=size, epochs=epochs, epochs_size=epochs_size,
                      first=first, first_size=first_size, poll=polls[10], archive=archive,
                      archive_size=archive_size)))
"""


def sample_plot(folder: Path) -> Path:
    """One real plot, copied into every trial folder."""
    path = folder / "sample.png"
    artifacts.draw_plot(
        path,
        "lr=0.001",
        [
            {
                "epoch": e,
                "loss": 1 / e,
                "val_loss": 1.1 / e,
                "acc_train": 1 - 1 / e,
                "acc_val": 1 - 1.2 / e,
            }
            for e in range(1, EPOCHS + 1)
        ],
    )
    return path


DRAWN = """() => { const c = document.getElementById('chart-acc');
                   const rows = document.querySelectorAll('#ranking tbody tr').length;
                   return c && c.data && c.data.length > 0 && c._fullLayout && rows >= 1; }"""


def page_drawn_seconds(base: str, search_id: int, warm_id: int) -> float:
    """Seconds from navigation until the accuracy chart and the ranking are drawn."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        # A returning user: plotly.js (4.6 MB) and the page's scripts are in the browser's
        # cache and the server's workers are warm; the search's own data is not cached.
        page.goto(f"{base}/searches/{warm_id}")
        page.wait_for_load_state("networkidle")
        page.goto(f"{base}/")
        started = time.perf_counter()
        page.goto(f"{base}/searches/{search_id}")
        page.wait_for_function(DRAWN, timeout=600_000)
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
        elapsed = time.perf_counter() - started
        browser.close()
    return elapsed


LIVE_SECONDS = 15.0
LIVE_EVERY = 0.05  # one trial's last epoch lands this often: 20 trials' rows change a second


def live_busy_share(
    base: str, search_id: int, database: Path, seconds: float = LIVE_SECONDS
) -> float:
    """The share of time the page's main thread spends in long tasks (over 50 ms) while the
    search runs: its trials' last epochs land one by one, each with a new best accuracy, as
    the page polls and redraws. Turns the finished search into a running one first."""
    import random
    import sqlite3
    import threading

    from playwright.sync_api import sync_playwright

    from lrsearch.models import utcnow

    def now() -> str:  # as SQLAlchemy stores a time in SQLite
        return utcnow().isoformat(" ", timespec="microseconds")

    with sqlite3.connect(database) as db:
        db.execute("update search set status = 'running' where id = ?", (search_id,))
        db.execute(
            "update trial set status = 'running', epochs_done = ? where search_id = ?",
            (EPOCHS - 1, search_id),
        )
        trial_ids = [
            r[0] for r in db.execute("select id from trial where search_id = ?", (search_id,))
        ]
        db.execute(
            f"delete from epoch where epoch = ? and trial_id in ({','.join('?' * len(trial_ids))})",
            (EPOCHS, *trial_ids),
        )
    stop = threading.Event()

    def finish_trials() -> None:
        rnd = random.Random(0)
        rnd.shuffle(trial_ids)
        with sqlite3.connect(database) as db:
            while trial_ids and not stop.wait(LIVE_EVERY):
                trial_id = trial_ids.pop()
                db.execute(
                    "insert into epoch (trial_id, attempt, epoch, loss, acc_train, val_loss,"
                    " acc_val, seconds, created_at) values (?, 1, ?, 0.5, 0.9, 0.5, 0.9, 0.01, ?)",
                    (trial_id, EPOCHS, now()),
                )
                db.execute(
                    "update trial set epochs_done = ?, best_val_acc = ?, updated_at = ?"
                    " where id = ?",
                    (EPOCHS, 0.5 + 0.45 * rnd.random(), now(), trial_id),
                )
                db.commit()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.add_init_script(
            """window.__busy = 0;
               new PerformanceObserver((list) => {
                 for (const task of list.getEntries()) window.__busy += task.duration;
               }).observe({ type: "longtask", buffered: true });"""
        )
        page.goto(f"{base}/searches/{search_id}")
        page.wait_for_function(DRAWN, timeout=600_000)
        page.wait_for_timeout(2000)
        writer = threading.Thread(target=finish_trials)
        writer.start()
        busy, started = page.evaluate("window.__busy"), time.perf_counter()
        time.sleep(seconds)
        busy = page.evaluate("window.__busy") - busy
        elapsed = time.perf_counter() - started
        stop.set()
        writer.join()
        browser.close()
    return busy / 1000 / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 5000])
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--live-seconds", type=float, default=LIVE_SECONDS)
    parser.add_argument("--searches", type=int, default=2000, help="the list case (0: skip)")
    args = parser.parse_args()
    print(f"# dashboard on {machine()}; {EPOCHS} epochs per trial")
    with tempfile.TemporaryDirectory(prefix="lrsearch-dash-") as data_dir:
        plot = sample_plot(Path(data_dir))
        started = time.perf_counter()
        filled = subprocess.run(
            [
                sys.executable,
                "-c",
                FILL.format(
                    root=str(ROOT),
                    data_dir=data_dir,
                    sizes=[1, *args.sizes],
                    epochs=EPOCHS,
                    plot=str(plot),
                ),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        ids = dict(zip(map(int, filled[1::2]), map(int, filled[0::2]), strict=True))
        print(f"filled {sum(args.sizes)} trials in {time.perf_counter() - started:.1f} s")
        print(
            f"{'trials':>6} {'JSON cold s':>11} {'warm s':>7} {'KiB':>6} {'epochs s':>8} "
            f"{'KiB':>7} {'drawn first s':>13} {'KiB':>5} {'poll ms':>7} {'archive s':>9} "
            f"{'MiB':>5} {'page drawn s':>12} {'live busy':>9}"
        )
        results = {}
        for n in args.sizes:
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    TIMINGS.format(root=str(ROOT), data_dir=data_dir, sid=ids[n]),
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            results[n] = __import__("json").loads(out)
        drawn = {n: math.nan for n in args.sizes}
        busy = {n: math.nan for n in args.sizes}
        if not args.no_browser and Path(CHROMIUM).exists():
            with server(data_dir, web_workers=2, workers=1) as (host, port, _):
                base = f"http://{host}:{port}"
                for n in args.sizes:
                    drawn[n] = page_drawn_seconds(base, ids[n], ids[1])
                database = Path(data_dir) / "lrsearch.sqlite3"
                for n in args.sizes:  # last: each search is left running
                    busy[n] = live_busy_share(base, ids[n], database, args.live_seconds)
        for n in args.sizes:
            r = results[n]
            print(
                f"{n:>6} {r['cold']:>11.3f} {r['warm']:>7.3f} {r['size'] / 1024:>6.0f} "
                f"{r['epochs']:>8.3f} {r['epochs_size'] / 1024:>7.0f} {r['first']:>13.3f} "
                f"{r['first_size'] / 1024:>5.0f} {r['poll'] * 1000:>7.1f} "
                f"{r['archive']:>9.2f} {r['archive_size'] / 2**20:>5.1f} {drawn[n]:>12.2f} "
                f"{busy[n]:>9.0%}"
            )
    if args.searches:
        list_case(args.searches, not args.no_browser)


FILL_SEARCHES = r"""
import sys
sys.path.insert(0, {root!r})
from lrsearch import create_app
from lrsearch.extensions import db
from lrsearch.models import Search, Trial, utcnow
from flask_migrate import upgrade
app = create_app({{"DATA_DIR": {data_dir!r}, "SECRET_KEY": "bench"}})
with app.app_context():
    upgrade(directory=app.config["MIGRATIONS_DIR"])
    now = utcnow()
    searches = [dict(name=f"search {{i}}", dataset="digits" if i % 3 else "synthetic",
                     layers="[64, 128, 10]", lr_min=1e-4, lr_max=1e-2, sampler="random",
                     n_trials=4, epochs=20, batch_size=64, beta1=0.9, beta2=0.999, eps=1e-8,
                     workers=2, seed=i, status="completed" if i % 7 else "failed",
                     cancel_requested=False, created_at=now, started_at=now, finished_at=now)
                for i in range({n})]
    db.session.execute(Search.__table__.insert(), searches)
    ids = db.session.scalars(db.select(Search.id)).all()
    db.session.execute(Trial.__table__.insert(), [
        dict(search_id=sid, index=k, lr=10 ** (-4 + k / 2), seed=k, status="completed",
             attempt=1, crashes=0, interruptions=0, epochs_done=20, best_val_acc=0.9 + k / 100,
             best_epoch=20, final_acc_train=0.95, final_val_acc=0.9, seconds=1.0,
             plot_pending=False, cancel_requested=False, created_at=now, updated_at=now)
        for sid in ids for k in range(4)])
    db.session.commit()
"""

LIST_TIMINGS = r"""
import sys, time, json
sys.path.insert(0, {root!r})
from lrsearch import create_app
app = create_app({{"DATA_DIR": {data_dir!r}, "SECRET_KEY": "bench"}})
client = app.test_client()
def timed(url):
    started = time.perf_counter()
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return time.perf_counter() - started, len(response.data)
cold, size = timed("/api/searches")
warm = min(timed("/api/searches")[0] for _ in range(5))
filtered = min(timed("/api/searches?dataset=synthetic&status=failed&name=1")[0] for _ in range(5))
html = min(timed("/")[0] for _ in range(5))
print(json.dumps(dict(cold=cold, warm=warm, size=size, filtered=filtered, html=html)))
"""


def list_case(n: int, browser: bool) -> None:
    """The searches list with n searches: JSON, a filtered page, the page drawn."""
    import json

    with tempfile.TemporaryDirectory(prefix="lrsearch-list-") as data_dir:
        fill = FILL_SEARCHES.format(root=str(ROOT), data_dir=data_dir, n=n)
        subprocess.run([sys.executable, "-c", fill], check=True, capture_output=True)
        out = subprocess.run(
            [sys.executable, "-c", LIST_TIMINGS.format(root=str(ROOT), data_dir=data_dir)],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        r = json.loads(out)
        drawn = math.nan
        if browser and Path(CHROMIUM).exists():
            with server(data_dir, web_workers=2, workers=1) as (host, port, _):
                drawn = list_drawn_seconds(f"http://{host}:{port}")
        print(f"\n{n} searches: list JSON cold {r['cold']:.3f} s, warm {r['warm']:.3f} s "
              f"({r['size'] / 1024:.0f} KiB, 50 a page); filtered {r['filtered']:.3f} s; "
              f"page HTML {r['html']:.3f} s; page drawn {drawn:.2f} s")  # fmt: skip


def list_drawn_seconds(base: str) -> float:
    """Seconds from navigation until the list's 50 rows and their status bars are drawn."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{base}/searches/new")  # scripts and styles cached, as a returning user
        started = time.perf_counter()
        page.goto(f"{base}/")
        page.wait_for_function(
            "() => document.querySelectorAll('#searches .status-bar .part').length >= 50"
        )
        elapsed = time.perf_counter() - started
        browser.close()
    return elapsed


if __name__ == "__main__":
    main()
