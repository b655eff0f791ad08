"""The Application: one run of docker-d2d, handed to every command. Errors become messages here, and only here.

It holds Docker's global flags (main.py parses them before typer sees argv: they may precede
`d2d`) and the environment, resolves endpoints the way the docker CLI would, owns the run's ssh
connections, turns the copy flags into a copy or a fleet, and ends every command through `run`.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO, cast

import typer

from ..endpoint import Endpoint, Scheme
from ..engine.timeouts import CONNECT_TIMEOUT, STALL_TIMEOUT, Timeouts
from ..errors import Cancelled, D2DError, EndpointError, SpoolFull, UsageError
from ..model import Platform
from ..transfer.checkpoints import parse_checkpoint
from ..transfer.compress import Compression
from ..transfer.job import CopyOptions, FleetResult, LayersFrom, RegistryFirst, RemoteFilter
from .console import BaseReporter, Held, JsonReporter, PlainReporter, QuietReporter, RichReporter
from .contexts import config_dir, resolve
from .messages import describe, endpoint_only, error_line, swapped
from .options import GlobalOptions

if TYPE_CHECKING:
    from ..engine.pool import SSHPool
    from ..registry.auth import Via

SYSTEM_PLUGIN_DIR = Path("/usr/local/lib/docker/cli-plugins")


@dataclass(frozen=True)
class CopyFlags:
    """The options every copy command takes, declared once (cli.py COPY_FLAGS)."""

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
    layers_from: LayersFrom = LayersFrom.AUTO
    source_sudo: bool = False


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


class Application:
    def __init__(
        self,
        options: GlobalOptions | None = None,
        environ: Mapping[str, str] | None = None,
        prog: str = "docker-d2d",
    ) -> None:
        self.options = options or GlobalOptions()
        self.environ = os.environ if environ is None else environ
        self.prog = prog  # how the user runs us: "docker d2d" (plugin) or "docker-d2d"

    @property
    def config_dir(self) -> Path:
        return config_dir(self.options, self.environ)

    def endpoint(self, text: str | None) -> Endpoint:
        """What the user typed for a side (None: the local engine), as `docker` would read it."""
        endpoint = resolve(text, self.options, self.environ)
        if endpoint.scheme is Scheme.TCP and endpoint.tls is None and not endpoint.is_local:
            typer.echo(
                f"warning: {endpoint} is plain tcp: the Engine API travels unencrypted and unauthenticated "
                "(use --tlsverify, a context with TLS, or ssh)",
                err=True,
            )
        return endpoint

    def plugin_path(self, system: bool, directory: Path | None) -> Path:
        base = directory or (SYSTEM_PLUGIN_DIR if system else self.config_dir / "cli-plugins")
        return base / "docker-d2d"

    def run(self, action: Callable[[], int | None], debug: bool) -> NoReturn:
        """The one place where our errors become a message and an exit status."""
        import signal

        # Exit status 128 + the signal (143 for SIGTERM), as a shell reports a command it killed:
        # what `docker run`, systemd and CI runners expect of a program stopped by SIGTERM.
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _terminate)
        # Ctrl-C stops a copy however we were started: a job a script puts in the background inherits
        # SIGINT ignored, and Python then leaves it so (the Docker CLI asks for SIGINT all the same).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        debug = debug or self.options.debug
        _logging(debug)
        try:
            code = action() or 0
        except D2DError as exc:
            if debug:
                traceback.print_exc()
            self.fail(exc)
        except OSError as exc:  # our own files (the spool dir filling up mid-run): never a traceback
            if debug:
                traceback.print_exc()
            where = f": {exc.filename}" if exc.filename else ""
            self.fail(D2DError(f"{exc.strerror or exc}{where}", side="local"))
        except KeyboardInterrupt as exc:
            if isinstance(exc, Terminated):
                name = signal.Signals(exc.signum).name
                typer.echo(error_line(f"stopped by {name}; nothing was tagged at the destination"), err=True)
                raise typer.Exit(128 + exc.signum) from None
            self.fail(Cancelled())
        raise typer.Exit(code)

    def fail(self, error: D2DError) -> NoReturn:
        """End the run with its error: one line on stderr, and the error's exit status."""
        typer.echo(error_line(error), err=True)
        raise typer.Exit(error.exit_code) from None

    # --- copies --------------------------------------------------------------------------------

    def copy(
        self, source: str | None, destination: str | list[str] | None, images: list[str] | None, f: CopyFlags
    ) -> NoReturn:
        """copy, push, pull: one destination, or several (a fleet), or through a registry."""
        self.run(lambda: self._copy(source, destination, images, f), f.debug)

    def push(self, destination: str, images: list[str] | None, f: CopyFlags) -> NoReturn:
        def push() -> int | None:
            self._endpoint_first("push", destination, images, f, "destination")
            return self._copy(None, destination, images, f)

        self.run(push, f.debug)

    def pull(self, source: str, images: list[str] | None, f: CopyFlags) -> NoReturn:
        def pull() -> int | None:
            self._endpoint_first("pull", source, images, f, "source")
            return self._copy(source, None, images, f)

        self.run(pull, f.debug)

    def _endpoint_first(self, command: str, word: str, images: list[str] | None, f: CopyFlags, role: str) -> None:
        """`push DEST IMAGE...`, `pull SOURCE IMAGE...`: an image typed first, or alone, is said so."""
        if not images and not f.compose_files:
            raise UsageError(endpoint_only(command, self.prog, word, role))
        if not images or not _looks_like_image(word):
            return
        try:
            for name in word.split(","):
                resolve(name.strip() or None, self.options, self.environ)
        except EndpointError:
            raise UsageError(swapped(command, self.prog, word, images, role)) from None

    def _copy(
        self, source: str | None, destination: str | list[str] | None, images: list[str] | None, f: CopyFlags
    ) -> int | None:
        from ..engine.pool import SSHPool

        options = CopyOptions(
            dry_run=f.dry_run,
            spool_dir=f.spool_dir,
            compress=f.compress,
            timeouts=Timeouts(f.connect_timeout, f.stall_timeout),
            platform=Platform.parse(f.platform) if f.platform else None,
            remote_filter=f.remote_filter,
            registry_first=f.registry_first,
            docker_config=self.config_dir,
            checkpoint=parse_checkpoint(f.checkpoint),
            layers_from=f.layers_from,
            source_sudo=f.source_sudo,
        )
        if f.compose_files:
            from .compose import Selection, compose_images

            selection = Selection(tuple(f.compose_files), tuple(f.profiles or ()), tuple(images or ()))
            images = compose_images(selection, self.environ)
            if not images:
                raise UsageError("the Compose project selects no service")
        elif f.profiles:
            raise UsageError("--profile needs -f COMPOSE_FILE")
        if not images:
            raise UsageError("name at least one image")
        if f.spool_dir is not None:
            from ..transfer.spool import check_spool_dir

            check_spool_dir(f.spool_dir)
        src = self.endpoint(source)
        dests = self._destinations(destination)
        options = replace(options, local_engine=self.endpoint(None))
        with SSHPool() as ssh:  # the run's ssh connections: closed when it ends
            dests = self._nodes_of_clusters(dests, options, ssh)
            if len(dests) > 1 or f.via:
                return self._copy_to_many(src, dests, images, f.quiet, f.as_json, options, ssh, self._via(f.via))
            self._copy_one(src, dests[0], images, f, options, ssh)
            return None

    def _copy_one(
        self, src: Endpoint, dst: Endpoint, images: list[str], f: CopyFlags, options: CopyOptions, ssh: SSHPool
    ) -> None:
        from ..transfer.copy import copy_images

        reporter = _reporter(f.quiet, f.as_json)
        try:
            result = copy_images(src, dst, images, reporter, options, ssh)
        finally:
            if isinstance(reporter, RichReporter):
                reporter.close()
        if f.dry_run:
            reporter.dry_run(result.plan)
        else:
            reporter.finished(result)

    def _destinations(self, given: str | list[str] | None) -> list[Endpoint]:
        """`push a,b,c` and `copy -d a -d b`: each named once, in order; none means the local engine."""
        words = [given] if isinstance(given, str) else (given or [])
        names = list(dict.fromkeys(w.strip() for word in words for w in word.split(",") if w.strip()))
        if words and not names:
            raise UsageError("name a destination")
        return [self.endpoint(name) for name in names] if names else [self.endpoint(None)]

    def _nodes_of_clusters(self, dests: list[Endpoint], options: CopyOptions, ssh: SSHPool) -> list[Endpoint]:
        """kind://CLUSTER and k3d://CLUSTER: every node container of the cluster on the local engine."""
        if not any(d.scheme in (Scheme.KIND, Scheme.K3D) and not d.node for d in dests):
            return dests
        from ..engine.client import open_engine
        from ..engine.sides import expand_clusters

        assert options.local_engine is not None
        with open_engine(options.local_engine, "local engine", options.timeouts, ssh) as local:
            local.connect()
            return expand_clusters(dests, local)

    def _via(self, text: str | None) -> Via | None:
        if not text:
            return None
        from ..registry.auth import Via, registry_credentials
        from ..registry.refs import parse_registry

        ref = parse_registry(text)
        return Via(ref, registry_credentials(ref.host, self.config_dir, self.environ))

    def _copy_to_many(
        self,
        src: Endpoint,
        dests: list[Endpoint],
        images: list[str],
        quiet: bool,
        as_json: bool,
        options: CopyOptions,
        ssh: SSHPool,
        via: Via | None = None,
    ) -> int:
        """One export, every destination concurrently; exit 0 only when every destination succeeded."""
        from ..transfer.fleet import copy_to_many
        from .console import Prefixed

        reporters: dict[str, BaseReporter] = {}
        held = Held()  # the engines reached, said once something else is

        def reporter_for(endpoint: Endpoint) -> BaseReporter:
            if as_json:
                rep: BaseReporter = JsonReporter(destination=str(endpoint))
            elif quiet:
                rep = QuietReporter()
            else:  # several live bars would fight over the terminal: one prefixed line per event instead
                prefix = f"[{endpoint}] "
                out, err = (cast(TextIO, Prefixed(stream, prefix)) for stream in (sys.stdout, sys.stderr))
                rep = PlainReporter(out=out, err=err, held=held)
            return reporters.setdefault(str(endpoint), rep)

        top = JsonReporter() if as_json else QuietReporter() if quiet else PlainReporter(held=held)
        fleet = copy_to_many(src, dests, images, top, reporter_for, options, ssh, via)
        for host in fleet.hosts:
            rep = reporters[str(host.endpoint)]
            if host.ok and host.result is not None:
                if options.dry_run:
                    rep.dry_run(host.result.plan)
                elif as_json:
                    rep.finished(host.result)
            elif isinstance(rep, JsonReporter):
                rep.failed(describe(host.error) if host.error else "?")
        top.fleet_finished(fleet)
        for line in fleet_failures(fleet):
            typer.echo(error_line(line), err=True)
        return 1 if fleet.failed else 0


def fleet_failures(fleet: FleetResult) -> list[str]:
    """What a fleet's failures say. A failure of our own side is the same for every destination:
    said once (a full spool directory once, whichever of its files met it first), without the
    count of destinations it failed."""
    local: dict[str, str] = {}
    remote: list[str] = []
    for host in fleet.failed:
        error = host.error
        if error is not None and error.side == "local":
            local.setdefault(error.directory if isinstance(error, SpoolFull) else str(error), describe(error))
        else:
            remote.append(describe(error) if error is not None else "?")
    if remote:
        remote.append(f"{len(fleet.failed)} of {len(fleet.hosts)} destinations failed")
    return [*local.values(), *remote]


def _looks_like_image(word: str) -> bool:
    """What the user typed reads as an image reference and not as an address: a path (`fx/app`), a
    digest, or a tag that is no port (`app:2` may be the ssh host app, port 2)."""
    from ..model import parse_ref

    if "://" in word:
        return False
    try:
        parse_ref(word)
    except UsageError:
        return False
    tag = word.rpartition(":")[2] if ":" in word else ""
    return "/" in word or "@sha256:" in word or (bool(tag) and not tag.isdigit())


def _reporter(quiet: bool, as_json: bool) -> BaseReporter:
    if as_json:
        return JsonReporter()
    if quiet:
        return QuietReporter()
    if sys.stderr.isatty():
        return RichReporter()
    return PlainReporter()
