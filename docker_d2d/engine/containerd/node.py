"""NodeEngine: a Kubernetes node's containerd (no Docker), driven through its `ctr` (runner.py),
as a transfer's destination.

What it holds: the images of its namespace (k8s.io), read from their manifests and configs in the
content store, and the layer blobs that store still has (listing.py). A load is `ctr images import`
of the thin OCI archive with the archive on stdin: the images land under a name of this run's
(`docker-d2d-import/<run>@sha256:<manifest>`), unpacked for the node's platform; only once they
are verified (every blob there, every layer's snapshot committed) do they get the CRI name the
user asked for, and the import's own name goes again. Failures and interrupts remove that name,
and containerd's garbage collector what only it held.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import secrets
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ...endpoint import Endpoint
from ...errors import D2DError, EngineError, VerifyError
from ...formats.digests import chain_ids, short
from ...formats.oci import Descriptor
from ...model import EngineInfo, EngineKind, ImageInfo, Platform, familiar, parse_ref
from .inflate import compression_of, inflated
from .listing import (
    IMPORT_PREFIX,
    Described,
    NodeImage,
    client_version,
    cri_name,
    describe,
    is_index,
    node_platform,
    parse_check,
    parse_content,
    parse_images,
    parse_snapshots,
    pick_manifest,
    reads_compressed,
    server_version,
)
from .runner import Body, Runner, SSHRunner

if TYPE_CHECKING:
    from ..ssh import SSHConnection

log = logging.getLogger("docker_d2d.node")
# Blobs read at once (each a `ctr content get`: an exec channel over ssh, a process here).
READ_CONCURRENCY = 8


class _BodyFailed(Exception):
    def __init__(self, error: D2DError) -> None:
        super().__init__(str(error))
        self.error = error


def _guarded(body: Iterable[bytes | memoryview]) -> Iterator[bytes | memoryview]:
    """The body, its own failures told apart from the node's (ctr_run names those the destination's)."""
    try:
        yield from body
    except D2DError as exc:
        raise _BodyFailed(exc) from exc


class NodeEngine:
    """A node's containerd through `ctr` (`ctr` is its argv: e.g. `ctr --address SOCK` or `k3s ctr`)."""

    def __init__(self, endpoint: Endpoint, side: str, runner: Runner, ctr: Sequence[str], namespace: str) -> None:
        self.endpoint = endpoint
        self.side = side
        self.runner = runner
        self.ctr = list(ctr)
        self.namespace = namespace
        self.info: EngineInfo | None = None
        self.api_version = "ctr"
        self.notes: list[str] = []  # what the user should hear once connected (copy.py, fleet.py)
        self.stale: list[str] = []
        self.import_name = f"{IMPORT_PREFIX}{secrets.token_hex(6)}"
        self._described: dict[str, Described] = {}  # image id -> its description (content addresses)
        self._names: dict[str, list[str]] = {}  # image id -> its names in the namespace
        self._blobs: set[str] = set()
        self._lock = threading.Lock()

    # --- running ctr -----------------------------------------------------------------------

    def ctr_run(self, *args: str, stdin: Body | None = None, shell_prefix: str = "") -> bytes:
        try:
            return self.runner.run([*self.ctr, "-n", self.namespace, *args], stdin, shell_prefix)
        except D2DError as exc:
            raise exc.with_side(self.side, str(self.endpoint)) from exc

    def _text(self, *args: str) -> str:
        return self.ctr_run(*args).decode(errors="replace")

    # --- EngineSide ------------------------------------------------------------------------

    def connect(self) -> EngineInfo:
        try:
            versions = self._text("version")
        except EngineError as exc:
            if not (self.runner.remote_shell and "permission denied" in exc.message.lower()):
                raise
            versions = self._through_sudo(exc)
        version, client = server_version(versions), client_version(versions)
        platform = node_platform(self._text("plugins", "ls"))
        # As a source a node is what the containerd store of Docker is: images named by manifest or
        # index, blobs exported as held (compressed as pulled).
        kind = EngineKind.NODE if self.side == "destination" else EngineKind.CONTAINERD
        self.info = EngineInfo(
            kind, version or "?", client or "?", platform.os, platform.architecture, name="containerd"
        )
        return self.info

    def _through_sudo(self, refused: EngineError) -> str:
        """An ssh user who may not open the socket: `sudo -n ctr` when sudo lets it without a
        password (one note), else the refusal, with what would allow it."""
        try:
            versions = self.runner.run(["sudo", "-n", *self.ctr, "-n", self.namespace, "version"])
        except D2DError:
            raise EngineError(
                f"{refused.message} (the ssh user may not use the containerd socket: connect as root, or allow "
                f"`sudo -n {self.ctr[0]}` for that user)",
                side=self.side,
                endpoint=str(self.endpoint),
            ) from None
        self.ctr = ["sudo", "-n", *self.ctr]
        self.notes.append(
            f"{self.endpoint}: the ssh user may not use the containerd socket; running `sudo -n {self.ctr[2]}`"
        )
        return versions.decode(errors="replace")

    def close(self) -> None:
        pass

    def __enter__(self) -> NodeEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def answers(self, seconds: float) -> bool:
        try:
            self._text("version")
        except D2DError:
            return False
        return True

    def _listing(self) -> list[NodeImage]:
        images = parse_images(self._text("images", "ls"))
        names: dict[str, list[str]] = {}
        for image in images:
            names.setdefault(image.digest, []).append(image.name)
        self._names = names
        return images

    def blob(self, digest: str) -> bytes:
        return self.ctr_run("content", "get", digest)

    def _describe(self, image: NodeImage) -> Described | None:
        """An image of the namespace, read from its blobs; None when its content is not there."""
        if image.digest in self._described:
            return self._described[image.digest]
        try:
            target = self.blob(image.digest)
            manifest = target
            if is_index(image.media_type):
                assert self.info is not None
                desc = pick_manifest(json.loads(target), self.info.platform)
                if desc is None:
                    return None
                manifest = self.blob(desc["digest"])
            config = self.blob(json.loads(manifest)["config"]["digest"])
        except (EngineError, KeyError, ValueError):
            return None  # content missing (a lazy pull, an import that failed): holds nothing for us
        described = describe(image.digest, tuple(self._names.get(image.digest, ())), manifest, config)
        with self._lock:
            self._described[image.digest] = described
        return described

    def all_images(self) -> list[ImageInfo]:
        listed = self._listing()
        if self.side == "destination" and self._drop_leftovers(listed):
            listed = self._listing()
        self._blobs = parse_content(self._text("content", "ls"))
        unique = list({i.digest: i for i in listed}.values())
        with ThreadPoolExecutor(max_workers=READ_CONCURRENCY) as pool:
            described = [d for d in pool.map(self._describe, unique) if d is not None]
        return [d.info for d in described]

    def _drop_leftovers(self, listed: Sequence[NodeImage]) -> bool:
        """Names an earlier run that was killed left under the import prefix (runs to one node
        take turns: transfer/lock.py), and what only they held."""
        leftovers = sorted({i.name for i in listed if i.name.startswith(IMPORT_PREFIX)})
        for name in leftovers:
            log.info("removing %s, left by an interrupted run", name)
            self.ctr_run("images", "rm", "--sync", name)
        return bool(leftovers)

    def layer_blobs(self) -> dict[str, Descriptor]:
        """diff id -> the descriptor of a blob the content store holds for it (after all_images):
        what a thin import may name instead of sending it. A layer whose content was discarded
        after unpacking is not among them: it travels."""
        held: dict[str, Descriptor] = {}
        for described in self._described.values():
            for diff, desc in described.layers.items():
                if desc.get("digest") in self._blobs:
                    held.setdefault(diff, desc)
        return held

    def inspect(self, ref: str) -> ImageInfo:
        found = self.find(ref)
        if found is None:
            raise EngineError(f"no image {ref} in namespace {self.namespace}", status=404)
        return found

    def tags(self) -> list[str]:
        """Every name:tag in the namespace, as the docker CLI shows names (`docker.io/library/`
        dropped): what a missing tag's message lists."""
        tags = []
        for image in self._listing():
            repository, _, tag = image.name.rpartition(":")
            if repository and "@" not in image.name and "/" not in tag and not image.name.startswith(IMPORT_PREFIX):
                tags.append(f"{familiar(repository)}:{tag}")
        return tags

    def find(self, ref: str) -> ImageInfo | None:
        """By digest, by name, or by the name the CRI gives what a user types (`app:1`)."""
        names = {ref}
        with contextlib.suppress(D2DError):
            parsed = parse_ref(ref)
            if parsed.tagged:
                names.add(cri_name(parsed.repository, parsed.tag))
        for image in self._listing():
            if image.digest in names or image.name in names:
                described = self._describe(image)
                return described.info if described else None
        return None

    # --- SourceEngine: a node's images exported as the containerd store's are ------------------

    server_api: str | None = None

    def speaks(self, version: str) -> bool:
        return False  # no Engine API: one platform, the one export asks for

    def inspect_platform(self, ref: str, platform: Platform | None) -> ImageInfo:
        raise EngineError("a node is asked for its own platform only")

    def history_sizes(self, ref: str, platform: Platform | None = None) -> list[int]:
        return []  # a node keeps no history sizes: the layers' compressed sizes bound them (describe)

    def save(self, names: Sequence[str], platform: Platform | None = None) -> AbstractContextManager[Iterator[bytes]]:
        """`ctr images export` of the images (by a name each has): an OCI layout with manifest.json,
        blobs as the content store holds them, like the containerd store's `docker save`."""
        return self.runner.stream(self.export_argv(names, platform))

    def export_argv(self, names: Sequence[str], platform: Platform | None = None) -> list[str]:
        assert self.info is not None
        refs = []
        for image_id in names:
            held = self._names.get(image_id) or []
            if not held:
                raise EngineError(f"no image {short(image_id)} to export", side=self.side, endpoint=str(self.endpoint))
            refs.append(held[0])
        platform = platform or self.info.platform
        return [*self.ctr, "-n", self.namespace, "images", "export", "--platform", str(platform), "-", *refs]

    @property
    def ssh(self) -> SSHConnection | None:
        """The ssh connection to the node's host (the agent runs on it), if it is reached so."""
        return self.runner.connection if isinstance(self.runner, SSHRunner) else None

    # --- DestinationEngine -----------------------------------------------------------------

    def load(self, body: Iterable[bytes | memoryview], content_type: str = "application/x-tar") -> list[str]:
        """`ctr images import` of the archive: its images named under this run's import name,
        unpacked. containerd 2 (its ctr and its daemon) reads a gzip or zstd body itself; 1.x ctr
        reads plain tar only: a gzip body is inflated by the node's `gzip -dc` first over ssh
        (compress.py offers it no zstd), and here, in this process, when the node is on this machine."""
        chunks = iter(body)
        first = b""
        for chunk in chunks:
            first = bytes(chunk)
            if first:
                break

        def whole() -> Iterator[bytes | memoryview]:
            yield first
            yield from chunks

        how = compression_of(first)
        stdin: Iterable[bytes | memoryview] = whole()
        prefix = ""
        if how != "none" and not self.reads_compressed():
            if self.runner.remote_shell:
                prefix = "gzip -dc | " if how == "gzip" else "zstd -dc | "
            else:
                stdin = inflated(stdin, how)
        log.info("import into %s: a %s body%s", self.endpoint, how, f", through `{prefix}`" if prefix else "")
        try:
            out = self.ctr_run(
                "images",
                "import",
                "--base-name",
                self.import_name,
                "--digests",
                "-",
                stdin=_guarded(stdin),
                shell_prefix=prefix,
            )
        except _BodyFailed as failed:
            raise failed.error from None  # the source's (the rewrite's): not this node's to name
        return [line for line in out.decode(errors="replace").splitlines() if line.strip()]

    def reads_compressed(self) -> bool:
        """Whether the node's `ctr images import` reads a gzip or zstd archive itself (2.x client and daemon)."""
        assert self.info is not None
        return reads_compressed(self.info)

    def list_image_ids(self) -> list[str]:
        return list({i.digest for i in self._listing()})

    def image_complete(self, image_id: str) -> bool:
        return self.check(image_id) is None

    def check(self, image_id: str) -> str | None:
        """Why the image this run imported is not usable yet (None: every blob is there, it is
        unpacked, and a snapshot of each of its layers is committed)."""
        name = f"{self.import_name}@{image_id}"
        checked = parse_check(self._text("images", "check", f"name=={name}")).get(name)
        if checked is None:
            return "it is not there after the import"
        if not checked.complete:
            return "the content store lacks some of its blobs"
        if not checked.unpacked:
            return "it was not unpacked"
        info = self.find(name)
        if info is None:
            return "its manifest or config cannot be read"
        snapshots = parse_snapshots(self._text("snapshots", "ls"))
        missing = [c for c in chain_ids(info.diff_ids) if snapshots.get(c) != "Committed"]
        if missing:
            return f"no committed snapshot of layer(s) {', '.join(short(c) for c in missing)}"
        return None

    def verify(self, image_id: str) -> None:
        why = self.check(image_id)
        if why is not None:
            raise VerifyError(f"image {short(image_id)}: {why}", side=self.side, endpoint=str(self.endpoint))

    def labelled(self, label: str, value: str) -> list[str]:
        return []  # no partial images at nodes (no checkpoints)

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        """The CRI's name (docker.io/library/...), pointing at the image this run imported or one
        the node held."""
        source = f"{self.import_name}@{image_id}"
        if source not in self._names.get(image_id, []):
            self._listing()
        names = self._names.get(image_id, [])
        if source not in names:
            if not names:
                raise EngineError(f"no image {short(image_id)} to tag", side=self.side, endpoint=str(self.endpoint))
            source = names[0]
        self.ctr_run("images", "tag", "--force", source, cri_name(repository, tag))
        self._forget_import(image_id)

    def _forget_import(self, image_id: str, sync: bool = False) -> bool:
        """Remove this run's import name of an image (its content stays while another name holds it)."""
        name = f"{self.import_name}@{image_id}"
        if name not in self._names.get(image_id, []):
            self._listing()
            if name not in self._names.get(image_id, []):
                return False
        self.ctr_run("images", "rm", *(["--sync"] if sync else []), name)
        self._names[image_id].remove(name)
        return True

    def untag(self, ref: str) -> None:
        self.ctr_run("images", "rm", ref)

    def remove(self, image_id: str) -> None:
        """Remove what this run imported of an image that failed (never a name the user gave)."""
        self._forget_import(image_id, sync=True)

    def remove_untagged(self, image_id: str) -> bool:
        return self._forget_import(image_id, sync=True)

    def remove_imports(self) -> None:
        """Every image under this run's import name (after a failure or an interrupt), and the
        content only they held; also what an earlier run killed midway left under the prefix."""
        for image in self._listing():
            if image.name.startswith(IMPORT_PREFIX):
                self.ctr_run("images", "rm", "--sync", image.name)

    def pull(self, image: str, tag: str, auth: str | None = None) -> list[dict[str, Any]]:
        """`ctr images pull` (--via): unpacked for the node's platform, as the kubelet pulls. `auth`:
        the X-Registry-Auth the engines get, given to ctr as --user. A registry that answers plain
        http (one the user gave as http://) is asked again with --plain-http."""
        ref = f"{image}:{tag}"
        user: list[str] = []
        if auth:
            doc = json.loads(base64.urlsafe_b64decode(auth.encode()))
            user = ["--user", f"{doc.get('username', '')}:{doc.get('password', '')}"]
        try:
            self.ctr_run("images", "pull", *user, ref)
        except EngineError as exc:
            if "HTTP response to HTTPS client" not in exc.message:
                raise
            self.ctr_run("images", "pull", "--plain-http", *user, ref)
        return [{"status": f"pulled {ref}"}]

    def recheck(self, image_ids: Iterable[str]) -> list[str]:
        return []
