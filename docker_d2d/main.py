"""Entry point. Answers the Docker CLI's metadata probe before importing anything heavy:
the CLI runs it for every `docker` help and completion."""

from __future__ import annotations

import json
import sys

COMMANDS = {"copy", "push", "pull", "version", "completion"}
METADATA = {
    "SchemaVersion": "0.1.0",
    "Vendor": "docker-d2d",
    "ShortDescription": "Copy images between engines, sending only missing layers",
    "URL": "https://github.com/docker-d2d/docker-d2d",
}


def normalize_argv(argv: list[str]) -> list[str]:
    """Accept the original tool's form `docker-d2d -s SRC -d DST IMAGE...` as `copy ...`,
    and drop the plugin name the docker CLI passes first."""
    if argv[:1] == ["d2d"]:
        argv = argv[1:]
    first = next((a for a in argv if not a.startswith("-")), None)
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help") and first not in COMMANDS:
        return ["copy", *argv]
    return argv


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args == ["docker-cli-plugin-metadata"]:
        from . import __version__

        print(json.dumps({**METADATA, "Version": __version__}))
        return
    from .cli import app

    app(args=normalize_argv(args), prog_name="docker-d2d")


if __name__ == "__main__":
    main()
