"""Filtering at the source host: the archive reader and layer filter run where the engine is.

The Engine API cannot export single layers, so over ssh a pull would move the whole export.
Instead `run` opens an exec channel on the ssh connection the source engine already uses,
starts the host's own `python3` with a tiny bootstrap (`pack.BOOTSTRAP`), and sends it this
package's modules (`pack.program`: archive.py, tarstream.py, errors.py and `agent.py`, read
from the installed package at run time, so the host runs the very same code). The agent
exports the images from the host's engine socket, drops the layers the destination holds,
writes the archive in the destination's format, compresses it and streams it back in frames
(`agent.py` describes them). Nothing is installed or written on the host.

This module travels too: it must stay importable on Python 3.8.
"""

from __future__ import annotations

from enum import Enum


class RemoteFilter(str, Enum):
    AUTO = "auto"  # filter at the source host when it is reached over ssh and has python3 >= 3.8
    NEVER = "never"  # always the plain export stream
