"""The Engine API client: the calls docker-d2d makes to a Docker-compatible engine.

Works the same against Docker (graphdriver or containerd image store) and Podman's
compatible API; `EngineInfo.kind` says which one answered. An Engine talks over the httpx
transport it is given (`open_engine` makes the real ones: unix, tcp+TLS, ssh, each watched by
watch.py), so its calls and error mapping can be tested against httpx.MockTransport (api.py
holds the plumbing).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import httpx

from ..endpoint import Endpoint, Scheme
from ..errors import D2DError, EngineError, ImageNotFound
from ..model import EngineKind, ImageInfo, Platform
from .answers import (
    available,
    full_id,
    history_size,
    image_info,
    json_stream,
    stream_error,
)
from .api import ApiClient, Pinger
from .inspect_cache import InspectCache
from .pool import SSHPool
from .transports import make_transport
from .watch import Silence, Timeouts, stall_cause, within

CHUNK = 1 << 20
# Concurrent inspects over one connection (each an ssh channel over ssh; OpenSSH allows 10 sessions).
INSPECT_CONCURRENCY = 8
# The containerd store and Podman say nothing between taking a load's last byte and their answer,
# for as long as they register its layers: measured here for 800 MiB of incompressible layers, 1.0 s
# (Docker 28.5 containerd store) to 14.9 s (Podman 4.3 and 5.4), about 19 ms a MiB at worst
# (tests/bench/bench_load_gaps.py). Their load connection may be that silent for the stall timeout
# plus this much a MiB of body sent: ten times the worst measured, for slower disks and compressed
# bodies. Docker with a graphdriver reports each layer's progress (quiet=0), so no allowance.
SILENT_LOAD_PER_MB = 0.2
LIBPOD_INFO = "/v4.0.0/libpod/info"  # Podman 4 and 5 answer it under any version they speak


def open_engine(endpoint: Endpoint, side: str, timeouts: Timeouts, ssh: SSHPool) -> Engine:
    """The Engine at `endpoint`, over the transports its scheme takes (not contacted yet); over
    ssh through the run's connection to that host."""
    try:
        pinger = Pinger(*make_transport(endpoint, timeouts, ssh=ssh), timeouts.probe)
        transport, base = make_transport(endpoint, timeouts, ssh=ssh, alive=pinger.alive)
    except D2DError as exc:
        raise exc.with_side(side, str(endpoint)) from exc
    connection = ssh.connection(endpoint, timeouts) if endpoint.scheme is Scheme.SSH else None
    return Engine(endpoint, side, transport, base_url=base, timeouts=timeouts, pinger=pinger, ssh=connection)


class Engine(ApiClient):
    """A connected engine (connect first). Use as a context manager."""

    def inspect(self, ref: str) -> ImageInfo:
        """Always asks the engine; every answer also goes into the inspect cache."""
        info = image_info(self._get_json(f"/images/{quote(ref, safe='/:@')}/json", f"image {ref}"))
        if self.info is not None:
            self._inspect_cache().put(info)
        return info

    def _inspect_cache(self) -> InspectCache:
        assert self.info is not None
        if self._cache is None:
            self._cache = InspectCache.for_engine(str(self.endpoint), self.info.kind, self.environ)
        return self._cache

    def inspect_platform(self, ref: str, platform: Platform | None) -> ImageInfo:
        """Inspect as API 1.49 answers (the store's descriptor; one platform of an index)."""
        params = {"platform": json.dumps(platform.as_json())} if platform else None
        resp = self._request("GET", f"/v1.49/images/{quote(ref, safe='/:@')}/json", params=params)
        self._check(resp, f"image {ref}" + (f" for {platform}" if platform else ""))
        return image_info(resp.json())

    def find(self, ref: str) -> ImageInfo | None:
        try:
            return self.inspect(ref)
        except ImageNotFound:
            return None

    def storage_info(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """What the engine says of its storage (formats/stores/probe.py reads it): /info, and
        Podman's /libpod/info (None for Docker)."""
        assert self.info is not None
        info = self._get_json("/info", "info")
        if self.info.kind is not EngineKind.PODMAN:
            return info, None
        resp = self._request("GET", LIBPOD_INFO, "libpod info")
        self._check(resp, "libpod info")
        return info, resp.json()

    def remove_untagged(self, image_id: str) -> bool:
        """Remove an image that carries no tag (what an interrupted load left); False if it is
        not there or someone tagged it meanwhile."""
        found = self.find(image_id)
        if found is None or found.repo_tags:
            return False
        resp = self._request("DELETE", self._url(f"/images/{quote(image_id, safe=':')}"))
        self._check(resp, f"remove {image_id}")
        return True

    def history_sizes(self, ref: str, platform: Platform | None = None) -> list[int]:
        """Sizes of the history entries, oldest first (0 for steps without a layer)."""
        if platform is None:
            try:
                data = self._get_json(f"/images/{quote(ref, safe='/:@')}/history", f"history of {ref}")
            except EngineError as exc:
                if exc.status < 500:
                    raise
                # The sizes are only estimates. Podman 4.3 and 5.4 answer 500 (a nil pointer) for
                # history entries without `created`, which the image spec allows.
                return []
        else:
            resp = self._request(
                "GET",
                f"/v1.48/images/{quote(ref, safe='/:@')}/history",
                params={"platform": json.dumps(platform.as_json())},
            )
            self._check(resp, f"history of {ref}")
            data = resp.json()
        # An image whose config has no history: the containerd store answers null (issue 11).
        return [history_size(h.get("Size")) if isinstance(h, dict) else 0 for h in reversed(data or [])]

    def list_images(self) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """id -> (tags, repo digests) of every image. all=1: graphdriver engines keep intermediate
        images whose layers count as held too."""
        listed = self._get_json("/images/json", "image list", all="1")
        return {
            full_id(img["Id"]): (tuple(img.get("RepoTags") or ()), tuple(img.get("RepoDigests") or ()))
            for img in listed
        }

    def tags(self) -> list[str]:
        """Every repository:tag the engine holds."""
        return [tag for tags, _ in self.list_images().values() for tag in tags]

    def list_image_ids(self) -> list[str]:
        return list(self.list_images())

    def labelled(self, label: str, value: str) -> list[str]:
        """Ids of the images whose config carries this label with this value."""
        filters = json.dumps({"label": [f"{label}={value}"]})
        listed = self._get_json("/images/json", "image list", all="1", filters=filters)
        return [full_id(img["Id"]) for img in listed]

    def all_images(self) -> list[ImageInfo]:
        """Every image the engine lists. Inspect answers are cached by id (content addresses) and
        the rest are asked for concurrently: planning costs about one round trip whatever the
        number of images. Cached entries the engine now contradicts are dropped (`self.stale`)."""
        assert self.info is not None
        listed = self.list_images()
        cache = self._inspect_cache()
        if any(cache.get(i) for i in listed):  # the cache may say such an image holds layers
            self.recheck(self._unavailable())
        missing = [i for i in listed if cache.get(i) is None]
        if missing:
            with ThreadPoolExecutor(max_workers=INSPECT_CONCURRENCY) as pool:
                list(pool.map(self.find, missing))  # an image removed meanwhile is simply not there
        cache.keep_only(listed)
        cache.save()
        images = []
        for image_id, (tags, digests) in listed.items():
            held = cache.get(image_id)
            if held:
                images.append(replace(held, repo_tags=tags, repo_digests=digests))
        return images

    def recheck(self, image_ids: Iterable[str]) -> list[str]:
        """Inspect afresh the cached images among `image_ids`; drop the entries the engine now
        contradicts (another answer, no layers, or no such image). Returns their ids, which are
        also added to `stale`."""
        wrong = self._inspect_cache().recheck(image_ids, self._inspect_briefly)
        self.stale.extend(wrong)
        return wrong

    def _inspect_briefly(self, image_id: str) -> ImageInfo | None:
        # Each answer within the connect timeout: an engine going away is no reason to wait.
        path = f"/images/{quote(image_id, safe=':')}/json"
        try:
            return image_info(self._get_json(path, f"image {image_id}", self.timeouts.connect))
        except ImageNotFound:
            return None

    def _unavailable(self) -> list[str]:
        """Listed images of a containerd store none of whose platforms has all its content (blobs
        removed behind our back: Docker 28 lists such an image, and inspect then answers no layers)."""
        if self.info is None or self.info.kind is not EngineKind.CONTAINERD or not self.speaks("1.47"):
            return []
        gone = []
        for img in self._manifests_listed():
            platforms = available(img)
            if platforms and not any(platforms):
                gone.append(full_id(img["Id"]))
        return gone

    def _manifests_listed(self) -> list[dict[str, Any]]:
        """The image list with each image's manifests and whether their content is there (API 1.47)."""
        resp = self._request("GET", "/v1.47/images/json", params={"all": "1", "manifests": "1"})
        self._check(resp, "image list")
        return list(resp.json())

    def image_complete(self, image_id: str) -> bool:
        """Whether the containerd store holds every blob of an image. Docker 26 hides an image with
        missing content from its list; Docker 28 lists it, marked unavailable (API 1.47 summaries)."""
        if self.speaks("1.47"):
            return any(img.get("Id") == image_id and all(available(img)) for img in self._manifests_listed())
        return image_id in self.list_image_ids()

    def remove(self, image_id: str) -> None:
        """Remove an image docker-d2d loaded (an incomplete load or a probe); a missing one is fine."""
        resp = self._request("DELETE", self._url(f"/images/{quote(image_id, safe=':')}"), params={"force": "1"})
        if resp.status_code != 404:
            self._check(resp, f"remove {image_id}")

    @contextmanager
    def save(self, names: Iterable[str], platform: Platform | None = None) -> Iterator[Iterator[bytes]]:
        """Stream `docker save` of the given images as raw tar bytes; `platform` (API 1.48) asks
        for one platform of a multi-platform image."""
        params: list[tuple[str, str | int | float | bool | None]] = [("names", n) for n in names]
        url = self._url("/images/get")
        if platform is not None:
            params.append(("platform", json.dumps(platform.as_json())))
            url = "/v1.48/images/get"
        try:
            with self._client.stream("GET", url, params=params) as resp:
                self._check(resp, "export")
                yield self._iter_save(resp)
        except httpx.HTTPError as exc:
            raise self._error(exc, "the export", call=False) from exc

    def _iter_save(self, resp: httpx.Response) -> Iterator[bytes]:
        try:
            yield from resp.iter_raw(CHUNK)
        except httpx.HTTPError as exc:
            if stall_cause(exc):
                raise self._error(exc, "the export's next bytes", call=False) from exc
            raise self._at(EngineError(f"the export stopped mid-stream: {exc}")) from exc

    def load(self, body: Iterable[bytes | memoryview], content_type: str = "application/x-tar") -> list[str]:
        """POST /images/load; read the whole message stream, since the engine reports failures
        inside an HTTP 200 answer. Returns the engine's messages.

        The load's connection may go silent for the stall timeout only (plus, at engines that
        answer nothing until they are done, an allowance for the bytes sent), whether or not the
        engine answers pings: a live engine is no proof that this connection still moves."""
        speaks = self.info is not None and self.info.kind is EngineKind.GRAPHDRIVER
        silence = Silence(self.timeouts.stall, 0.0 if speaks else SILENT_LOAD_PER_MB)

        def counted() -> Iterator[bytes | memoryview]:
            for chunk in body:
                yield chunk
                silence.sent += len(chunk)

        try:
            with (
                within(silence),
                self._client.stream(
                    "POST",
                    self._url("/images/load"),
                    # Docker with a graphdriver then reports each layer as it registers it (moby
                    # image/tarexport/load.go): the answer keeps moving until the load is done.
                    params={"quiet": "0" if speaks else "1"},
                    content=counted(),  # type: ignore[arg-type]  # httpx writes any buffer to the socket
                    headers={"Content-Type": content_type},
                ) as resp,
            ):
                self._check(resp, "load")
                text = resp.read().decode(errors="replace")
        except httpx.HTTPError as exc:
            if stall_cause(exc):
                raise self._error(exc, "the load") from exc  # sending it, or waiting for its answer
            raise self._at(EngineError(f"the load failed: {exc}")) from exc
        detail = stream_error(json_stream(text))
        if detail is not None:
            raise self._at(EngineError(f"load failed: {detail}"))
        return [str(msg["stream"]).strip() for msg in json_stream(text) if msg.get("stream")]

    def pull(self, image: str, tag: str, auth: str | None = None) -> list[dict[str, Any]]:
        """POST /images/create: the engine pulls from a registry. Like a load, failures may come inside
        an HTTP 200 answer. Returns the engine's progress messages."""
        headers = {"X-Registry-Auth": auth} if auth else {}
        try:
            with self._client.stream(
                "POST", self._url("/images/create"), params={"fromImage": image, "tag": tag}, headers=headers
            ) as resp:
                self._check(resp, f"pull {image}:{tag}")
                text = resp.read().decode(errors="replace")
        except httpx.HTTPError as exc:
            raise self._at(EngineError(f"the pull of {image}:{tag} failed: {exc}")) from exc
        detail = stream_error(json_stream(text))
        if detail is not None:
            raise self._at(EngineError(f"pull of {image}:{tag} failed: {detail}"))
        return list(json_stream(text))

    def untag(self, ref: str) -> None:
        """Remove a name; the image stays while another name holds it."""
        resp = self._request("DELETE", self._url(f"/images/{quote(ref, safe='/:@')}"), params={"noprune": "1"})
        self._check(resp, f"remove the name {ref}")

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        resp = self._request(
            "POST",
            self._url(f"/images/{quote(image_id, safe=':')}/tag"),
            f"tag {repository}:{tag}",
            params={"repo": repository, "tag": tag},
        )
        self._check(resp, f"tag {repository}:{tag}")

    def containers(self, label: str) -> list[str]:
        """Names of the running containers carrying `label` (key=value): a cluster's node containers."""
        filters = json.dumps({"label": [label]})
        listed = self._get_json("/containers/json", "container list", filters=filters)
        return [str(c["Names"][0]).lstrip("/") for c in listed if c.get("Names")]
