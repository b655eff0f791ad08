"""The typer application: parse, call copy_images, render. Errors become messages here, and only here."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from . import __version__
from .compress import Compression
from .console import BaseReporter, JsonReporter, PlainReporter, QuietReporter, RichReporter
from .contexts import resolve
from .copy import CopyOptions, copy_images
from .endpoint import Endpoint, Scheme
from .errors import Cancelled, D2DError, UsageError, printable
from .options import GlobalOptions
from .transport.watch import CONNECT_TIMEOUT, STALL_TIMEOUT, Timeouts

app = typer.Typer(
    name="docker-d2d",
    help="Copy images directly between Docker engines, sending only the layers the destination lacks.",
    no_args_is_help=True,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)

DryRun = Annotated[bool, typer.Option("--dry-run", help="Show the plan (layers to send or skip) and stop.")]
Quiet = Annotated[bool, typer.Option("-q", "--quiet", help="Print nothing but errors.")]
Json = Annotated[bool, typer.Option("--json", help="One JSON object per line: plan, layer progress, result.")]
Debug = Annotated[bool, typer.Option("-D", "--debug", help="Show tracebacks and engine details.")]
SpoolDir = Annotated[
    Optional[Path],  # noqa: UP045 - typer needs Optional on 3.10
    typer.Option("--spool-dir", help="Where to spool layers that must be read before deciding (default: TMPDIR)."),
]


def _complete_endpoints(incomplete: str) -> list[tuple[str, str]]:
    from .completion import endpoint_candidates

    return [(v, d) for v, d in endpoint_candidates() if v.startswith(incomplete)]


def _complete_images(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    from .completion import image_candidates

    params = ctx.params
    source = params.get("source") if ctx.command.name != "push" else None
    return [(v, d) for v, d in image_candidates(source) if v.startswith(incomplete)]


ConnectTimeout = Annotated[
    float,
    typer.Option(
        "--connect-timeout",
        metavar="SECONDS",
        min=0.1,
        envvar="D2D_CONNECT_TIMEOUT",
        help="Give up on an engine (TCP, TLS, ssh handshake, first answer) after this long.",
    ),
]
StallTimeout = Annotated[
    float,
    typer.Option(
        "--stall-timeout",
        metavar="SECONDS",
        min=0.2,
        envvar="D2D_STALL_TIMEOUT",
        help="Fail when no byte moved for this long and the engine does not answer a ping either.",
    ),
]
CompressOpt = Annotated[
    Compression,
    typer.Option("--compress", help="Compress the load on the wire: auto = on ssh and non-loopback tcp only."),
]
Images = Annotated[
    list[str],
    typer.Argument(
        help="Images: name[:tag], host:port/name:tag, name@sha256:..., or an id.", autocompletion=_complete_images
    ),
]
ENDPOINT_HELP = (
    "a Docker context, an ssh host (user@host:port), ssh://user@host:port/socket, "
    "sshunix://user@host:port:/socket, unix:///path or tcp://host:port"
)


# Docker's global flags, parsed by main before typer sees argv (they may precede `d2d`).
GLOBALS = GlobalOptions()


def resolve_endpoint(text: str | None) -> Endpoint:
    endpoint = resolve(text, GLOBALS, os.environ)
    if endpoint.scheme is Scheme.TCP and endpoint.tls is None and not endpoint.is_local:
        typer.echo(
            f"warning: {endpoint} is plain tcp: the Engine API travels unencrypted and unauthenticated "
            "(use --tlsverify, a context with TLS, or ssh)",
            err=True,
        )
    return endpoint


def _reporter(quiet: bool, as_json: bool) -> BaseReporter:
    if as_json:
        return JsonReporter()
    if quiet:
        return QuietReporter()
    if sys.stderr.isatty():
        return RichReporter()
    return PlainReporter()


def _logging(debug: bool) -> None:
    """Libraries' log lines (paramiko's "Secsh channel open FAILED", banner errors and their
    tracebacks) reach the terminal only with --debug; our own warnings always do."""
    import logging

    if debug:
        logging.basicConfig(level=logging.INFO, format="debug: %(message)s")
        logging.getLogger("paramiko").setLevel(logging.WARNING)
        return
    logging.getLogger().addHandler(logging.NullHandler())  # no "last resort" printing to stderr
    ours = logging.StreamHandler()
    ours.setLevel(logging.WARNING)
    ours.setFormatter(logging.Formatter("warning: %(message)s"))  # like the plain-tcp warning
    logging.getLogger("docker_d2d").addHandler(ours)


def run_command(action: Callable[[], int | None], debug: bool) -> None:
    """The one place where our errors become a message and an exit status."""
    debug = debug or GLOBALS.debug
    _logging(debug)
    try:
        code = action() or 0
    except D2DError as exc:
        if debug:
            traceback.print_exc()
        typer.echo(f"docker-d2d: {printable(str(exc))}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except OSError as exc:  # our own files (the spool dir filling up mid-run): never a traceback
        if debug:
            traceback.print_exc()
        where = f": {exc.filename}" if exc.filename else ""
        typer.echo(f"docker-d2d: {printable(exc.strerror or str(exc))}{where}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo(f"docker-d2d: {Cancelled()}", err=True)
        raise typer.Exit(Cancelled.exit_code) from None
    raise typer.Exit(code)


def _copy(
    source: str | None,
    destination: str | None,
    images: list[str],
    dry_run: bool,
    quiet: bool,
    as_json: bool,
    debug: bool,
    spool_dir: Path | None,
    compress: Compression,
    timeouts: Timeouts,
) -> None:
    def action() -> None:
        if not images:
            raise UsageError("name at least one image")
        if spool_dir is not None:
            from .spool import check_spool_dir

            check_spool_dir(spool_dir)
        src, dst = resolve_endpoint(source), resolve_endpoint(destination)
        reporter = _reporter(quiet, as_json)
        try:
            options = CopyOptions(dry_run=dry_run, spool_dir=spool_dir, compress=compress, timeouts=timeouts)
            result = copy_images(src, dst, images, reporter, options)
        finally:
            if isinstance(reporter, RichReporter):
                reporter.close()
        if dry_run:
            reporter.dry_run(result.plan)
        else:
            reporter.finished(result)

    run_command(action, debug)


def _endpoint_option(role: str, *names: str) -> Any:
    return typer.Option(
        *names, help=f"{role} engine: {ENDPOINT_HELP} (default: local).", autocompletion=_complete_endpoints
    )


@app.command("copy")
def copy_command(
    images: Images,
    source: Annotated[Optional[str], _endpoint_option("Source", "-s", "--source")] = None,  # noqa: UP045
    destination: Annotated[Optional[str], _endpoint_option("Destination", "-d", "--destination")] = None,  # noqa: UP045
    dry_run: DryRun = False,
    quiet: Quiet = False,
    as_json: Json = False,
    debug: Debug = False,
    spool_dir: SpoolDir = None,
    compress: CompressOpt = Compression.AUTO,
    connect_timeout: ConnectTimeout = CONNECT_TIMEOUT,
    stall_timeout: StallTimeout = STALL_TIMEOUT,
) -> None:
    """Copy IMAGES from the source engine to the destination engine."""
    timeouts = Timeouts(connect_timeout, stall_timeout)
    _copy(source, destination, images, dry_run, quiet, as_json, debug, spool_dir, compress, timeouts)


@app.command("push")
def push_command(
    destination: Annotated[
        str, typer.Argument(help=f"Destination engine: {ENDPOINT_HELP}.", autocompletion=_complete_endpoints)
    ],
    images: Images,
    dry_run: DryRun = False,
    quiet: Quiet = False,
    as_json: Json = False,
    debug: Debug = False,
    spool_dir: SpoolDir = None,
    compress: CompressOpt = Compression.AUTO,
    connect_timeout: ConnectTimeout = CONNECT_TIMEOUT,
    stall_timeout: StallTimeout = STALL_TIMEOUT,
) -> None:
    """Push IMAGES from the local engine to DESTINATION."""
    timeouts = Timeouts(connect_timeout, stall_timeout)
    _copy(None, destination, images, dry_run, quiet, as_json, debug, spool_dir, compress, timeouts)


@app.command("pull")
def pull_command(
    source: Annotated[str, typer.Argument(help=f"Source engine: {ENDPOINT_HELP}.", autocompletion=_complete_endpoints)],
    images: Images,
    dry_run: DryRun = False,
    quiet: Quiet = False,
    as_json: Json = False,
    debug: Debug = False,
    spool_dir: SpoolDir = None,
    compress: CompressOpt = Compression.AUTO,
    connect_timeout: ConnectTimeout = CONNECT_TIMEOUT,
    stall_timeout: StallTimeout = STALL_TIMEOUT,
) -> None:
    """Pull IMAGES from SOURCE into the local engine."""
    timeouts = Timeouts(connect_timeout, stall_timeout)
    _copy(source, None, images, dry_run, quiet, as_json, debug, spool_dir, compress, timeouts)


@app.command("version")
def version_command() -> None:
    """Print the version."""
    typer.echo(f"docker-d2d {__version__}")


class Shell(str, Enum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


@app.command("completion")
def completion_command(shell: Annotated[Shell, typer.Argument(help="bash, zsh or fish")]) -> None:
    """Print the completion script of the standalone docker-d2d (`docker d2d` is completed by
    `docker completion ...` through the plugin protocol)."""
    from typer._completion_shared import get_completion_script

    typer.echo(get_completion_script(prog_name="docker-d2d", complete_var="_DOCKER_D2D_COMPLETE", shell=shell.value))


plugin_app = typer.Typer(help="Install or uninstall docker-d2d as a Docker CLI plugin (`docker d2d ...`).")
app.add_typer(plugin_app, name="plugin")
SYSTEM_PLUGIN_DIR = Path("/usr/local/lib/docker/cli-plugins")
System = Annotated[bool, typer.Option("--system", help=f"Use {SYSTEM_PLUGIN_DIR} (all users) instead of yours.")]
PluginDir = Annotated[Optional[Path], typer.Option("--dir", help="Use this cli-plugins directory.")]  # noqa: UP045


def _plugin_path(system: bool, directory: Path | None) -> Path:
    from .contexts import config_dir

    base = directory or (SYSTEM_PLUGIN_DIR if system else config_dir(GLOBALS, os.environ) / "cli-plugins")
    return base / "docker-d2d"


@plugin_app.command("install")
def plugin_install(system: System = False, directory: PluginDir = None) -> None:
    """Link this docker-d2d into a cli-plugins directory, so that `docker d2d` runs it."""
    from .packaging import install_plugin

    def action() -> None:
        typer.echo(f"installed {install_plugin(_plugin_path(system, directory))}")

    run_command(action, False)


@plugin_app.command("uninstall")
def plugin_uninstall(system: System = False, directory: PluginDir = None) -> None:
    """Remove docker-d2d from a cli-plugins directory."""
    path = _plugin_path(system, directory)
    if path.is_symlink() or path.exists():
        path.unlink()
        typer.echo(f"removed {path}")
    else:
        typer.echo(f"not installed at {path}")
