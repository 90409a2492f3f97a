"""Durable files: what the state file, the run directories and unpacked archives share."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in `directory` survive a power cut. A file system that
    cannot sync a directory (EINVAL) is taken at its word; any other failure is raised."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)
