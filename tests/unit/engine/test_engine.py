"""The Engine over a transport it is given (httpx.MockTransport): API version negotiation, the
engine kind, how failures are worded and named by side, which waits are bounded, no retries."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpcore
import httpx
import pytest

from docker_d2d.endpoint import parse_endpoint
from docker_d2d.engine.answers import negotiate_version
from docker_d2d.engine.client import Engine
from docker_d2d.engine.watch import ReadStalled, Timeouts
from docker_d2d.errors import ConnectError, EngineError, ImageNotFound, StalledError
from docker_d2d.model import EngineKind

ENDPOINT = parse_endpoint("tcp://10.0.0.9:2375")
IMAGE = "sha256:" + "a" * 64
Handler = Callable[[httpx.Request], httpx.Response]


class FakeEngine:
    """Answers like a Docker engine of API `api`; `seen` keeps every request."""

    def __init__(
        self,
        api: str = "1.45",
        min_api: str | None = None,
        components: tuple[str, ...] = ("Engine",),
        driver: str = "overlay2",
    ) -> None:
        self.api, self.min_api, self.components, self.driver = api, min_api, components, driver
        self.seen: list[httpx.Request] = []
        self.routes: dict[tuple[str, str], Handler] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        path = request.url.path
        route = self.routes.get((request.method, path))
        if route is not None:
            return route(request)
        if path == "/_ping":
            return httpx.Response(200, headers={"Api-Version": self.api}, text="OK")
        if path == "/version":
            doc: dict[str, object] = {"Version": "26.1.5", "ApiVersion": self.api, "Os": "linux", "Arch": "arm64"}
            doc["Components"] = [{"Name": c} for c in self.components]
            if self.min_api:
                doc["MinAPIVersion"] = self.min_api
            return httpx.Response(200, json=doc)
        if path.endswith("/info"):
            status = [["driver-type", "io.containerd.snapshotter.v1"]] if self.driver == "containerd" else []
            return httpx.Response(200, json={"DriverStatus": status})
        return httpx.Response(404, json={"message": f"no such route {path}"})


def engine(handler: Handler, tmp_path: Path, environ: dict[str, str] | None = None) -> Engine:
    env = {"DOCKER_D2D_CACHE_DIR": str(tmp_path), **(environ or {})}
    return Engine(ENDPOINT, "source", httpx.MockTransport(handler), timeouts=Timeouts(connect=3, stall=8), environ=env)


# --- API version negotiation and the engine kind -------------------------------------------------


def test_api_version_negotiation() -> None:
    assert negotiate_version("1.41") == "1.41"
    assert negotiate_version("1.51") == "1.45"  # never newer than ours
    assert negotiate_version("1.45", override="1.40") == "1.40"
    assert negotiate_version(None) == "1.24"
    # An engine that refuses older clients (Docker 29's floor): its floor, not ours.
    assert negotiate_version("1.99", server_min="1.98") == "1.98"
    assert negotiate_version("1.51", server_min="1.44") == negotiate_version("1.51")
    assert negotiate_version("1.41", server_min="1.24") == "1.41"


@pytest.mark.parametrize(
    ("api", "min_api", "override", "spoken"),
    [
        ("1.41", None, None, "1.41"),
        ("1.51", None, None, "1.45"),
        ("1.51", "1.50", None, "1.50"),
        ("1.51", None, "1.43", "1.43"),
    ],
)
def test_connect_speaks_the_negotiated_version(
    api: str, min_api: str | None, override: str | None, spoken: str, tmp_path: Path
) -> None:
    fake = FakeEngine(api, min_api)
    env = {"DOCKER_API_VERSION": override} if override else {}
    with engine(fake, tmp_path, env) as eng:
        info = eng.connect()
        assert info.api_version == spoken and eng.server_api == api
        assert fake.seen[-1].url.path == f"/v{spoken}/info"  # calls after the ping are versioned
        assert eng.speaks(api) and not eng.speaks("9.99")


@pytest.mark.parametrize(
    ("components", "driver", "kind"),
    [
        (("Engine",), "overlay2", EngineKind.GRAPHDRIVER),
        (("Engine",), "containerd", EngineKind.CONTAINERD),
        (("Podman Engine",), "overlay2", EngineKind.PODMAN),
    ],
)
def test_connect_tells_the_engine_kind(
    components: tuple[str, ...], driver: str, kind: EngineKind, tmp_path: Path
) -> None:
    fake = FakeEngine(components=components, driver=driver)
    with engine(fake, tmp_path) as eng:
        info = eng.connect()
    assert info.kind is kind and info.arch == "arm64"
    assert ("/v1.45/info" in [r.url.path for r in fake.seen]) is (kind is not EngineKind.PODMAN)


def test_something_else_on_the_port_is_no_engine(tmp_path: Path) -> None:
    with engine(lambda r: httpx.Response(502, text="bad gateway"), tmp_path) as eng, pytest.raises(EngineError) as err:
        eng.connect()
    assert "does not answer like a Docker engine (HTTP 502)" in str(err.value)
    assert err.value.side == "source" and err.value.endpoint == str(ENDPOINT)


# --- failures: mapped to our errors, naming the side ---------------------------------------------


def test_not_found_is_image_not_found_with_the_engines_message(tmp_path: Path) -> None:
    fake = FakeEngine()
    with engine(fake, tmp_path) as eng:
        eng.connect()
        with pytest.raises(ImageNotFound) as err:
            eng.inspect("missing:1")
        assert eng.find("missing:1") is None
    assert str(err.value) == f"source {ENDPOINT}: image missing:1: no such route /v1.45/images/missing:1/json"
    assert err.value.status == 404


def test_a_server_error_keeps_its_status_and_text(tmp_path: Path) -> None:
    fake = FakeEngine()
    fake.routes[("POST", f"/v1.45/images/{IMAGE}/tag")] = lambda r: httpx.Response(500, text="  disk on fire\n")
    with engine(fake, tmp_path) as eng:
        eng.connect()
        with pytest.raises(EngineError) as err:
            eng.tag(IMAGE, "app", "1")
    assert err.value.message == "tag app:1: disk on fire" and err.value.status == 500
    assert not isinstance(err.value, ImageNotFound)


def test_a_load_that_fails_inside_its_200_answer_fails(tmp_path: Path) -> None:
    fake = FakeEngine()
    stream = b'{"stream":"Loaded image"}\n{"errorDetail":{"message":"no space left on device"}}\n'
    fake.routes[("POST", "/v1.45/images/load")] = lambda r: httpx.Response(200, content=stream)
    with engine(fake, tmp_path) as eng:
        eng.connect()
        with pytest.raises(EngineError, match="load failed: no space left on device"):
            eng.load([b"tar"])
    fake.routes[("POST", "/v1.45/images/load")] = lambda r: httpx.Response(200, content=b'{"stream":" Loaded\\n"}')
    with engine(fake, tmp_path) as eng:
        eng.connect()
        assert eng.load([b"tar"]) == ["Loaded"]


@pytest.mark.parametrize(
    ("components", "driver", "quiet"),
    [(("Engine",), "overlay2", "0"), (("Engine",), "containerd", "1"), (("Podman Engine",), "overlay2", "1")],
)
def test_only_a_graphdriver_engine_is_asked_for_load_progress(
    components: tuple[str, ...], driver: str, quiet: str, tmp_path: Path
) -> None:
    """Docker with a graphdriver reports each layer it registers, so its load's answer keeps
    moving; the others say nothing until done, whatever they are asked (their silence is allowed
    for by the bytes sent instead)."""
    fake = FakeEngine(components=components, driver=driver)
    progress = (
        b'{"status":"Loading layer","progressDetail":{"current":1,"total":2}}\n{"stream":"Loaded image: a:1\\n"}\n'
    )
    fake.routes[("POST", "/v1.45/images/load")] = lambda r: httpx.Response(200, content=progress)
    with engine(fake, tmp_path) as eng:
        eng.connect()
        assert eng.load([b"tar"]) == ["Loaded image: a:1"]
    assert fake.seen[-1].url.params["quiet"] == quiet


def raising(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("exc", "cls", "words"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), ConnectError, "connection refused by 10.0.0.9:2375"),
        (httpx.ConnectTimeout("timed out"), ConnectError, "no answer from 10.0.0.9:2375 within 3 s"),
        (
            httpx.ReadTimeout("timed out"),
            ConnectError,
            "accepted the connection but did not answer the ping within 3 s",
        ),
        (httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] x"), ConnectError, "not trusted by the CA given"),
        (httpx.RemoteProtocolError("peer closed"), EngineError, "connection to the engine failed: peer closed"),
    ],
)
def test_transport_failures_are_worded_and_name_the_side(
    exc: Exception, cls: type[Exception], words: str, tmp_path: Path
) -> None:
    with engine(raising(exc), tmp_path) as eng, pytest.raises(cls) as err:
        eng.connect()
    assert words in str(err.value) and str(err.value).startswith(f"source {ENDPOINT}: ")


def test_a_stall_is_a_stalled_error(tmp_path: Path) -> None:
    def stalled(request: httpx.Request) -> httpx.Response:
        try:
            raise ReadStalled("no byte moved for 8 s and the engine did not answer a ping")
        except ReadStalled as cause:
            raise httpx.ReadTimeout("stalled") from cause

    fake = FakeEngine()
    fake.routes[("GET", "/v1.45/images/get")] = stalled
    with engine(fake, tmp_path) as eng:
        eng.connect()
        with pytest.raises(StalledError) as err, eng.save([IMAGE]) as chunks:
            list(chunks)
    assert "stalled waiting for the export: no byte moved for 8 s" in str(err.value)
    assert isinstance(err.value.__cause__, httpx.ReadTimeout)


def test_an_export_cut_off_mid_stream(tmp_path: Path) -> None:
    def cut(request: httpx.Request) -> httpx.Response:
        def body() -> Iterator[bytes]:
            yield b"x" * 10
            raise httpcore.ReadError("connection reset")

        return httpx.Response(200, stream=_Stream(body()))

    fake = FakeEngine()
    fake.routes[("GET", "/v1.45/images/get")] = cut
    with engine(fake, tmp_path) as eng:
        eng.connect()
        with pytest.raises(EngineError, match="the export stopped mid-stream"), eng.save([IMAGE]) as chunks:
            list(chunks)


class _Stream(httpx.SyncByteStream):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.chunks
        except httpcore.ReadError as exc:
            raise httpx.ReadError(str(exc)) from exc


# --- waits and retries ------------------------------------------------------------------------------


def test_first_contact_waits_the_connect_timeout_and_streams_wait_for_the_watchdog(tmp_path: Path) -> None:
    fake = FakeEngine()
    fake.routes[("GET", "/v1.45/images/get")] = lambda r: httpx.Response(200, stream=_Stream(iter([b"tar"])))
    with engine(fake, tmp_path) as eng:
        eng.connect()
        with eng.save([IMAGE]) as chunks:
            assert b"".join(chunks) == b"tar"
    first = {r.url.path: r.extensions["timeout"] for r in fake.seen}
    assert first["/_ping"] == {"connect": 3, "read": 3, "write": 3, "pool": 3}
    assert first["/version"] == first["/v1.45/info"] == first["/_ping"]
    # No read or write timeout on the export: a long silence is the watchdog's to judge (watch.py).
    assert first["/v1.45/images/get"] == {"connect": 3, "read": None, "write": None, "pool": None}
    assert fake.seen[-1].url.params.get_list("names") == [IMAGE]


def test_a_failed_call_is_not_retried(tmp_path: Path) -> None:
    """A load must never go twice: whatever failed is the caller's to decide about."""
    fake = FakeEngine()
    calls = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("[Errno 111] Connection refused")

    fake.routes[("POST", "/v1.45/images/load")] = refuse
    with engine(fake, tmp_path) as eng:
        eng.connect()
        with pytest.raises(EngineError, match=r"the load failed: .*Connection refused"):
            eng.load([b"tar"])
    assert len(calls) == 1


def test_inspect_answers_are_kept_by_id(tmp_path: Path) -> None:
    fake = FakeEngine()
    doc = {"Id": IMAGE, "RootFS": {"Layers": ["sha256:" + "1" * 64]}, "Config": {}, "Os": "linux"}
    fake.routes[("GET", "/v1.45/images/json")] = lambda r: httpx.Response(
        200, json=[{"Id": IMAGE, "RepoTags": ["a:1"]}]
    )
    fake.routes[("GET", f"/v1.45/images/{IMAGE}/json")] = lambda r: httpx.Response(200, json=doc)
    for _ in range(2):
        with engine(fake, tmp_path) as eng:
            eng.connect()
            (held,) = eng.all_images()
        assert held.id == IMAGE and held.repo_tags == ("a:1",)
    inspects = [r for r in fake.seen if r.url.path == f"/v1.45/images/{IMAGE}/json"]
    assert len(inspects) == 1, "the second run asked the cache"
    assert json.loads(next(tmp_path.glob("inspect/*.json")).read_text())["images"][IMAGE]["diff_ids"]


def test_a_cached_containerd_image_listed_unavailable_is_asked_again(tmp_path: Path) -> None:
    """Docker 28 lists an image whose blobs went behind our back, marked unavailable (API 1.47),
    and inspect then answers no layers: the cached entry that said otherwise goes, and `stale`
    says so once."""
    fake = FakeEngine(api="1.47", driver="containerd")
    layers: list[str] = ["sha256:" + "1" * 64]
    manifests: list[dict[str, object]] = [{"Kind": "image", "Available": True}]
    fake.routes[("GET", "/v1.45/images/json")] = lambda r: httpx.Response(200, json=[{"Id": IMAGE}])
    fake.routes[("GET", "/v1.47/images/json")] = lambda r: httpx.Response(
        200, json=[{"Id": IMAGE, "Manifests": manifests}]
    )
    fake.routes[("GET", f"/v1.45/images/{IMAGE}/json")] = lambda r: httpx.Response(
        200, json={"Id": IMAGE, "RootFS": {"Layers": layers}, "Config": {}, "Os": "linux"}
    )
    with engine(fake, tmp_path) as eng:
        eng.connect()
        assert [i.diff_ids for i in eng.all_images()] == [tuple(layers)] and eng.stale == []
    layers.clear()
    manifests[0]["Available"] = False
    with engine(fake, tmp_path) as eng:
        eng.connect()
        assert eng.all_images() == [] and eng.stale == [IMAGE]
    assert IMAGE not in json.loads(next(tmp_path.glob("inspect/*.json")).read_text())["images"]


def test_answers_is_a_bounded_ping(tmp_path: Path) -> None:
    fake = FakeEngine()
    with engine(fake, tmp_path) as eng:
        assert eng.answers(2.0)
    with engine(raising(httpx.ConnectError("[Errno 111] Connection refused")), tmp_path) as eng:
        assert not eng.answers(2.0)
