from __future__ import annotations

from docker_d2d.model import EngineKind, ImageInfo, ImageRef, RefKind
from docker_d2d.registry.refs import registry_of
from docker_d2d.transfer.bases import find_bases
from docker_d2d.transfer.plan import holdings, plan_transfer


def d(n: int) -> str:
    return f"sha256:{n:064x}"


def img(n: int, layers: list[int], digests: tuple[str, ...] = ()) -> ImageInfo:
    return ImageInfo(d(1000 + n), tuple(d(i) for i in layers), repo_digests=digests)


APP = img(1, [1, 2, 3, 4])


def plan_against(held: list[ImageInfo]):  # type: ignore[no-untyped-def]
    ref = ImageRef("app:1", RefKind.TAG, "app", "1")
    return plan_transfer([(ref, APP, (None,) * 4)], EngineKind.GRAPHDRIVER, holdings(EngineKind.GRAPHDRIVER, held))


def test_the_longest_pullable_base_the_destination_lacks() -> None:
    small = img(2, [1], ("reg/a@sha256:" + "1" * 64,))
    big = img(3, [1, 2], ("reg/b@sha256:" + "2" * 64,))
    untagged = img(4, [1, 2, 3])  # no repo digest: not pullable
    (base,) = find_bases(plan_against([]), [small, big, untagged])
    assert base.ref.startswith("reg/b@") and base.missing == 2


def test_no_base_when_the_destination_has_its_layers_or_it_is_not_a_prefix() -> None:
    base = img(2, [1, 2], ("reg/b@sha256:" + "2" * 64,))
    assert find_bases(plan_against([img(9, [1, 2])]), [base]) == []
    other = img(5, [7, 2], ("reg/c@sha256:" + "3" * 64,))
    assert find_bases(plan_against([]), [other]) == []
    whole = img(6, [1, 2, 3, 4], ("reg/d@sha256:" + "4" * 64,))  # the image itself: not a base
    assert find_bases(plan_against([]), [whole]) == []


def test_registry_of() -> None:
    assert registry_of("127.0.0.1:5000/base@sha256:x") == "127.0.0.1:5000"
    assert registry_of("ghcr.io/org/app@sha256:x") == "ghcr.io"
    assert registry_of("debian@sha256:x") == "docker.io"
    assert registry_of("library/debian@sha256:x") == "docker.io"
    assert registry_of("localhost/x@sha256:x") == "localhost"
