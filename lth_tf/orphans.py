"""What a killed run leaves running, ended: a local Ray's agents outlive a sweep killed with
``kill -9`` (they are not its children's children any more, and nothing tells them).

Every process a run starts inherits ``$LTH_TF_RUN_TEMP_DIR`` (:mod:`lth_tf.startup`), the run's
own temporary folder; once the run is gone, the processes of this user whose environment names
that folder are what it left. They are ended by a watchdog the run starts (it sees the run end
however it ends: the pipe to it closes) and, failing that, by the next run that tidies the
folder. Only the standard library: the watchdog runs this file as a script, without
TensorFlow or the package.

>>> start_watchdog(Path("/tmp/lth_tf-4242-k3j5x9ab"))  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

RUN_TEMP_ENV = "LTH_TF_RUN_TEMP_DIR"
# The write end of each watchdog's pipe: open for this process's whole life, closed by the
# kernel when it ends.
_watched: list[int] = []


def end_processes_of(folder: str | os.PathLike) -> list[int]:
    """Kills this user's processes (not this one) whose environment names ``folder`` as their
    run's temporary folder, or that hold a file in it open; returns their pids. Call it only
    once that run is gone."""
    marker = f"{RUN_TEMP_ENV}={folder}".encode()
    inside = f"{os.path.abspath(folder)}/"
    ended = []
    try:
        entries = list(os.scandir("/proc"))
    except OSError:
        return ended  # not Linux: nothing to look at
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        if marker in _environment(entry.path) or _has_open_file_in(entry.path, inside):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                ended.append(int(entry.name))
            except OSError:
                pass
    return ended


def _environment(process: str) -> list[bytes]:
    # Another user's processes cannot be read: they are not ours to end.
    try:
        return Path(process, "environ").read_bytes().split(b"\0")
    except OSError:
        return []


def _has_open_file_in(process: str, inside: str) -> bool:
    """Ray's agents rename themselves over their environment (``ray::DashboardAgent``): what
    still ties them to the run is the log files they hold open in its folder."""
    try:
        descriptors = list(os.scandir(Path(process, "fd")))
    except OSError:
        return False
    for descriptor in descriptors:
        try:
            if os.readlink(descriptor.path).startswith(inside):
                return True
        except OSError:
            continue
    return False


def start_watchdog(folder: Path) -> None:
    """Starts a process that waits for this one to end, then ends what it left running and
    removes ``folder``. After a clean end it finds nothing left and exits."""
    read, write = os.pipe()  # both ends closed in exec'd children (non-inheritable)
    environment = {k: v for k, v in os.environ.items() if k != RUN_TEMP_ENV}
    try:
        subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(folder)],
            stdin=read,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=environment,
            start_new_session=True,  # a Ctrl-C in the terminal ends the run, not its watchdog
        )
    except OSError:
        os.close(write)
        return  # tidiness is not worth failing a run over: the next run tidies instead
    finally:
        os.close(read)
    _watched.append(write)


if __name__ == "__main__":
    sys.stdin.buffer.read()  # returns once the watched process has ended, however it ended
    end_processes_of(sys.argv[1])
    shutil.rmtree(sys.argv[1], ignore_errors=True)
