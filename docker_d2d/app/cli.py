"""The typer application: the commands and their options, nothing more. Each command hands what it
was given to the run's Application (application.py), which does the work and ends the run."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional, TypeVar, cast

import typer
import typer.main

from .. import __version__
from ..errors import UsageError
from ..transfer.compress import Compression
from ..transfer.job import LayersFrom, RegistryFirst, RemoteFilter
from .application import SYSTEM_PLUGIN_DIR, Application, CopyFlags
from .examples import EXAMPLES, examples
from .messages import usage_line

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
    typer.Option(
        "--spool-dir",
        metavar="DIR",
        help="Where to spool layers that must be read before deciding (default: TMPDIR).",
    ),
]


def application(ctx: typer.Context) -> Application:
    """The run's Application (main.py hands it to typer as the context's object)."""
    return ctx.obj if isinstance(ctx.obj, Application) else Application()


def _complete_endpoints(incomplete: str) -> list[tuple[str, str]]:
    from .completion import endpoint_candidates

    return [(v, d) for v, d in endpoint_candidates(incomplete) if v.startswith(incomplete)]


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
        help="Fail when no byte moved for this long and the engine answers no ping. A load fails even if it answers.",
    ),
]
CompressOpt = Annotated[
    Compression,
    typer.Option("--compress", help="Compress the load on the wire. auto: on ssh and non-loopback tcp only."),
]
PlatformOpt = Annotated[
    Optional[str],  # noqa: UP045 - typer needs Optional on 3.10
    typer.Option(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help="Copy this platform of a multi-platform image (default: the destination's platform). "
        "From a containerd-store source.",
    ),
]
RegistryFirstOpt = Annotated[
    RegistryFirst,
    typer.Option(
        "--registry-first",
        help="Let the destination pull the image's base from its registry. Where the image's lower layers are "
        "a base the source pulled from a registry (RepoDigests), the destination pulls that base itself and "
        "only the rest comes from the source. auto: only for a destination over ssh or remote tcp; always: "
        "local ones too.",
    ),
]
CheckpointOpt = Annotated[
    str,
    typer.Option(
        "--checkpoint",
        metavar="SIZE|auto|never",
        help="Make copies resumable. After about SIZE of layers (256MB, 1GiB), what was sent lands as a "
        "partial image, so that an interrupted copy sends only the rest when run again. auto = every 256 MB "
        "on ssh and non-loopback tcp; never = off.",
    ),
]
RemoteFilterOpt = Annotated[
    RemoteFilter,
    typer.Option(
        "--remote-filter",
        help="Filter and compress on an ssh source's host (its python3). never: send its plain export.",
    ),
]
LayersFromOpt = Annotated[
    LayersFrom,
    typer.Option(
        "--layers-from",
        help="Where the layers that travel are read. auto: straight from the source engine's storage where it "
        "can be read (here as root or the store's owner; on an ssh source's host by its user), else its export; "
        "export: always the engine's export of the whole image.",
    ),
]
SourceSudo = Annotated[
    bool,
    typer.Option(
        "--source-sudo",
        help="Read an ssh source's storage through `sudo -n` on its host (passwordless sudo for python3). "
        "It never prompts: refused, the export is read.",
    ),
]
Images = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Argument(
        help="Images: name[:tag], host:port/name:tag, name@sha256:..., or an id; with -f, services of the project.",
        metavar="IMAGE...",
        autocompletion=_complete_images,
        show_default=False,
    ),
]
ComposeFiles = Annotated[
    Optional[list[Path]],  # noqa: UP045
    typer.Option(
        "-f",
        "--file",
        metavar="FILE",
        help="A Compose file (repeatable): copy its services' images.",
        show_default=False,
    ),
]
ViaOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--via",
        metavar="REGISTRY[/REPO]",
        help="Send the missing blobs through this registry, once, for many hosts. Each destination pulls "
        "them; credentials from your Docker config; http only for loopback or http://...",
        show_default=False,
    ),
]
Profiles = Annotated[
    Optional[list[str]],  # noqa: UP045
    typer.Option(
        "--profile", metavar="NAME", help="With -f: a Compose profile to enable (repeatable).", show_default=False
    ),
]
ENDPOINT_HELP = (
    "a Docker context, an ssh host (user@host:port), ssh://user@host:port/socket, "
    "sshunix://user@host:port:/socket, unix:///path or tcp://host:port"
)


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
    "layers_from": LayersFromOpt,
    "source_sudo": SourceSudo,
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


def _endpoint_option(role: str, *names: str, note: str = "") -> Any:
    return typer.Option(
        *names,
        metavar="ENGINE",
        help=f"{role} engine (default: the local one){note}. One of: {ENDPOINT_HELP}.",
        autocompletion=_complete_endpoints,
    )


@app.command("copy")
@copy_options()
def copy_command(
    ctx: typer.Context,
    images: Images = None,
    source: Annotated[Optional[str], _endpoint_option("Source", "-s", "--source")] = None,  # noqa: UP045
    destination: Annotated[
        Optional[list[str]],  # noqa: UP045
        _endpoint_option("Destination", "-d", "--destination", note="; repeatable, or A,B,...: one export to all"),
    ] = None,
    *,
    flags: CopyFlags,
) -> None:
    """Copy IMAGES from the source engine to the destination engine."""
    application(ctx).copy(source, destination, images, flags)


@app.command("push")
@copy_options(without=("remote_filter", "source_sudo"))  # the source is the local engine
def push_command(
    ctx: typer.Context,
    destination: Annotated[
        str,
        typer.Argument(
            help=f"Destination engine; several as DEST,DEST,... get one export. One of: {ENDPOINT_HELP}.",
            metavar="DESTINATION",
            autocompletion=_complete_endpoints,
        ),
    ],
    images: Images = None,
    *,
    flags: CopyFlags,
) -> None:
    """Push IMAGES from the local engine to DESTINATION."""
    application(ctx).push(destination, images, flags)


@app.command("pull")
@copy_options()
def pull_command(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(
            help=f"Source engine. One of: {ENDPOINT_HELP}.", metavar="SOURCE", autocompletion=_complete_endpoints
        ),
    ],
    images: Images = None,
    *,
    flags: CopyFlags,
) -> None:
    """Pull IMAGES from SOURCE into the local engine."""
    application(ctx).pull(source, images, flags)


@app.command("version")
def version_command() -> None:
    """Print the version."""
    typer.echo(f"docker-d2d {__version__}")


class Shell(str, Enum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


@app.command("completion")
def completion_command(shell: Annotated[Shell, typer.Argument(help="bash, zsh or fish", metavar="SHELL")]) -> None:
    """Print the completion script of the standalone docker-d2d.

    `docker d2d` needs none: `docker completion bash|zsh|fish` completes it through the plugin protocol."""
    from .completion import completion_script

    typer.echo(completion_script(shell.value))


plugin_app = typer.Typer(help="Install or uninstall docker-d2d as a Docker CLI plugin (`docker d2d ...`).")
app.add_typer(plugin_app, name="plugin")
System = Annotated[bool, typer.Option("--system", help=f"Use {SYSTEM_PLUGIN_DIR} (all users) instead of yours.")]
PluginDir = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--dir", metavar="DIR", help="Use this cli-plugins directory."),
]


@plugin_app.command("install")
def plugin_install(ctx: typer.Context, system: System = False, directory: PluginDir = None) -> None:
    """Link this docker-d2d into a cli-plugins directory, so that `docker d2d` runs it."""
    from .packaging import install_plugin

    run = application(ctx)
    run.run(lambda: typer.echo(install_plugin(run.plugin_path(system, directory))), False)


@plugin_app.command("uninstall")
def plugin_uninstall(ctx: typer.Context, system: System = False, directory: PluginDir = None) -> None:
    """Remove docker-d2d from a cli-plugins directory."""
    from .packaging import uninstall_plugin

    run = application(ctx)
    run.run(lambda: typer.echo(uninstall_plugin(run.plugin_path(system, directory))), False)


# The root options typer adds for the standalone docker-d2d's completion: as a plugin, the docker
# CLI completes `docker d2d` (`docker completion ...`), and these would install a script for docker-d2d.
STANDALONE_ONLY = ("install_completion", "show_completion")


def command(prog: str) -> Any:
    """The click command tree typer makes of `app`, as `prog` runs it: "docker d2d" (the plugin) or
    "docker-d2d", each command with its examples."""
    root = typer.main.get_command(app)  # a new tree on every call
    if prog == "docker d2d":
        root.params = [p for p in root.params if p.name not in STANDALONE_ONLY]
    for name in EXAMPLES:
        sub = root
        for word in name.split():
            sub = sub.commands[word]  # type: ignore[attr-defined]
        sub.epilog = examples(prog, name)
    return root


def run(args: list[str], application: Application) -> NoReturn:
    """Run the command `args` names. A usage error (a missing argument, an unknown option or
    command, a bad value) is one line, like the run's other errors (typer would draw a box)."""
    from typer._click.exceptions import NoArgsIsHelpError
    from typer._click.exceptions import UsageError as BadUsage

    try:
        code = command(application.prog).main(args, application.prog, obj=application, standalone_mode=False)
    except NoArgsIsHelpError as exc:  # `docker d2d` alone: typer drew the help as it made this error
        raise SystemExit(exc.exit_code) from None
    except BadUsage as exc:
        path = exc.ctx.command_path if exc.ctx else application.prog
        try:
            application.fail(UsageError(usage_line(exc.format_message(), path)))
        except typer.Exit as done:
            raise SystemExit(done.exit_code) from None
    except typer.Abort:
        raise SystemExit(1) from None
    raise SystemExit(code if isinstance(code, int) else 0)
