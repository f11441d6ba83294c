"""A worker process's start and life, every OS-level step of it: one BLAS thread, batch
scheduling with a long time slice, death with the runner, Ctrl-C left to the runner, and
the loop that runs the calls sent down its pipe. (The trainer flushes subnormal floats
itself, while it trains: training/fpu.py.)
"""

from __future__ import annotations

import ctypes
import os
import pickle
import select
import signal
import struct
import threading
import time
from multiprocessing.connection import Connection

# How long a worker may run before the kernel switches to another ready one, when there
# are more workers than cores: each switch costs the incoming worker its caches (the
# weights, gradients and Adam moments). The default slice, a few ms, made 4 workers on 2
# cores measurably slower than 2 (benchmarks/pool_scaling.py).
TIME_SLICE_NS = 20_000_000
_SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}
_blas_limit = None  # keeps threadpoolctl's limit alive for the life of the process


def serve(connection: Connection, runner_pid: int) -> None:
    """A worker process's life (local.ProcessSlots): set up, then run each call that comes
    down the pipe, one at a time, and send back (True, its result) or (False, its error)."""
    init_worker(runner_pid)
    warm_up()
    while True:
        try:
            message = connection.recv_bytes()
        except EOFError:  # the runner closed its end
            return
        try:
            fn, args = pickle.loads(message)  # e.g. a function this process cannot import
            reply = (True, fn(*args))
        except BaseException as exc:  # the runner records it (a trial's crash)
            reply = (False, exc)
        try:
            connection.send(reply)
        except Exception as exc:  # a result or error that cannot be pickled
            error = f"{type(reply[1]).__name__}: {reply[1]} (not sent back: {exc})"
            connection.send((False, RuntimeError(error)))


def init_worker(runner_pid: int) -> None:
    """Per-process set-up: one BLAS thread, batch scheduling, and end with the runner.

    Ctrl-C in a terminal reaches the whole process group; the runner answers it and stops
    the workers, which ignore it (else an idle one prints a KeyboardInterrupt traceback).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    batch_scheduling()
    threading.Thread(
        target=_exit_with, args=(runner_pid,), name="runner-watch", daemon=True
    ).start()
    limit_blas()


def limit_blas() -> None:
    """One BLAS thread in this process, and in any forked from it (the fork server calls it).

    Inherited, the limit costs a new worker nothing; set, it costs each one a look through
    every loaded library (threadpoolctl).
    """
    global _blas_limit
    if _blas_limit is None:
        from threadpoolctl import threadpool_limits

        _blas_limit = threadpool_limits(1)


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send `sig` to this process when its parent dies, so it is no orphan."""
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the watch below still ends us
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def batch_scheduling(slice_ns: int = TIME_SLICE_NS) -> bool:
    """Run this process as a CPU-bound batch job: SCHED_BATCH, with a long time slice.

    SCHED_BATCH tells the kernel that the process is CPU-bound and not interactive; the
    slice (Linux 6.12 and later read sched_runtime as the fair scheduler's slice) keeps
    workers from trading the cores every few milliseconds when there are more of them than
    cores. The web server's latency under load did not change measurably either way
    (benchmarks/load.py); a runner started under `nice` keeps its nice value.
    Returns whether the kernel took both; where it refuses, SCHED_BATCH alone is set, and
    where that fails too, nothing changes. Kernels before 6.12 take the call but no slice.
    """
    number = _SYS_SCHED_SETATTR.get(os.uname().machine)
    if number is not None:
        try:
            nice = os.getpriority(os.PRIO_PROCESS, 0)
            # struct sched_attr (SCHED_ATTR_SIZE_VER1): size, policy, flags, nice,
            # priority, runtime, deadline, period, util_min, util_max
            attr = struct.pack("IIQiIQQQII", 56, os.SCHED_BATCH, 0, nice, 0, slice_ns, 0, 0, 0, 0)
            call = ctypes.CDLL(None, use_errno=True).syscall
            if call(ctypes.c_long(number), ctypes.c_long(0), attr, ctypes.c_long(0)) == 0:
                return True
        except (OSError, AttributeError):
            pass
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (OSError, AttributeError):
        pass
    return False


def _exit_with(pid: int) -> None:
    """End this process when process `pid` ends.

    A fork server's children are not the runner's: when the runner is killed they would
    live on (the fork server waits for them), so each watches the runner itself.
    """
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)
    except (OSError, AttributeError):  # no pidfd (old kernel): poll
        while os.path.exists(f"/proc/{pid}"):
            time.sleep(0.5)
        os._exit(1)
    select.select([handle], [], [])  # readable once the process has exited
    os._exit(1)


def warm_up() -> None:
    """Import what a trial will need (plotting included) while the process is idle.

    Workers forked from the fork server (see forkserver.PRELOAD) have all of it already.
    """
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401
