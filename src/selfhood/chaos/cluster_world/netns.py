"""Network namespaces for replicas and clients, and the iptables rules that cut them (IO).

A cluster started with ``--netns`` has a bridge in the root namespace and one
namespace per broker on it. This module adds one namespace per replica and
one for the client processes on the same bridge, and cuts links between any
two of them (or between a replica and every broker, "cut off from the log")
with iptables DROP rules inside the replica's namespace.

Everything made is written to a record file before it exists, so `teardown`
removes exactly that, also from a later process after a crash.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from selfhood.chaos.cluster import ClusterConfig, _link_exists, _netns_exists, _run
from selfhood.errors import ClusterError

#: host part of the client namespace's address; replica i is at 100 + i
CLIENT_HOST = 99
REPLICA_HOST0 = 100


def cmdline(pid: int) -> str:
    """A process's command line, or "" if it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class NodeNetwork:
    """The namespaces of one cluster run's replicas and clients, on the brokers' bridge."""

    def __init__(self, cfg: ClusterConfig, record: Path) -> None:
        if not cfg.netns or cfg.subnet is None:
            raise ClusterError("the cluster runtime needs a cluster started with --netns")
        self.cfg = cfg
        self.record = record
        self.addr: dict[str, str] = {}
        self.ns: dict[str, str] = {}
        self.rules: list[list[str]] = []

    def _load(self) -> dict[str, list[Any]]:
        try:
            rec = json.loads(self.record.read_text())
        except (OSError, ValueError):
            return {}
        return rec if isinstance(rec, dict) else {}

    def _note(self, key: str, value: Any) -> None:
        rec = self._load()
        rec.setdefault(key, [])
        if value not in rec[key]:
            rec[key].append(value)
        self.record.parent.mkdir(parents=True, exist_ok=True)
        self.record.write_text(json.dumps(rec, indent=1) + "\n")

    def namespace(self, node: str) -> str:
        return f"sh{self.cfg.tag}{node}"

    def broker_addresses(self) -> list[str]:
        return [self.cfg.broker_host(n) for n in self.cfg.node_ids]

    async def add(self, node: str, host: int) -> str:
        """A namespace for ``node`` at ``<subnet>.<host>`` on the bridge; its address."""
        cfg = self.cfg
        ns = self.namespace(node)
        outer, inner = f"shv{cfg.tag}h{node}", f"shv{cfg.tag}n{node}"
        address = f"{cfg.subnet}.{host}"
        self._note("namespaces", ns)
        self._note("veths", outer)
        if _netns_exists(ns):
            await _run(["ip", "netns", "delete", ns], what=f"delete stale namespace {ns}")
        if _link_exists(outer):
            await _run(["ip", "link", "delete", outer], what=f"delete stale {outer}")
        await _run(["ip", "netns", "add", ns], what=f"create namespace {ns}")
        await _run(["ip", "link", "add", outer, "type", "veth", "peer", "name", inner],
                   what="create veth pair")
        await _run(["ip", "link", "set", outer, "master", cfg.bridge], what="attach veth")
        await _run(["ip", "link", "set", outer, "up"], what="raise veth")
        await _run(["ip", "link", "set", inner, "netns", ns], what="move veth")
        await _run(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", inner],
                   what="address veth")
        await _run(["ip", "-n", ns, "link", "set", inner, "up"], what="raise veth")
        await _run(["ip", "-n", ns, "link", "set", "lo", "up"], what="raise loopback")
        await _run(["ip", "-n", ns, "route", "add", "default", "via", f"{cfg.subnet}.1"],
                   what="add default route")
        self.addr[node] = address
        self.ns[node] = ns
        return address

    async def cut(self, node: str, peers: Iterable[str]) -> None:
        """Drop every packet between ``node``'s namespace and the ``peers`` addresses."""
        ns = self.ns[node]
        for peer in peers:
            for args in (["INPUT", "-s", peer, "-j", "DROP"],
                         ["OUTPUT", "-d", peer, "-j", "DROP"]):
                rule = [ns, *args]
                self._note("iptables", rule)
                await _run(["ip", "netns", "exec", ns, "iptables", "-A", *args],
                           what=f"cut {node} from {peer}")
                self.rules.append(rule)

    async def heal(self) -> None:
        """Delete every rule `cut` added."""
        rules, self.rules = self.rules, []
        for ns, *args in rules:
            with contextlib.suppress(ClusterError):
                await _run(["ip", "netns", "exec", ns, "iptables", "-D", *args],
                           what="delete iptables rule")
        rec = self._load()
        if rec:
            rec["iptables"] = []
            self.record.write_text(json.dumps(rec, indent=1) + "\n")

    def note_process(self, pid: int, marker: str) -> None:
        """Record a process this run started, so a later teardown can stop it after a crash."""
        self._note("processes", [pid, marker])

    async def teardown(self) -> None:
        """Remove every process, rule, namespace and veth in the record (this run's or a
        crashed one's); a recorded process is killed only if its command line still
        holds its marker (the pid was not reused)."""
        rec = self._load()
        for pid, marker in rec.get("processes", []):
            if marker in cmdline(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for ns, *args in rec.get("iptables", []):
            if _netns_exists(ns):
                with contextlib.suppress(ClusterError):
                    await _run(["ip", "netns", "exec", ns, "iptables", "-D", *args],
                               what="delete iptables rule")
        for ns in rec.get("namespaces", []):
            if _netns_exists(ns):
                with contextlib.suppress(ClusterError):
                    await _run(["ip", "netns", "delete", ns], what=f"delete namespace {ns}")
        for veth in rec.get("veths", []):
            if _link_exists(veth):
                with contextlib.suppress(ClusterError):
                    await _run(["ip", "link", "delete", veth], what=f"delete {veth}")
        self.rules = []
        self.addr.clear()
        self.ns.clear()
        with contextlib.suppress(FileNotFoundError):
            self.record.unlink()
