"""The typer application: parse, call copy_images, render. Errors become messages here, and only here."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import __version__
from .console import BaseReporter, JsonReporter, PlainReporter, QuietReporter, RichReporter
from .copy import CopyOptions, copy_images
from .endpoint import Endpoint, local_endpoint, parse_endpoint
from .errors import Cancelled, D2DError, UsageError

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
Images = Annotated[list[str], typer.Argument(help="Images: name[:tag], host:port/name:tag, name@sha256:..., or an id.")]


def resolve_endpoint(text: str | None) -> Endpoint:
    return local_endpoint() if not text else parse_endpoint(text)


def _reporter(quiet: bool, as_json: bool) -> BaseReporter:
    if as_json:
        return JsonReporter()
    if quiet:
        return QuietReporter()
    if sys.stderr.isatty():
        return RichReporter()
    return PlainReporter()


def run_command(action: Callable[[], int | None], debug: bool) -> None:
    """The one place where our errors become a message and an exit status."""
    try:
        code = action() or 0
    except D2DError as exc:
        if debug:
            traceback.print_exc()
        typer.echo(f"docker-d2d: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
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
) -> None:
    def action() -> None:
        if not images:
            raise UsageError("name at least one image")
        src, dst = resolve_endpoint(source), resolve_endpoint(destination)
        reporter = _reporter(quiet, as_json)
        try:
            result = copy_images(src, dst, images, reporter, CopyOptions(dry_run=dry_run, spool_dir=spool_dir))
        finally:
            if isinstance(reporter, RichReporter):
                reporter.close()
        if dry_run:
            reporter.dry_run(result.plan)
        else:
            reporter.finished(result)

    run_command(action, debug)


@app.command("copy")
def copy_command(
    images: Images,
    source: Annotated[Optional[str], typer.Option("-s", "--source", help="Source engine (default: local).")] = None,  # noqa: UP045
    destination: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("-d", "--destination", help="Destination engine (default: local)."),
    ] = None,
    dry_run: DryRun = False,
    quiet: Quiet = False,
    as_json: Json = False,
    debug: Debug = False,
    spool_dir: SpoolDir = None,
) -> None:
    """Copy IMAGES from the source engine to the destination engine."""
    _copy(source, destination, images, dry_run, quiet, as_json, debug, spool_dir)


@app.command("push")
def push_command(
    destination: Annotated[str, typer.Argument(help="Destination engine: unix:///path, tcp://host:port.")],
    images: Images,
    dry_run: DryRun = False,
    quiet: Quiet = False,
    as_json: Json = False,
    debug: Debug = False,
    spool_dir: SpoolDir = None,
) -> None:
    """Push IMAGES from the local engine to DESTINATION."""
    _copy(None, destination, images, dry_run, quiet, as_json, debug, spool_dir)


@app.command("pull")
def pull_command(
    source: Annotated[str, typer.Argument(help="Source engine: unix:///path, tcp://host:port.")],
    images: Images,
    dry_run: DryRun = False,
    quiet: Quiet = False,
    as_json: Json = False,
    debug: Debug = False,
    spool_dir: SpoolDir = None,
) -> None:
    """Pull IMAGES from SOURCE into the local engine."""
    _copy(source, None, images, dry_run, quiet, as_json, debug, spool_dir)


@app.command("version")
def version_command() -> None:
    """Print the version."""
    typer.echo(f"docker-d2d {__version__}")
