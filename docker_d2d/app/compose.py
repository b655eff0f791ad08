"""The images of a Compose project: `-f compose.yaml [--profile P] [SERVICE...]`.

The real Compose resolves the files when it is there (`docker compose config --format json`): it
knows every merge and interpolation rule. Without it, our own reader follows the Compose
specification for what decides image names: `.env` and environment interpolation, the merge of
several files, `name:`, profiles and `depends_on`. `include:` and `extends:` need the real Compose.

Which images: each selected service's `image:`, or for a service that only has `build:` the name
Compose gives what it builds, `<project>-<service>` (tag latest). Naming services selects them and
what they depend on (what `docker compose up SERVICE` there would run); without names, every
service whose profiles are active.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError


@dataclass(frozen=True)
class Service:
    name: str
    image: str | None
    build: bool
    profiles: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class Project:
    name: str
    services: Mapping[str, Service]


@dataclass(frozen=True)
class Selection:
    files: tuple[Path, ...]
    profiles: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    project_name: str | None = None


# --- selection: pure -----------------------------------------------------------------------


def active_profiles(selection: Selection, env: Mapping[str, str]) -> frozenset[str]:
    if selection.profiles:
        return frozenset(selection.profiles)
    return frozenset(p.strip() for p in env.get("COMPOSE_PROFILES", "").split(",") if p.strip())


def project_images(project: Project, services: Sequence[str], profiles: frozenset[str]) -> list[str]:
    """The image references to copy, in service order, each once."""
    for name in services:
        if name not in project.services:
            known = ", ".join(sorted(project.services)) or "none"
            raise UsageError(f"no service {name!r} in the Compose project {project.name!r} (services: {known})")
    if services:
        chosen: list[str] = []
        todo = list(services)
        while todo:
            name = todo.pop(0)
            if name in chosen:
                continue
            chosen.append(name)
            todo.extend(d for d in project.services[name].depends_on if d in project.services)
        selected = [project.services[n] for n in chosen]
    else:
        selected = [s for s in project.services.values() if not s.profiles or profiles & set(s.profiles)]
    images: list[str] = []
    for service in selected:
        if service.image:
            ref = service.image
        elif service.build:
            ref = f"{project.name}-{service.name}"
        else:
            raise UsageError(f"Compose service {service.name!r} has neither image nor build")
        if ref not in images:
            images.append(ref)
    return images


def normalize_project_name(name: str) -> str:
    # compose-go's NormalizeProjectName: lower case, only [a-z0-9_-], starting with a letter or digit.
    return re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("_-")


# --- interpolation: the Compose specification's rules, pure ----------------------------------

_NAME = r"[_a-zA-Z][_a-zA-Z0-9]*"
_SIMPLE = re.compile(rf"\$({_NAME})")


def interpolate(text: str, env: Mapping[str, str], where: str = "") -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "$":
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            end = _closing_brace(text, i + 2, where)
            out.append(_braced(text[i + 2 : end], env, where))
            i = end + 1
        elif m := _SIMPLE.match(text, i):
            out.append(env.get(m[1], ""))
            i = m.end()
        else:
            raise UsageError(f"invalid interpolation format in {where}: {text!r}")
    return "".join(out)


def _closing_brace(text: str, start: int, where: str) -> int:
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise UsageError(f"invalid interpolation format in {where}: {text!r} (no closing brace)")


_BRACED = re.compile(rf"^({_NAME})(?:(:?[-?+])(.*))?$", re.DOTALL)


def _braced(body: str, env: Mapping[str, str], where: str) -> str:
    m = _BRACED.match(body)
    if not m:
        raise UsageError(f"invalid interpolation format in {where}: ${{{body}}}")
    name, op, arg = m[1], m[2], m[3] or ""
    value = env.get(name)
    if op is None:
        return value or ""
    # With a colon an empty value counts as unset, without one only a missing variable does.
    unset = value is None or (op.startswith(":") and value == "")
    kind = op[-1]
    if kind == "-":
        return interpolate(arg, env, where) if unset else str(value)
    if kind == "+":
        return "" if unset else interpolate(arg, env, where)
    if unset:
        detail = interpolate(arg, env, where) or "required"
        raise UsageError(f"{where}: required variable {name} is missing a value: {detail}")
    return str(value)


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; `export`, comments, single quotes literal, double quotes with escapes."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(_NAME, key):
            raise UsageError(f"{path}:{lineno}: not KEY=VALUE: {raw!r}")
        value = value.strip()
        if value[:1] == "'" and value.endswith("'") and len(value) > 1:
            value = value[1:-1]
        elif value[:1] == '"' and value.endswith('"') and len(value) > 1:
            value = bytes(value[1:-1], "utf-8").decode("unicode_escape")
        else:
            value = re.sub(r"\s+#.*$", "", value)
            value = interpolate(value, {**os.environ, **values}, f"{path}:{lineno}")
        values[key] = value
    return values


# --- our own reader --------------------------------------------------------------------------


def _deep_merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = _deep_merge(base[key], value) if key in base else value
        return merged
    return over


def _interpolate_tree(node: Any, env: Mapping[str, str], where: str) -> Any:
    if isinstance(node, str):
        return interpolate(node, env, where)
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, env, f"{where}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate_tree(v, env, where) for v in node]
    return node


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read the Compose file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"the Compose file {path} is not valid YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise UsageError(f"the Compose file {path} is not a mapping")
    return doc


def parse_project(selection: Selection, env: Mapping[str, str]) -> Project:
    """Our own reading of the files, for machines without the Compose plugin."""
    project_dir = selection.files[0].resolve().parent
    full_env = {**read_dotenv(project_dir / ".env"), **env}
    model: dict[str, Any] = {}
    for path in selection.files:
        model = _deep_merge(model, _interpolate_tree(_load_yaml(path), full_env, path.name))
    name = selection.project_name or env.get("COMPOSE_PROJECT_NAME") or model.get("name") or project_dir.name
    services = model.get("services") or {}
    if not isinstance(services, dict):
        raise UsageError("the Compose project's services are not a mapping")
    return Project(normalize_project_name(str(name)), {n: _service(n, s or {}) for n, s in services.items()})


def _service(name: str, doc: Any) -> Service:
    if not isinstance(doc, dict):
        raise UsageError(f"Compose service {name!r} is not a mapping")
    depends = doc.get("depends_on") or []
    return Service(
        name,
        str(doc["image"]) if doc.get("image") else None,
        doc.get("build") is not None,
        tuple(str(p) for p in doc.get("profiles") or ()),
        tuple(str(d) for d in depends),  # a list, or a mapping of name -> condition
    )


# --- the real Compose ------------------------------------------------------------------------


def docker_cli(env: Mapping[str, str]) -> str | None:
    """The docker CLI that runs us as a plugin, else the one on PATH."""
    return env.get("DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND") or shutil.which("docker")


def real_compose_project(selection: Selection, env: Mapping[str, str]) -> Project | None:
    """The project as the real Compose resolves it; None when no Compose plugin is installed."""
    docker = docker_cli(env)
    if docker is None:
        return None
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, env=dict(env))
    if probe.returncode != 0:
        return None
    cmd = [docker, "compose"]
    for path in selection.files:
        cmd += ["-f", str(path)]
    if selection.project_name:
        cmd += ["-p", selection.project_name]
    # Every profile, so that profile selection is ours and the same on both paths.
    cmd += ["--profile", "*", "config", "--format", "json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(env))
    if proc.returncode != 0:
        raise UsageError(f"docker compose: {proc.stderr.strip() or 'failed'}")
    model = json.loads(proc.stdout)
    services = {
        # `config` escapes a literal $ as $$ again in its output.
        n: _service(n, {**s, "image": s["image"].replace("$$", "$")} if s.get("image") else s)
        for n, s in (model.get("services") or {}).items()
    }
    return Project(model["name"], services)


def compose_images(selection: Selection, env: Mapping[str, str], *, use_real: bool = True) -> list[str]:
    missing = [str(p) for p in selection.files if not p.is_file()]
    if missing:
        raise UsageError(f"no such Compose file: {', '.join(missing)}")
    project = real_compose_project(selection, env) if use_real else None
    if project is None:
        project = parse_project(selection, env)
    return project_images(project, selection.services, active_profiles(selection, env))
