"""Entry point for `flask --app app` and `gunicorn app:app`."""

import sys

from lrsearch import create_app
from lrsearch.execution import forkserver

# `flask --app app lrsearch run|runner` starts the workers' fork server before the app's
# imports, so that its own imports run beside them instead of after them.
forkserver.start_for_command(sys.argv)
app = create_app()
