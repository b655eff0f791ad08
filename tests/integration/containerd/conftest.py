"""Fixtures of the containerd-store and platform tests (engines started on demand, a registry)."""

from .store_fixtures import store_base, store_registry, stores  # noqa: F401
