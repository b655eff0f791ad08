"""The typer application: parse, call copy_images, render. Errors become messages here, and only here."""

from __future__ import annotations

import functools
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, TextIO, TypeVar, cast

import typer

from . import __version__
from .checkpoints import parse_checkpoint
from .compress import Compression
from .console import BaseReporter, JsonReporter, PlainReporter, QuietReporter, RichReporter
from .contexts import config_dir, resolve
from .copy import copy_images
from .endpoint import Endpoint, Scheme
from .errors import Cancelled, D2DError, SpoolFull, UsageError, printable
from .job import CopyOptions
from .model import Platform
from .options import GlobalOptions
from .transport.watch import CONNECT_TIMEOUT, STALL_TIMEOUT, Timeouts

if TYPE_CHECKING:
    from .registry import Via
from .registry_first import RegistryFirst
from .remote import RemoteFilter

app = typer.Typer(
    name="docker-d2d",
    help="Copy images directly between Docker engines, sending only the layers the destination lacks.",
    no_args_is_help=True,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"docker-d2d {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", is_eager=True, callback=_print_version)
    ] = False,
) -> None:
    pass


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
        help="Fail when no byte moved for this long and the engine answers no ping (on a load, even if it answers).",
    ),
]
CompressOpt = Annotated[
    Compression,
    typer.Option("--compress", help="Compress the load on the wire: auto = on ssh and non-loopback tcp only."),
]
PlatformOpt = Annotated[
    Optional[str],  # noqa: UP045 - typer needs Optional on 3.10
    typer.Option(
        "--platform",
        help="os/arch or os/arch/variant of a multi-platform image to copy from a containerd-store source "
        "(default: the destination's platform).",
    ),
]
RegistryFirstOpt = Annotated[
    RegistryFirst,
    typer.Option(
        "--registry-first",
        help="auto: where the image's lower layers are a base the source pulled from a registry "
        "(RepoDigests), the destination pulls that base itself and only the rest comes from the source.",
    ),
]
CheckpointOpt = Annotated[
    str,
    typer.Option(
        "--checkpoint",
        help="Resumable copies: after about this many bytes of layers (e.g. 256MB, 1GiB), land what was sent as "
        "a partial image, so that an interrupted copy sends only the rest when run again. auto = every 256 MB "
        "on ssh and non-loopback tcp; never = off.",
    ),
]
RemoteFilterOpt = Annotated[
    RemoteFilter,
    typer.Option(
        "--remote-filter",
        help="From an ssh source: drop present layers and compress on the source host (its python3); never = plain.",
    ),
]
Images = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Argument(
        help="Images: name[:tag], host:port/name:tag, name@sha256:..., or an id; with -f, services of the project.",
        autocompletion=_complete_images,
        show_default=False,
    ),
]
ComposeFiles = Annotated[
    Optional[list[Path]],  # noqa: UP045
    typer.Option("-f", "--file", help="A Compose file (repeatable): copy its services' images.", show_default=False),
]
ViaOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--via",
        metavar="REGISTRY[/REPO]",
        help="Push the missing blobs once to this registry and have each destination pull them (for many "
        "hosts; credentials from your Docker config; http only for loopback or http://...).",
        show_default=False,
    ),
]
Profiles = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option("--profile", help="With -f: a Compose profile to enable (repeatable).", show_default=False),
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


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread like Ctrl-C's KeyboardInterrupt so that the
    same cleanup runs (temp dir, the untagged image of an interrupted load)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


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
    import signal

    # Exit status 128 + the signal (143 for SIGTERM), as a shell reports a command it killed:
    # what `docker run`, systemd and CI runners expect of a program stopped by SIGTERM.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)
    # Ctrl-C stops a copy however we were started: a job a script puts in the background inherits
    # SIGINT ignored, and Python then leaves it so (the Docker CLI asks for SIGINT all the same).
    signal.signal(signal.SIGINT, signal.default_int_handler)
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
        typer.echo(f"docker-d2d: local: {printable(exc.strerror or str(exc))}{where}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt as exc:
        if isinstance(exc, Terminated):
            import signal

            name = signal.Signals(exc.signum).name
            typer.echo(f"docker-d2d: stopped by {name}; nothing was tagged at the destination", err=True)
            raise typer.Exit(128 + exc.signum) from None
        typer.echo(f"docker-d2d: {Cancelled()}", err=True)
        raise typer.Exit(Cancelled.exit_code) from None
    raise typer.Exit(code)


@dataclass(frozen=True)
class CopyFlags:
    """The options every copy command takes, declared once (COPY_FLAGS)."""

    dry_run: bool = False
    quiet: bool = False
    as_json: bool = False
    debug: bool = False
    spool_dir: Path | None = None
    compress: Compression = Compression.AUTO
    compose_files: list[Path] | None = None
    profiles: list[str] | None = None
    via: str | None = None
    platform: str | None = None
    connect_timeout: float = CONNECT_TIMEOUT
    stall_timeout: float = STALL_TIMEOUT
    remote_filter: RemoteFilter = RemoteFilter.AUTO
    registry_first: RegistryFirst = RegistryFirst.AUTO
    checkpoint: str = "auto"


COPY_FLAGS: dict[str, Any] = {  # name -> its typer annotation; defaults from CopyFlags
    "dry_run": DryRun,
    "quiet": Quiet,
    "as_json": Json,
    "debug": Debug,
    "spool_dir": SpoolDir,
    "compress": CompressOpt,
    "compose_files": ComposeFiles,
    "profiles": Profiles,
    "via": ViaOpt,
    "platform": PlatformOpt,
    "connect_timeout": ConnectTimeout,
    "stall_timeout": StallTimeout,
    "remote_filter": RemoteFilterOpt,
    "registry_first": RegistryFirstOpt,
    "checkpoint": CheckpointOpt,
}
Command = TypeVar("Command", bound=Callable[..., None])


def copy_options(*, without: tuple[str, ...] = ()) -> Callable[[Command], Command]:
    """Give a command (whose last parameter is `flags: CopyFlags`) every copy option: typer reads the
    options from the signature made here, and the command gets them as one CopyFlags."""

    def decorate(command: Command) -> Command:
        own = list(inspect.signature(command, eval_str=True).parameters.values())[:-1]
        defaults = CopyFlags()
        shared = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=getattr(defaults, name))
            for name, kind in COPY_FLAGS.items()
            if name not in without
        ]

        @functools.wraps(command)
        def run(**kwargs: Any) -> None:
            flags = CopyFlags(**{name: kwargs.pop(name) for name in COPY_FLAGS if name in kwargs})
            command(**kwargs, flags=flags)

        run.__signature__ = inspect.Signature(own + shared)  # type: ignore[attr-defined]
        return cast(Command, run)

    return decorate


def _copy(source: str | None, destination: str | list[str] | None, images: list[str] | None, f: CopyFlags) -> None:
    def action() -> int | None:
        nonlocal images
        options = CopyOptions(
            dry_run=f.dry_run,
            spool_dir=f.spool_dir,
            compress=f.compress,
            timeouts=Timeouts(f.connect_timeout, f.stall_timeout),
            platform=Platform.parse(f.platform) if f.platform else None,
            remote_filter=f.remote_filter,
            registry_first=f.registry_first,
            docker_config=config_dir(GLOBALS, os.environ),
            checkpoint=parse_checkpoint(f.checkpoint),
        )
        if f.compose_files:
            from .compose import Selection, compose_images

            selection = Selection(tuple(f.compose_files), tuple(f.profiles or ()), tuple(images or ()))
            images = compose_images(selection, os.environ)
            if not images:
                raise UsageError("the Compose project selects no service")
        elif f.profiles:
            raise UsageError("--profile needs -f COMPOSE_FILE")
        if not images:
            raise UsageError("name at least one image")
        if f.spool_dir is not None:
            from .spool import check_spool_dir

            check_spool_dir(f.spool_dir)
        src = resolve_endpoint(source)
        dests = _destinations(destination)
        if len(dests) > 1 or f.via:
            return _copy_to_many(src, dests, images, f.quiet, f.as_json, options, _via(f.via))
        dst = dests[0]
        reporter = _reporter(f.quiet, f.as_json)
        try:
            result = copy_images(src, dst, images, reporter, options)
        finally:
            if isinstance(reporter, RichReporter):
                reporter.close()
        if f.dry_run:
            reporter.dry_run(result.plan)
        else:
            reporter.finished(result)
        return None

    run_command(action, f.debug)


def _destinations(given: str | list[str] | None) -> list[Endpoint]:
    """`push a,b,c` and `copy -d a -d b`: each named once, in order; none means the local engine."""
    words = [given] if isinstance(given, str) else (given or [])
    names = list(dict.fromkeys(w.strip() for word in words for w in word.split(",") if w.strip()))
    if words and not names:
        raise UsageError("name a destination")
    return [resolve_endpoint(name) for name in names] if names else [resolve_endpoint(None)]


def _via(text: str | None) -> Via | None:
    if not text:
        return None
    from .contexts import config_dir
    from .registry import Via, parse_registry, registry_credentials

    ref = parse_registry(text)
    return Via(ref, registry_credentials(ref.host, config_dir(GLOBALS, os.environ), os.environ))


def _copy_to_many(
    src: Endpoint,
    dests: list[Endpoint],
    images: list[str],
    quiet: bool,
    as_json: bool,
    options: CopyOptions,
    via: Via | None = None,
) -> int:
    """One export, every destination concurrently; exit 0 only when every destination succeeded."""
    from .console import Prefixed
    from .fanout import copy_to_many

    reporters: dict[str, BaseReporter] = {}

    def reporter_for(endpoint: Endpoint) -> BaseReporter:
        if as_json:
            rep: BaseReporter = JsonReporter(destination=str(endpoint))
        elif quiet:
            rep = QuietReporter()
        else:  # several live bars would fight over the terminal: one prefixed line per event instead
            prefix = f"[{endpoint}] "
            out, err = (cast(TextIO, Prefixed(stream, prefix)) for stream in (sys.stdout, sys.stderr))
            rep = PlainReporter(out=out, err=err)
        return reporters.setdefault(str(endpoint), rep)

    top = JsonReporter() if as_json else QuietReporter() if quiet else PlainReporter()
    fleet = copy_to_many(src, dests, images, top, reporter_for, options, via)
    for host in fleet.hosts:
        rep = reporters[str(host.endpoint)]
        if host.ok and host.result is not None:
            if options.dry_run:
                rep.dry_run(host.result.plan)
            elif as_json:
                rep.finished(host.result)
        elif isinstance(rep, JsonReporter):
            rep.failed(str(host.error))
    top.fleet_finished(fleet)
    # A failure of our own side is the same for every destination: said once (a full spool
    # directory once, whichever of the files there met it first).
    local: dict[str, str] = {}
    for host in fleet.failed:
        if host.error is not None and host.error.side == "local":
            key = host.error.directory if isinstance(host.error, SpoolFull) else str(host.error)
            local.setdefault(key, str(host.error))
    for line in local.values():
        typer.echo(f"docker-d2d: {printable(line)}", err=True)
    remote = [h for h in fleet.failed if h.error is None or h.error.side != "local"]
    for host in remote:
        typer.echo(f"docker-d2d: {host.error}", err=True)
    if remote:
        typer.echo(f"docker-d2d: {len(fleet.failed)} of {len(fleet.hosts)} destinations failed", err=True)
    return 1 if fleet.failed else 0


def _endpoint_option(role: str, *names: str, note: str = "") -> Any:
    return typer.Option(
        *names, help=f"{role} engine{note}: {ENDPOINT_HELP} (default: local).", autocompletion=_complete_endpoints
    )


@app.command("copy")
@copy_options()
def copy_command(
    images: Images = None,
    source: Annotated[Optional[str], _endpoint_option("Source", "-s", "--source")] = None,  # noqa: UP045
    destination: Annotated[
        Optional[list[str]],  # noqa: UP045
        _endpoint_option("Destination", "-d", "--destination", note=" (repeatable, or A,B,...: one export to all)"),
    ] = None,
    *,
    flags: CopyFlags,
) -> None:
    """Copy IMAGES from the source engine to the destination engine."""
    _copy(source, destination, images, flags)


@app.command("push")
@copy_options(without=("remote_filter",))  # the source is the local engine
def push_command(
    destination: Annotated[
        str,
        typer.Argument(
            help=f"Destination engine: {ENDPOINT_HELP}; several as DEST,DEST,... (one export to all).",
            autocompletion=_complete_endpoints,
        ),
    ],
    images: Images = None,
    *,
    flags: CopyFlags,
) -> None:
    """Push IMAGES from the local engine to DESTINATION."""
    _copy(None, destination, images, flags)


@app.command("pull")
@copy_options()
def pull_command(
    source: Annotated[str, typer.Argument(help=f"Source engine: {ENDPOINT_HELP}.", autocompletion=_complete_endpoints)],
    images: Images = None,
    *,
    flags: CopyFlags,
) -> None:
    """Pull IMAGES from SOURCE into the local engine."""
    _copy(source, None, images, flags)


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
        typer.echo(install_plugin(_plugin_path(system, directory)))

    run_command(action, False)


@plugin_app.command("uninstall")
def plugin_uninstall(system: System = False, directory: PluginDir = None) -> None:
    """Remove docker-d2d from a cli-plugins directory."""
    from .packaging import uninstall_plugin

    def action() -> None:
        typer.echo(uninstall_plugin(_plugin_path(system, directory)))

    run_command(action, False)
