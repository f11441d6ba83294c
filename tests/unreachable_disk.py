"""A folder on a disk that can become unreachable for a while, as a network disk does.

`UnreachableDisk` mounts a FUSE passthrough of a real folder (mfusepy on libfuse; Debian's
`fuse3`) in a child process. While it is down, every operation through the mount fails at once,
on files already open as much as on new look-ups and opens, by default with ENOTCONN ("Transport
endpoint is not connected", as a network file system that lost its server), so that SQLite says
"disk I/O error" or "unable to open database file". (With EIO, SQLite takes a failed read for a
damaged file: "database disk image is malformed", a DatabaseError.) Once it is up again the same
file handles work. Nothing blocks while it is down, so a test of code that waits an outage out
cannot hang on the disk itself.

Running this file serves one mount until SIGTERM or the end of its parent: `python
tests/unreachable_disk.py SRC MOUNT FLAG`, unreachable while the file FLAG (outside the mount)
exists, with the error number that FLAG holds.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class Passthrough:
    """mfusepy operations mirroring the folder `root`, all failing while the file `flag` exists.

    Data files are opened with direct_io, so that every read and write reaches this process (and
    fails while down) rather than the kernel's page cache. SQLite's `-shm` file is the exception:
    it is shared memory that SQLite maps with MAP_SHARED, which needs the page cache, and the
    kernel pages it in and out behind SQLite's back, where a failure would be a SIGBUS or a lost
    page rather than an error, so I/O on an open `-shm` file goes on while down, as it would in
    local memory. POSIX locks are left to the kernel (no `lock` operation), which keeps them
    correct between the processes of this machine.
    """

    use_ns = True  # utimens in nanoseconds

    def __init__(self, root: str, flag: str) -> None:
        self.root = root
        self.flag = flag
        self.shared_memory: set[int] = set()  # the open `-shm` files

    def _reachable(self) -> None:
        try:
            with open(self.flag) as flag:
                error = int(flag.read())
        except FileNotFoundError:
            return
        raise OSError(error, os.strerror(error))

    def _real(self, path: str) -> str:
        self._reachable()
        return self.root + path

    def _io(self, fi) -> int:
        if fi.fh not in self.shared_memory:
            self._reachable()
        return fi.fh

    def _opened(self, path: str, fd: int, fi) -> int:
        fi.fh = fd
        if path.endswith("-shm"):
            fi.keep_cache = 1  # another open must not drop the pages mapped
            self.shared_memory.add(fd)
        else:
            fi.direct_io = 1
        return 0

    def getattr(self, path: str | None, fi=None) -> dict:
        st = os.fstat(self._io(fi)) if fi else os.lstat(self._real(path))
        keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_blocks", "st_ino")
        attrs = {key: getattr(st, key) for key in keys}
        attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
        return attrs

    def access(self, path: str, mode: int) -> None:
        if not os.access(self._real(path), mode):
            raise OSError(errno.EACCES, "access denied")

    def readdir(self, path: str, fh: int) -> list[str]:
        return [".", "..", *os.listdir(self._real(path))]

    def statfs(self, path: str) -> dict:
        st = os.statvfs(self._real(path))
        return {key: getattr(st, key) for key in dir(st) if key.startswith("f_")}

    def mkdir(self, path: str, mode: int) -> None:
        os.mkdir(self._real(path), mode)

    def rmdir(self, path: str) -> None:
        os.rmdir(self._real(path))

    def unlink(self, path: str) -> None:
        os.unlink(self._real(path))

    def rename(self, old: str, new: str) -> None:
        os.rename(self._real(old), self._real(new))

    def chmod(self, path: str, mode: int) -> None:
        os.chmod(self._real(path), mode)

    def chown(self, path: str, uid: int, gid: int) -> None:
        os.chown(self._real(path), uid, gid)

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> None:
        if times is None:
            os.utime(self._real(path))
        else:
            os.utime(self._real(path), ns=times)

    def truncate(self, path: str | None, length: int, fi=None) -> None:
        if fi:
            os.ftruncate(self._io(fi), length)
        else:
            os.truncate(self._real(path), length)

    def open(self, path: str, fi) -> int:
        # Without O_APPEND: pwrite would append whatever the offset the kernel asks for.
        return self._opened(path, os.open(self._real(path), fi.flags & ~os.O_APPEND), fi)

    def create(self, path: str, mode: int, fi) -> int:
        flags = (fi.flags & ~os.O_APPEND) | os.O_CREAT
        return self._opened(path, os.open(self._real(path), flags, mode), fi)

    def read(self, path: str | None, size: int, offset: int, fi) -> bytes:
        return os.pread(self._io(fi), size, offset)

    def write(self, path: str | None, data: bytes, offset: int, fi) -> int:
        return os.pwrite(self._io(fi), data, offset)

    def fsync(self, path: str | None, datasync: int, fi) -> None:
        (os.fdatasync if datasync else os.fsync)(self._io(fi))

    def flush(self, path: str | None, fi) -> None:
        self._io(fi)

    def release(self, path: str | None, fi) -> None:
        """Always closes: the kernel has forgotten the file whatever this answers."""
        self.shared_memory.discard(fi.fh)
        os.close(fi.fh)


class UnreachableDisk:
    """`with UnreachableDisk(tmp_path) as disk:` mounts the empty folder `disk.folder`, whose
    files are kept in `disk.real`; `disk.down()` makes it unreachable until `disk.up()`.

    Leaving the block stops the child (the mount goes with it) even if the test failed; files
    still open through the mount then fail with "Transport endpoint is not connected".
    """

    def __init__(self, base: Path, timeout: float = 10.0) -> None:
        self.base = Path(base).resolve()
        self.real = self.base / "real"
        self.folder = self.base / "disk"
        self.timeout = timeout
        self._flag = self.base / "down"
        self._log = self.base / "fuse.log"
        self._process: subprocess.Popen | None = None

    @staticmethod
    @functools.cache
    def available() -> str | None:
        """Why no disk can be mounted here, or None: a trial mount, once a session, says."""
        if importlib.util.find_spec("mfusepy") is None:
            return "mfusepy is not installed"
        if not os.path.exists("/dev/fuse"):
            return "/dev/fuse is missing"
        with tempfile.TemporaryDirectory() as base:
            try:
                with UnreachableDisk(Path(base)):
                    return None
            except RuntimeError as error:
                return str(error)

    def down(self, error: int = errno.ENOTCONN) -> None:
        """From now on every operation through the mount fails with `error`."""
        written = self._flag.with_suffix(".new")  # whole, never read half-written
        written.write_text(str(error))
        written.replace(self._flag)

    def up(self) -> None:
        self._flag.unlink(missing_ok=True)

    def __enter__(self) -> UnreachableDisk:
        self.real.mkdir(parents=True, exist_ok=True)
        self.folder.mkdir(exist_ok=True)
        self.up()
        command = [sys.executable, __file__, str(self.real), str(self.folder), str(self._flag)]
        # A log file, not a pipe: a full pipe nobody reads would block the disk.
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self.timeout
        while not self._mounted():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._stop()
                log = self._log.read_text().splitlines()
                said = [line for line in log if line and not line.startswith((" ", "Traceback"))]
                raise RuntimeError(f"FUSE mount failed ({self._log}): {'; '.join(said[-4:])}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self._stop()

    def _mounted(self) -> bool:
        """Read from the mount table: a stat of a broken mount point would fail."""
        with open("/proc/self/mountinfo") as table:
            return any(line.split()[4] == str(self.folder) for line in table)

    def _stop(self) -> None:
        self.up()
        if self._process is not None:
            self._process.terminate()  # libfuse leaves its loop and unmounts
            try:
                self._process.wait(self.timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._mounted():  # killed before it could unmount
            if shutil.which("fusermount3"):
                command = ["fusermount3", "-u", "-z", str(self.folder)]
            else:
                command = ["umount", "-l", str(self.folder)]
            subprocess.run(command, check=False, capture_output=True)


def main(root: str, mountpoint: str, flag: str) -> None:
    import mfusepy

    # SIGTERM (libfuse then unmounts) when the thread that started this process ends, even a test
    # killed before its cleanup.
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    try:
        mfusepy.FUSE(
            Passthrough(root, flag),
            mountpoint,
            raw_fi=True,  # open and create set direct_io per file
            foreground=True,
            fsname="unreachable-disk",
            hard_remove=True,  # unlink for real; open files go on by their handles
            attr_timeout=0,  # no stat answered from the kernel's cache while down
            entry_timeout=0,
        )
    except RuntimeError as error:
        if error.args != (8,):  # fuse_main's 8: its loop was ended, as SIGTERM ends it
            raise


if __name__ == "__main__":
    main(*sys.argv[1:])
