"""Where an export goes, ``<output_dir>/<experiment>/round_NN``, and how it gets there whole:
staged beside it, moved into place in one rename, the staging of killed exports cleared away.

No TensorFlow: a pipeline checks the destination before TensorFlow starts.

>>> export_dir("saved_models", ticket)  # doctest: +SKIP
PosixPath('saved_models/mine/round_05')
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from pathlib import Path

from lth_tf import io
from lth_tf.errors import LthError
from lth_tf.export.ticket import Ticket

REPORT_FILE = "export.json"
# Inside a staging folder: the export it replaces, until the new one is in place.
PREVIOUS = "previous"


def export_dir(output_dir: str | Path, ticket: Ticket) -> Path:
    """``<output_dir>/<experiment>/round_NN``."""
    return Path(output_dir) / ticket.name / f"round_{ticket.round:02d}"


def check_replaceable(destination: Path, ticket: Ticket) -> None:
    """Refuses to replace an export of another experiment of the same name (every sweep names
    its members ``rewind0it-seed0``, ...): its ``export.json`` names another experiment id, or,
    written before ids, another directory. A moved experiment keeps its id.

    Nor does it replace a folder that is no export: an experiment's own round (an
    ``--output_dir`` that holds the experiment), or anything else of the user's.
    """
    experiment = io.experiment_around(destination.parent)
    if experiment is not None:
        raise LthError(
            f"{destination} is inside the experiment {experiment}, not an export folder: "
            f"exports go to <output_dir>/{ticket.name}/round_NN; choose an --output_dir outside "
            "every experiment (saved_models by default)"
        )
    if destination.is_symlink() or (destination.exists() and not destination.is_dir()):
        raise LthError(
            f"{destination} is a {'link' if destination.is_symlink() else 'file'}, where the "
            f"export's folder goes; choose another --output_dir, or move it away"
        )
    if destination.is_dir() and not (destination / REPORT_FILE).exists():
        if any(destination.iterdir()):
            raise LthError(
                f"{destination} exists and holds no export ({REPORT_FILE}); choose another "
                f"--output_dir, or move {destination} away to export there"
            )
    try:
        earlier = json.loads((destination / REPORT_FILE).read_text())
        theirs = (earlier.get("experiment_id"), earlier.get("experiment"))
    except (OSError, ValueError, AttributeError):
        return  # no earlier export, or one that is not whole: replaced
    mine = (ticket.experiment.identity, str(ticket.experiment.root.resolve()))
    same = theirs[0] == mine[0] if theirs[0] and mine[0] else theirs[1] == mine[1]
    if not same:
        raise LthError(
            f"{destination} holds the export of another experiment ({theirs[1]}); choose "
            f"another --output_dir, or delete {destination} to replace it"
        )


def staging_prefix(destination: Path) -> str:
    """The name prefix of an export's staging folder beside ``destination``:
    ``.round_NN.<host>_<pid>.``. The host and process tell a killed export's leftovers from a
    live one, also where several machines export into one shared folder."""
    return f".{destination.name}.{_host()}_{os.getpid()}."


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"


def remove_stale_staging(destination: Path) -> list[Path]:
    """Deletes the staging folders (``.round_NN.<host>_<pid>.<random>``) that exports of the
    experiment's rounds (beside ``destination``) on this machine left when they were killed:
    those whose process no longer runs. One killed between its two renames held the export it
    was replacing: that goes back in place first, where nothing took it.

    >>> remove_stale_staging(Path("saved_models/e/round_02"))  # doctest: +SKIP
    [PosixPath('saved_models/e/.round_01.node1_4242.k3j2')]
    """
    removed = []
    for folder in sorted(destination.parent.glob(".round_*.*.*")):
        round_name, owner = folder.name.split(".")[1:3]
        host, _, pid = owner.rpartition("_")  # written before hosts were named: "<pid>"
        mine = host in ("", _host())
        if not (folder.is_dir() and mine and pid.isdigit()) or _process_runs(int(pid)):
            continue
        previous, place = folder / PREVIOUS, destination.parent / round_name
        if previous.is_dir() and not place.exists():
            previous.rename(place)
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it runs
        return True
    return True


def move_into_place(source: Path, destination: Path, trash: Path) -> None:
    """Replaces ``destination`` with ``source`` (an earlier export is moved to ``trash``). A
    stop between the two renames puts the earlier export back (``trash`` is inside the
    staging folder its caller's cleanup removes)."""
    try:
        if destination.exists():
            destination.rename(trash)
        source.rename(destination)
    except BaseException:
        if trash.exists() and not destination.exists():
            trash.rename(destination)
        raise
    shutil.rmtree(trash, ignore_errors=True)
