from __future__ import annotations

from docker_d2d.formats.digests import chain_ids
from docker_d2d.formats.readers.legacy import legacy_v1_ids
from docker_d2d.formats.spec import OutputFormat
from docker_d2d.model import EngineInfo, EngineKind, ImageInfo, parse_ref
from docker_d2d.transfer.naming import Naming
from docker_d2d.transfer.plan import Decision, holdings, layer_sizes, plan_transfer, sending
from docker_d2d.transfer.spec import stream_spec

D = [f"sha256:{c * 64}" for c in "abcdef"]


def image(layers: list[str], ident: str = "sha256:" + "9" * 64, fp: str = "fp") -> ImageInfo:
    return ImageInfo(id=ident, diff_ids=tuple(layers), fingerprint=fp)


def test_legacy_v1_ids_match_docker_20_10() -> None:
    # Directory names of `docker save` on Docker 20.10.24 for a 3-layer image built here.
    diffs = [
        "sha256:84a058914a01adb466bc962286cdb09ceedd758b9bbc394ec63c84a1656c2379",
        "sha256:7153dc9a19e714710d7fc1e67f0c9e830adba7866645f0ce168dacb8932fc4ed",
        "sha256:d28fc2961c038c9e89f96a0627b106d615d30d256925746f26c90266da4d8235",
    ]
    assert legacy_v1_ids(diffs) == [
        "1e47ba0aa57f436a38249e577fce52787b7e4ad929d3c392739469a6b57e54d3",
        "c6854b953be4164587d45535b732d297bd069de32c0a1acc18da71e89a006bf0",
    ]


def test_graphdriver_skips_by_chain_podman_by_diff() -> None:
    held = image([D[0], D[1]])
    wanted = image([D[2], D[1]], ident="sha256:" + "8" * 64, fp="other")
    ref = parse_ref("app:1")
    for kind, expected in [
        (EngineKind.GRAPHDRIVER, [Decision.SEND, Decision.SEND]),
        (EngineKind.PODMAN, [Decision.SEND, Decision.SKIP]),
        (EngineKind.CONTAINERD, [Decision.SEND, Decision.SKIP]),
    ]:
        plan = plan_transfer([(ref, wanted, (10, 20))], EngineKind.GRAPHDRIVER, holdings(kind, [held]))
        assert [lay.decision for lay in plan.images[0].layers] == expected, kind


def test_base_present_update_plan_and_totals() -> None:
    dest = holdings(EngineKind.GRAPHDRIVER, [image([D[0], D[1]])])
    wanted = image([D[0], D[1], D[2]], ident="sha256:" + "7" * 64, fp="x")
    plan = plan_transfer([(parse_ref("app:2"), wanted, (100, 200, 300))], EngineKind.GRAPHDRIVER, dest)
    assert plan.skip == frozenset({D[0], D[1]})
    assert plan.bytes_to_send == 300 and plan.bytes_saved == 300


def test_layers_the_store_cannot_reuse_are_sent_after_all() -> None:
    dest = holdings(EngineKind.CONTAINERD, [image([D[0], D[1]])])
    wanted = image([D[0], D[1], D[2]], ident="sha256:" + "7" * 64, fp="x")
    plan = plan_transfer([(parse_ref("app:2"), wanted, (100, 200, 300))], EngineKind.CONTAINERD, dest)
    named = Naming(plan.skip, {D[0]: {"mediaType": "m", "digest": D[0], "size": 100}})
    assert named.travels == frozenset({D[1]}) and named.covers(frozenset({D[0]}))
    revised = sending(plan, named.travels)
    assert [lay.decision for lay in revised.images[0].layers] == [Decision.SKIP, Decision.SEND, Decision.SEND]
    assert revised.bytes_to_send == 500 and revised.skip == named.left_out


def test_present_image_is_not_exported() -> None:
    same = image([D[0]], ident="sha256:" + "6" * 64)
    plan = plan_transfer([(parse_ref("a"), same, (5,))], EngineKind.GRAPHDRIVER, holdings(EngineKind.PODMAN, [same]))
    assert plan.images[0].present_as == same.id and plan.exported == ()


def test_containerd_matches_images_by_fingerprint_not_id() -> None:
    src = image([D[0]], ident="sha256:" + "1" * 64, fp="same")
    held = image([D[0]], ident="sha256:" + "2" * 64, fp="same")
    plan = plan_transfer([(parse_ref("a"), src, (5,))], EngineKind.GRAPHDRIVER, holdings(EngineKind.CONTAINERD, [held]))
    assert plan.images[0].present_as == held.id


def test_shared_layer_needed_by_one_image_is_sent() -> None:
    dest = holdings(EngineKind.GRAPHDRIVER, [image([D[0], D[1]])])
    a = image([D[0], D[1]], ident="sha256:" + "3" * 64, fp="a")
    b = image([D[2], D[1]], ident="sha256:" + "4" * 64, fp="b")
    plan = plan_transfer([(parse_ref("a"), a, ()), (parse_ref("b"), b, ())], EngineKind.GRAPHDRIVER, dest)
    assert D[1] not in plan.skip and D[0] in plan.skip


def test_layer_sizes_mapping() -> None:
    assert layer_sizes([10, 0, 20], 2) == (10, 20)
    assert layer_sizes([10, 0, 0], 3) == (10, 0, 0)
    assert layer_sizes([10, 0, 0, 0], 2) == (None, None)


def test_stream_spec_per_source_format() -> None:
    img = image([D[0], D[1], D[2]])
    plan = plan_transfer([(parse_ref("a"), img, ())], EngineKind.GRAPHDRIVER, holdings(EngineKind.GRAPHDRIVER, []))
    legacy = stream_spec(plan, EngineInfo(EngineKind.GRAPHDRIVER, "20.10.24", "1.41"), EngineKind.PODMAN)
    assert legacy.output is OutputFormat.OCI
    assert sorted(legacy.named.values()) == sorted([D[0], D[1]]) and legacy.unnamed == (D[2],)
    oci = stream_spec(plan, EngineInfo(EngineKind.GRAPHDRIVER, "26.1.5", "1.45"), EngineKind.GRAPHDRIVER)
    assert oci.output is OutputFormat.LEGACY and f"blobs/sha256/{D[2][7:]}" in oci.named and oci.unnamed == ()
    ctrd = stream_spec(plan, EngineInfo(EngineKind.CONTAINERD, "26.1.5", "1.45"), EngineKind.GRAPHDRIVER)
    assert set(ctrd.unnamed) == set(D[:3])
    podman = stream_spec(plan, EngineInfo(EngineKind.PODMAN, "4.3.1", "1.41"), EngineKind.GRAPHDRIVER)
    assert f"{D[0][7:]}.tar" in podman.named
    assert chain_ids([D[0]]) == [D[0]]


def test_a_node_is_planned_by_the_blobs_it_holds_and_images_by_their_config() -> None:
    """A node holds a layer when its content store has the blob (not merely a snapshot of it), and
    holds an image when one of its images has the source's config (its ids are manifest digests)."""
    l1, l2, l3 = (f"sha256:{c * 64}" for c in "123")
    config = f"sha256:{'c' * 64}"
    held = ImageInfo(f"sha256:{'m' * 64}", (l1, l2), config_digest=config)
    node = holdings(EngineKind.NODE, [held], blobs={l1})
    app = ImageInfo(f"sha256:{'a' * 64}", (l1, l2, l3))
    plan = plan_transfer([(parse_ref("app:2"), app, (1, 2, 3))], EngineKind.GRAPHDRIVER, node)
    assert [lay.decision for lay in plan.images[0].layers] == [Decision.SKIP, Decision.SEND, Decision.SEND]
    same = ImageInfo(config, (l1, l2))
    plan = plan_transfer([(parse_ref("base:1"), same, (1, 2))], EngineKind.GRAPHDRIVER, node)
    assert plan.images[0].present_as == held.id
