"""gunicorn settings: the web workers, and exactly one runner process beside them.

The runner is started by the master when the server starts (not at import, not per web
worker), supervised, and stopped when it stops; it dies with the master if that is killed.
"""

from __future__ import annotations

import os
import subprocess
import sys

bind = os.environ.get("LRSEARCH_BIND", "127.0.0.1:5000")
workers = int(os.environ.get("LRSEARCH_WEB_WORKERS", "2"))
threads = int(os.environ.get("LRSEARCH_WEB_THREADS", "4"))
worker_class = "gthread"
timeout = 60
graceful_timeout = 10
accesslog = os.environ.get("LRSEARCH_ACCESS_LOG") or None
proc_name = "lrsearch"

# The runner is supervised by the master (lrsearch.supervision): restarted whenever it exits,
# with backoff. The master holds the one Popen: gunicorn's reload (HUP) and web-worker
# restarts leave it alone, so there is never a second runner.


def on_starting(server) -> None:
    """Apply migrations, then start the one runner and its supervisor."""
    from lrsearch import supervision

    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "db", "upgrade"], check=True, cwd=here
    )
    runner = [sys.executable, "-m", "flask", "--app", "app", "lrsearch", "runner"]
    supervision.start(runner, here, server.log)


def on_exit(server) -> None:
    """Stop the supervisor, then the runner and, through it, its worker pool."""
    from lrsearch import supervision

    supervision.stop()
