"""Filtering at the source host: the archive reader and layer filter run where the engine is.

The Engine API cannot export single layers, so over ssh a pull would move the whole export.
Instead `run.start` opens an exec channel on the ssh connection the source engine already
uses, starts the host's own `python3` with a tiny bootstrap (`pack.BOOTSTRAP`), and sends it
the formats/ folder (`pack.program`, read from the installed package at run time, so the host
runs the very same code; formats/agent.py is its main). The agent exports the images from the
host's engine socket, drops the layers the destination holds, writes the archive in the
destination's format, compresses it and streams it back in frames (formats/agent.py describes
them); `run.Relay` hands them to the destination's load. Nothing is installed or written on
the host.
"""
