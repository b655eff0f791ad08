"""A second host: a network namespace joined to this one by a veth pair, with its own address.
Traffic to it never leaves the machine."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True)


@dataclass
class NetNS:
    name: str
    host_addr: str  # this side
    addr: str  # the namespace's side
    rate: str | None = None  # e.g. "100mbit": tbf on both ends (there is no netem here)

    def up(self) -> NetNS:
        self.down()
        _ip("netns", "add", self.name)
        host_if, ns_if = f"{self.name[:8]}-h", f"{self.name[:8]}-n"
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", self.name)
        _ip("addr", "add", f"{self.host_addr}/24", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", self.name, "addr", "add", f"{self.addr}/24", "dev", ns_if)
        _ip("-n", self.name, "link", "set", ns_if, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")
        if self.rate:
            for ns, dev in [(None, host_if), (self.name, ns_if)]:
                prefix = ["tc"] if ns is None else ["ip", "netns", "exec", ns, "tc"]
                subprocess.run(
                    [
                        *prefix,
                        "qdisc",
                        "add",
                        "dev",
                        dev,
                        "root",
                        "tbf",
                        "rate",
                        self.rate,
                        "burst",
                        "256kb",
                        "latency",
                        "100ms",
                    ],
                    check=True,
                    capture_output=True,
                )
        return self

    def down(self) -> None:
        _ip("link", "del", f"{self.name[:8]}-h", check=False)
        _ip("netns", "del", self.name, check=False)
