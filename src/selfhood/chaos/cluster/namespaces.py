"""Network namespaces: a bridge in the root namespace, one namespace per broker
(``cluster up --netns``), per replica and for the clients, and iptables DROP
rules between groups of them.

Everything made is written to the state directory's record (``netns.json``)
*before* it exists, so `cluster down` removes exactly that, also after a
crash of the process that made it.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from selfhood.chaos.cluster.common import Progress, _run
from selfhood.chaos.cluster.config import ClusterConfig, StateDir
from selfhood.errors import ClusterError

#: host part of the first node address (replicas, clients); brokers sit at 10 + n
NODE_HOST0: Final = 100
#: node names end up in interface names (15 bytes at most), so they are short
_NODE_NAME: Final = re.compile(r"[a-z][a-z0-9]{0,6}")
#: in a partition's groups, this name stands for every broker (the spec's log node)
LOG_NODE: Final = "log"
#: the record of what another module (the cluster world's own namespaces) made
_OTHER_RECORDS: Final = ("runtime-netns.json",)


def _netns_exists(name: str) -> bool:
    return Path(f"/run/netns/{name}").exists()


def _link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


class Namespaces(StateDir):
    """The manager's network part: bridge, namespaces, veths, iptables rules."""

    @property
    def netns_record(self) -> Path:
        return self.state_dir / "netns.json"

    def _netns_rec(self) -> dict[str, Any]:
        try:
            rec = json.loads(self.netns_record.read_text())
        except (OSError, ValueError):
            return {}
        return rec if isinstance(rec, dict) else {}

    def _record_netns(self, key: str, value: str) -> None:
        rec = self._netns_rec()
        rec.setdefault(key, [])
        if value not in rec[key]:
            rec[key].append(value)
        self.netns_record.write_text(json.dumps(rec, indent=2) + "\n")

    async def _netns_up(self, cfg: ClusterConfig, say: Progress) -> None:
        """A bridge in the root namespace, one namespace + veth per broker."""
        assert cfg.subnet is not None
        say(f"creating bridge {cfg.bridge} ({cfg.subnet}.0/24) and {cfg.brokers} namespace(s)")
        self.netns_record.write_text("{}\n")
        ip = "ip"
        await _run([ip, "link", "add", cfg.bridge, "type", "bridge"], what="create bridge")
        self._record_netns("bridges", cfg.bridge)
        await _run([ip, "addr", "add", f"{cfg.subnet}.1/24", "dev", cfg.bridge],
                   what="address bridge")
        await _run([ip, "link", "set", cfg.bridge, "up"], what="raise bridge")
        for n in cfg.node_ids:
            ns, host, inner = cfg.namespace(n), cfg.veth_host(n), cfg.veth_ns(n)
            await _run([ip, "netns", "add", ns], what=f"create namespace {ns}")
            self._record_netns("namespaces", ns)
            await _run([ip, "link", "add", host, "type", "veth", "peer", "name", inner],
                       what="create veth pair")
            self._record_netns("veths", host)
            await _run([ip, "link", "set", host, "master", cfg.bridge], what="attach veth")
            await _run([ip, "link", "set", host, "up"], what="raise veth")
            await _run([ip, "link", "set", inner, "netns", ns], what="move veth")
            await _run([ip, "-n", ns, "addr", "add", f"{cfg.broker_host(n)}/24", "dev", inner],
                       what="address veth")
            await _run([ip, "-n", ns, "link", "set", inner, "up"], what="raise veth")
            await _run([ip, "-n", ns, "link", "set", "lo", "up"], what="raise loopback")
            await _run([ip, "-n", ns, "route", "add", "default", "via", f"{cfg.subnet}.1"],
                       what="add default route")

    async def _netns_down(self) -> None:
        """Remove exactly the rules, namespaces, veths and bridge recorded (ours, and
        what the cluster world recorded beside them), bridge last."""
        for other in _OTHER_RECORDS:
            path = self.state_dir / other
            try:
                rec = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(rec, dict):
                await _remove_recorded(rec)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        await _remove_recorded(self._netns_rec())
        with contextlib.suppress(FileNotFoundError):
            self.netns_record.unlink()

    # -- replica and client nodes ---------------------------------------------------

    def _netns_config(self) -> ClusterConfig:
        cfg = self._config()
        if not cfg.netns or cfg.subnet is None:
            raise ClusterError("node namespaces need a cluster started with --netns")
        return cfg

    def nodes(self) -> dict[str, str]:
        """Node name -> address of every replica/client namespace made (from the record)."""
        nodes = self._netns_rec().get("nodes", {})
        return dict(nodes) if isinstance(nodes, dict) else {}

    def node_namespace(self, name: str) -> str:
        """The namespace of a node: ``b1``.. for brokers, else one made by `add_node`."""
        cfg = self._netns_config()
        if name in self.nodes():
            return f"sh{cfg.tag}{name}"
        broker = _broker_number(name, cfg)
        if broker is not None:
            return cfg.namespace(broker)
        raise ClusterError(f"no node {name!r} (known: {', '.join(self._node_names(cfg))})")

    def node_address(self, name: str) -> str:
        """The IPv4 address of a node (broker ``b<n>`` or an added node) on the bridge."""
        cfg = self._netns_config()
        nodes = self.nodes()
        if name in nodes:
            return nodes[name]
        broker = _broker_number(name, cfg)
        if broker is not None:
            return cfg.broker_host(broker)
        raise ClusterError(f"no node {name!r} (known: {', '.join(self._node_names(cfg))})")

    def _node_names(self, cfg: ClusterConfig) -> list[str]:
        return [f"b{n}" for n in cfg.node_ids] + sorted(self.nodes())

    async def add_node(self, name: str) -> str:
        """A network namespace for replica or client ``name`` on the brokers' bridge.

        Same scheme as the brokers' (a veth pair on the bridge, an address in
        the cluster's /24, default route via the bridge), so every namespace
        reaches every other until a partition cuts it. Recorded before it
        exists, so `down` removes it even if this process dies. Idempotent for
        a name already added. Returns the node's address.
        """
        cfg = self._netns_config()
        if not _NODE_NAME.fullmatch(name) or _broker_number(name, cfg) is not None \
                or name == LOG_NODE:
            raise ClusterError(f"node name {name!r}: 1-7 lowercase letters/digits, starting "
                               f"with a letter, not a broker's b<n> nor {LOG_NODE!r}")
        nodes = self.nodes()
        ns = f"sh{cfg.tag}{name}"
        if name in nodes and _netns_exists(ns):
            return nodes[name]
        used = set(nodes.values())
        address = next(f"{cfg.subnet}.{h}" for h in range(NODE_HOST0, 255)
                       if f"{cfg.subnet}.{h}" not in used)
        outer, inner = f"shv{cfg.tag}h{name}", f"shv{cfg.tag}n{name}"
        rec = self._netns_rec()
        rec.setdefault("nodes", {})[name] = address
        self.netns_record.write_text(json.dumps(rec, indent=2) + "\n")
        self._record_netns("namespaces", ns)
        self._record_netns("veths", outer)
        for stale, argv in ((_netns_exists(ns), ["ip", "netns", "delete", ns]),
                            (_link_exists(outer), ["ip", "link", "delete", outer])):
            if stale:
                await _run(argv, what=f"remove stale {argv[-1]}")
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
        return address

    async def remove_nodes(self) -> None:
        """Heal every partition, then remove every node namespace `add_node` made."""
        await self.heal()
        rec = self._netns_rec()
        nodes = rec.pop("nodes", {})
        if not nodes:
            return
        cfg = self._netns_config()
        for name in nodes:
            ns, outer = f"sh{cfg.tag}{name}", f"shv{cfg.tag}h{name}"
            await _remove_recorded({"namespaces": [ns], "veths": [outer]})
            rec["namespaces"] = [n for n in rec.get("namespaces", []) if n != ns]
            rec["veths"] = [v for v in rec.get("veths", []) if v != outer]
        self.netns_record.write_text(json.dumps(rec, indent=2) + "\n")

    async def partition_nodes(self, groups: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
        """Cut the network so two nodes talk iff some group holds both.

        Nodes are brokers (``b1``.., or ``log`` for all of them), replicas and
        the client, by name; groups may overlap (a bridge node). Every node not
        in any group is cut from all others. Rules are iptables DROPs (INPUT
        and OUTPUT) inside the namespaces, recorded before they are added, so
        `heal` (or `down`) removes exactly them. Returns the cut pairs.
        """
        cfg = self._netns_config()
        names = self._node_names(cfg)
        brokers = [f"b{n}" for n in cfg.node_ids]
        together: set[tuple[str, str]] = set()
        for i, group in enumerate(groups):
            members: list[str] = []
            for name in group:
                if name == LOG_NODE:
                    members += brokers
                elif name in names:
                    members.append(name)
                else:
                    raise ClusterError(f"partition group {i}: unknown node {name!r} "
                                       f"(known: {', '.join([LOG_NODE, *names])})")
            together.update((a, b) for a in members for b in members)
        cut = [(a, b) for a in names for b in names if a < b and (a, b) not in together]
        for a, b in cut:
            for here, there in ((a, b), (b, a)):
                ns, peer = self.node_namespace(here), self.node_address(there)
                for args in (["INPUT", "-s", peer, "-j", "DROP"],
                             ["OUTPUT", "-d", peer, "-j", "DROP"]):
                    rule = json.dumps([ns, *args])
                    if rule in self._netns_rec().get("iptables", []):
                        continue
                    self._record_netns("iptables", rule)
                    await _run(["ip", "netns", "exec", ns, "iptables", "-A", *args],
                               what=f"cut {here} from {there}")
        return cut

    async def partition(self, groups: list[list[int]]) -> None:
        """Cut the network between broker groups (iptables DROP inside each namespace).

        Brokers in the same group still talk; the root namespace (clients)
        still reaches every broker. Call `heal()` to undo.
        """
        cfg = self._config()
        if not cfg.netns:
            raise ClusterError("partitions need a cluster started with --netns")
        where = {n: i for i, g in enumerate(groups) for n in g}
        for a in cfg.node_ids:
            for b in cfg.node_ids:
                if a == b or where.get(a, -1 - a) == where.get(b, -1 - b):
                    continue
                ns, peer = cfg.namespace(a), cfg.broker_host(b)
                for args in (["INPUT", "-s", peer, "-j", "DROP"],
                             ["OUTPUT", "-d", peer, "-j", "DROP"]):
                    self._record_netns("iptables", json.dumps([ns, *args]))
                    await _run(["ip", "netns", "exec", ns, "iptables", "-A", *args],
                               what=f"partition broker {a} from {b}")

    async def heal(self) -> None:
        """Delete every DROP rule `partition` or `partition_nodes` added, and only those."""
        rec = self._netns_rec()
        if not rec.get("iptables"):
            return
        await _remove_recorded({"iptables": rec["iptables"]})
        rec = self._netns_rec()
        rec["iptables"] = []
        self.netns_record.write_text(json.dumps(rec, indent=2) + "\n")


def _broker_number(name: str, cfg: ClusterConfig) -> int | None:
    """n for a broker's node name ``b<n>`` of this cluster, else None."""
    if name.startswith("b") and name[1:].isdigit() and int(name[1:]) in cfg.node_ids:
        return int(name[1:])
    return None


async def _remove_recorded(rec: dict[str, Any]) -> None:
    """Delete recorded iptables rules, namespaces, veths and bridges that still exist.

    A rule is ``[namespace, chain, ...]`` or that list as a JSON string.
    Removal never stops at the first failure: the rest must still go.
    """
    for rule in rec.get("iptables", []):
        ns, *args = json.loads(rule) if isinstance(rule, str) else rule
        if _netns_exists(ns):
            with contextlib.suppress(ClusterError):
                await _run(["ip", "netns", "exec", ns, "iptables", "-D", *args],
                           what="delete iptables rule")
    for ns in rec.get("namespaces", []):
        if _netns_exists(ns):
            with contextlib.suppress(ClusterError):
                await _run(["ip", "netns", "delete", ns], what=f"delete namespace {ns}")
    for key in ("veths", "bridges"):
        for link in rec.get(key, []):
            if _link_exists(link):
                with contextlib.suppress(ClusterError):
                    await _run(["ip", "link", "delete", link], what=f"delete {link}")
