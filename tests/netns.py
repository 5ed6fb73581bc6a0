"""Test hosts as network namespaces joined by one bridge device (a LAN on this machine).

Each host is a namespace with a veth into a bridge in the test's own root-side namespace, an
address 10.233.<net>.<n>/24 that exists only there, multicast on (DDS discovery) and its loopback
up. Nothing routes to or from any real network. ``link_down``/``link_up`` cut and restore one
host's link (``tc netem`` is not available here; link state is). Needs root (CAP_SYS_ADMIN);
callers skip otherwise.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass


class NetnsUnavailableError(RuntimeError):
    """``ip netns`` is not permitted or not installed here."""


def ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


@dataclass(frozen=True)
class Host:
    name: str
    namespace: str
    iface: str
    address: str

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]

    def exec_prefix(self) -> list[str]:
        """Prefix that runs a command inside this host."""
        return ["ip", "netns", "exec", self.namespace]


class Lan:
    """Hosts on one bridge; link state per host."""

    def __init__(
        self, hosts: dict[str, Host], switch_ns: str, bridge: str, multicast: bool
    ) -> None:
        self.hosts = hosts
        self.multicast = multicast
        self.switch_ns = switch_ns
        self.bridge = bridge

    def link_down(self, name: str) -> None:
        host = self.hosts[name]
        _check(ip("-n", host.namespace, "link", "set", host.iface, "down"))

    def link_up(self, name: str) -> None:
        host = self.hosts[name]
        _check(ip("-n", host.namespace, "link", "set", host.iface, "up"))
        if self.multicast:
            _check(ip("-n", host.namespace, "route", "replace", "224.0.0.0/4", "dev", host.iface))


def _check(result: subprocess.CompletedProcess) -> None:
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(result.args[1:])}: {result.stderr.strip()}")


def _kill_namespace_processes(namespace: str) -> None:
    for pid in ip("netns", "pids", namespace).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


@contextlib.contextmanager
def lan(names: list[str], multicast: bool = True) -> Iterator[Lan]:
    """Namespaces ``names`` on one bridge; everything removed on exit.

    ``multicast=False`` makes a network without multicast (the switch does not flood it to any
    port): DDS needs a discovery server or static peers there.
    """
    tag = os.getpid() % 10000
    net = os.getpid() % 250
    switch_ns = f"ramp_sw_{tag}"
    made = ip("netns", "add", switch_ns)
    if made.returncode != 0:
        raise NetnsUnavailableError(made.stderr.strip() or "ip netns add failed")
    namespaces = [switch_ns]
    bridge = "br0"
    try:
        _check(ip("-n", switch_ns, "link", "add", bridge, "type", "bridge", "mcast_snooping", "0"))
        _check(ip("-n", switch_ns, "link", "set", bridge, "up"))
        hosts = {}
        for n, name in enumerate(names, start=1):
            host = Host(name, f"ramp_{name}_{tag}", f"eth{n}", f"10.233.{net}.{n}/24")
            switch_end = f"sw{n}"
            _check(ip("netns", "add", host.namespace))
            namespaces.append(host.namespace)
            for step in (
                ("-n", switch_ns, "link", "add", switch_end, "type", "veth", "peer", "name",
                 host.iface, "netns", host.namespace),
                ("-n", switch_ns, "link", "set", switch_end, "master", bridge, "up"),
                ("-n", host.namespace, "addr", "add", host.address, "dev", host.iface),
                ("-n", host.namespace, "link", "set", host.iface, "multicast",
                 "on" if multicast else "off", "up"),
                ("-n", host.namespace, "link", "set", "lo", "up"),
            ):  # fmt: skip
                _check(ip(*step))
            if multicast:
                _check(ip("-n", host.namespace, "route", "add", "224.0.0.0/4", "dev", host.iface))
            else:  # the switch drops multicast (the interface flag alone stops nothing)
                _check(ip("-n", switch_ns, "link", "set", switch_end, "type", "bridge_slave",
                          "mcast_flood", "off"))  # fmt: skip
            hosts[name] = host
        yield Lan(hosts, switch_ns, bridge, multicast)
    finally:
        for ns in reversed(namespaces):
            _kill_namespace_processes(ns)
            ip("netns", "del", ns)
