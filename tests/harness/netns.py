"""A second host: a network namespace joined to this one by a veth pair, with its own address.
Traffic to it never leaves the machine.

Several test runs (CI, helpers, a developer) may share one machine, so every namespace, veth
and subnet is unique to the run, and `down` removes only what this process created: never a
namespace that merely looks like ours."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from dataclasses import dataclass, field

# What this process created: the only things `down` will remove.
_CREATED: set[str] = set()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _existing_namespaces() -> set[str]:
    return {line.split()[0] for line in _ip("netns", "list").stdout.splitlines() if line.strip()}


def _used_subnets() -> set[str]:
    """The /24s of every IPv4 address on this host, so that ours overlaps none."""
    out = _ip("-o", "-4", "addr", "show").stdout
    return {m[1] for m in re.finditer(r"inet (\d+\.\d+\.\d+)\.\d+/", out)}


def _free_subnet() -> str:
    used = _used_subnets()
    for _ in range(200):
        subnet = f"10.{secrets.choice(range(200, 250))}.{secrets.randbelow(256)}"
        if subnet not in used:
            return subnet
    raise RuntimeError("no free 10.x.y.0/24 subnet for a test namespace")


@dataclass
class NetNS:
    """`tag` says what the namespace is for; the real `name` (and the veth names, at most 15
    characters) get a suffix unique to this run. Addresses are chosen free unless given."""

    tag: str
    host_addr: str = ""  # this side
    addr: str = ""  # the namespace's side
    rate: str | None = None  # e.g. "100mbit": tbf on both ends (there is no netem here)
    name: str = field(default="", init=False)
    run_id: str = field(default="", init=False)

    @property
    def host_if(self) -> str:
        return f"d2{self.run_id}h"

    @property
    def ns_if(self) -> str:
        return f"d2{self.run_id}n"

    def up(self) -> NetNS:
        existing = _existing_namespaces()
        while True:
            # pid and randomness: unique among concurrent runs and across reruns of one pid.
            self.run_id = f"{os.getpid() % 0xFFFF:04x}{secrets.token_hex(2)}"
            self.name = f"d2d{self.tag[:12]}-{self.run_id}"
            if self.name not in existing:
                break
        if not self.addr:
            subnet = _free_subnet()
            self.host_addr, self.addr = f"{subnet}.1", f"{subnet}.2"
        _ip("netns", "add", self.name)
        _CREATED.add(self.name)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _CREATED.add(self.host_if)
        _ip("link", "set", self.ns_if, "netns", self.name)
        _ip("addr", "add", f"{self.host_addr}/24", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        _ip("-n", self.name, "addr", "add", f"{self.addr}/24", "dev", self.ns_if)
        _ip("-n", self.name, "link", "set", self.ns_if, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")
        if self.rate:
            for ns, dev in [(None, self.host_if), (self.name, self.ns_if)]:
                prefix = ["tc"] if ns is None else ["ip", "netns", "exec", ns, "tc"]
                tbf = ["qdisc", "add", "dev", dev, "root", "tbf", "rate", self.rate]
                tbf += ["burst", "256kb", "latency", "100ms"]
                subprocess.run([*prefix, *tbf], check=True, capture_output=True)
        return self

    def link(self, up: bool) -> None:
        """Cut (or restore) the link between this host and the namespace: a dead network path."""
        self._own(self.host_if)
        _ip("link", "set", self.host_if, "up" if up else "down")

    def _own(self, name: str) -> None:
        if name not in _CREATED:
            raise RuntimeError(f"refusing to touch {name!r}: this test run did not create it")

    def down(self) -> None:
        if not self.name:
            return
        self._own(self.name)
        if self.host_if in _CREATED:
            _ip("link", "del", self.host_if, check=False)
            _CREATED.discard(self.host_if)
        _ip("netns", "del", self.name, check=False)
        _CREATED.discard(self.name)
