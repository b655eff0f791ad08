from __future__ import annotations

from pathlib import Path

import docker_d2d.inspect_cache as ic
from docker_d2d.inspect_cache import InspectCache, cache_dir
from docker_d2d.model import EngineKind, ImageInfo


def info(n: int, layers: int = 1) -> ImageInfo:
    return ImageInfo(f"sha256:{n:064x}", tuple(f"sha256:{n + i:064x}" for i in range(layers)), ("t:1",), "c", "fp", 5)


def test_round_trip_without_tags_and_pruned_to_what_is_listed(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    cache = InspectCache(path)
    cache.put(info(1))
    cache.put(info(2))
    cache.keep_only([info(2).id])
    cache.save()
    again = InspectCache(path)
    assert again.get(info(1).id) is None
    held = again.get(info(2).id)
    assert held is not None and held.repo_tags == () and held.diff_ids == info(2).diff_ids and held.size == 5


def test_images_without_layers_are_not_kept(tmp_path: Path) -> None:
    cache = InspectCache(tmp_path / "c.json")
    cache.put(info(1, layers=0))
    assert cache.get(info(1).id) is None


def test_damaged_or_unwritable_cache_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text("{not json")
    assert InspectCache(path).get(info(1).id) is None
    blocked = InspectCache(tmp_path / "file" / "c.json")
    (tmp_path / "file").write_text("a file where a dir should be")
    blocked.put(info(1))
    blocked.save()  # no exception


def test_trimmed_to_the_newest(tmp_path: Path, monkeypatch: object) -> None:
    monkeypatch.setattr(ic, "MAX_ENTRIES", 2)  # type: ignore[attr-defined]
    path = tmp_path / "c.json"
    cache = InspectCache(path)
    for n in (1, 2, 3):
        cache.put(info(n * 10))
    cache.put(info(10))  # used again: newest
    cache.save()
    assert {i for i in (10, 20, 30) if InspectCache(path).get(info(i).id)} == {10, 30}


def test_one_file_per_engine(tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    a = InspectCache.for_engine("unix:///a.sock", EngineKind.GRAPHDRIVER, env).path
    b = InspectCache.for_engine("ssh://h", EngineKind.GRAPHDRIVER, env).path
    assert a != b and a is not None and a.parent == cache_dir(env) / "inspect"
    assert cache_dir({"DOCKER_D2D_CACHE_DIR": "/x"}) == Path("/x")


def test_a_dropped_entry_is_forgotten_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    cache = InspectCache(path)
    info = ImageInfo("sha256:" + "1" * 64, ("sha256:" + "2" * 64,), fingerprint="f")
    cache.put(info)
    cache.save()
    again = InspectCache(path)
    assert again.get(info.id) is not None
    again.drop(info.id)
    again.drop(info.id)  # twice: nothing left to drop
    again.save()
    assert InspectCache(path).get(info.id) is None
