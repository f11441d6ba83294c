"""The fork server that worker processes fork from (local.ProcessSlots).

The fork server imports the workers' modules once (see preload.py), which takes a core
for longer than the command line takes to import the app. Started by the first worker,
it began only after those imports, with the other core idle meanwhile; so the commands
that run workers start it first (`app.py` calls `start_for_command`), and the two imports
share the machine's cores. For that reason this module imports only a little of the
standard library, and multiprocessing only when it starts the server.
"""

from __future__ import annotations

import os
import site
from collections.abc import Sequence
from pathlib import Path

# What the fork server imports once, so that every worker forked from it has it ready.
PRELOAD = ["lrsearch.execution.preload"]

# The `flask --app app lrsearch ...` commands that start worker processes.
COMMANDS_WITH_WORKERS = ("run", "runner")


def one_blas_thread_in_children() -> None:
    """Processes started from now on import NumPy with one BLAS thread (unless told more)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def prepare_fork_server() -> None:
    """Settings the fork server reads when it starts (it is started at most once a process)."""
    import multiprocessing

    one_blas_thread_in_children()
    multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD)
    fork_server_finds_the_package()


def start_fork_server() -> None:
    """Start the fork server now, if it is not running; its imports go on in the background.

    It starts with Ctrl-C ignored, as it ignores it anyway once its imports are done: a
    Ctrl-C during them (the first seconds of a command-line search) printed their
    KeyboardInterrupt traceback beside the command's own message. The workers forked from it
    ignore Ctrl-C too (process.init_worker); the runner stops them.
    """
    import signal
    import threading
    from multiprocessing import forkserver

    prepare_fork_server()
    if (
        threading.current_thread() is not threading.main_thread()  # may not change it
        or signal.getsignal(signal.SIGINT) is None  # a handler set outside Python: kept
    ):
        forkserver.ensure_running()
        return
    # Ignored here, then restored, so that the new process inherits "ignored" through its
    # exec (a Ctrl-C in these few milliseconds is lost).
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


def start_for_command(argv: Sequence[str]) -> bool:
    """Start the fork server now if `argv` is a command that will run workers; return whether.

    The command line `flask [options] lrsearch run|runner ...`: its app is imported before
    any of its commands' code runs, so argv is all there is to tell by.
    """
    args = list(argv[1:])
    for at, arg in enumerate(args[:-1]):
        if arg == "lrsearch" and args[at + 1] in COMMANDS_WITH_WORKERS:
            import multiprocessing

            if "forkserver" not in multiprocessing.get_all_start_methods():
                return False  # not on this platform: ProcessSlots will say so
            start_fork_server()
            return True
    return False


def fork_server_finds_the_package() -> None:
    """Let the fork server import this package, whatever folder the runner was started in.

    Before Python 3.12.8 and 3.13.1 the fork server ignores its parent's sys.path (CPython
    gh-117378): started outside the checkout, e.g. `flask --app ~/lrsearch/app.py` from
    another folder, it failed to import PRELOAD, silently, and each new worker paid the
    imports and the loops' compilation in its first trial, many times what a digits trial
    takes. It does read PYTHONPATH, which it inherits from the runner's environment (as
    would any process the runner started later); an installed package needs none of this.
    """
    root = str(Path(__file__).resolve().parents[2])
    installed = {*site.getsitepackages(), site.getusersitepackages()}
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in installed and root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root, *paths])
