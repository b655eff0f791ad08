"""Entry point for `docker-d2d` and for `docker d2d` (the Docker CLI plugin protocol).

Answers the CLI's metadata probe and completion requests before importing anything heavy:
the docker CLI runs the metadata probe for every `docker --help`, `docker info` and completion.
"""

from __future__ import annotations

import os
import sys

COMMANDS = {"copy", "push", "pull", "version", "completion", "plugin"}
ROOT_OPTIONS = {"-h", "--help", "--version", "--install-completion", "--show-completion"}
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
    if argv and argv[0].startswith("-") and argv[0].split("=")[0] not in ROOT_OPTIONS and first not in COMMANDS:
        return ["copy", *argv]
    return argv


def watch_plugin_socket() -> None:
    """Docker CLI v25+ hands plugins a socket; it closes it when the user presses Ctrl-C
    (and docker's stdout is not a TTY, so no SIGINT reaches us). Turn that EOF into SIGINT."""
    path = os.environ.get("DOCKER_CLI_PLUGIN_SOCKET")
    if not path:
        return
    import signal
    import socket
    import threading

    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect("\0" + path[1:] if path.startswith("@") else path)
    except OSError:
        return

    def wait() -> None:
        try:
            while conn.recv(4096):
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=wait, name="d2d-plugin-socket", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    # httpx imports its own command line (click, pygments, rich's syntax and progress: ~50 ms)
    # whenever those happen to be installed, and does without it when the import fails. We never
    # run httpx's command line. (None in sys.modules is how Python blocks an import; typeshed
    # does not know.)
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    args = sys.argv[1:] if argv is None else argv
    if args == ["docker-cli-plugin-metadata"]:
        import json

        from . import __version__

        print(json.dumps({**METADATA, "Version": __version__}))
        return
    if args[:1] in (["__complete"], ["__completeNoDesc"]):
        from .app.completion import cobra_complete

        print(cobra_complete(args[0], args[1:]))
        return

    from .app.options import split_global_flags
    from .errors import UsageError

    try:
        opts, rest = split_global_flags(args)
        if rest[:2] == ["help", "d2d"]:  # `docker help d2d`
            rest = ["d2d", "--help"]
        plugin = rest[:1] == ["d2d"]
        if plugin:
            # Docker's flags belong before `d2d`; accept them after it too, as `docker-d2d` does.
            opts, rest = split_global_flags(rest[1:], opts)
    except UsageError as exc:
        print(f"docker-d2d: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    if plugin:
        if rest[:1] == ["docker-cli-plugin-hooks"]:
            return  # we register no hooks
        watch_plugin_socket()
    if rest[:1] == ["help"]:
        rest = ["--help"]

    from .app import cli
    from .app.application import Application

    cli.run(normalize_argv(rest), Application(opts, prog="docker d2d" if plugin else "docker-d2d"))


if __name__ == "__main__":
    main()
