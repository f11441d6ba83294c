"""Entry point for `flask --app app` and `gunicorn app:app`."""

import sys

from lrsearch import create_app, schema
from lrsearch.execution import forkserver

# `flask --app app lrsearch run|runner` starts the workers' fork server before the app's
# imports, so that its own imports run beside them instead of after them.
forkserver.start_for_command(sys.argv)
app = create_app()
# `flask --app app run` on a fresh data folder works: the embedded SQLite gets its schema
# now; another database must be migrated by `flask --app app db upgrade` (not refused).
if "db" not in sys.argv[1:4]:
    try:
        schema.bring_up_to_date(app)
    except schema.SchemaBehind as exc:
        sys.exit(f"lrsearch: {exc}")
