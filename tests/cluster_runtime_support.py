"""What the cluster-runtime tests share: the leftover check (the `netns_cluster` fixture is
in conftest.py).

Both `test_cluster_runtime.py` (selfhood's own replicas) and
`test_system_langgraph.py` (a user's service via `--system`) run experiments on
the namespaced cluster the runtime uses, and both must show that a run leaves
nothing behind: processes, node namespaces, DROP rules, tracked processes.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from selfhood.chaos.cluster_world.world import runtime_manager


def leftovers(state: Path, marker: str | None = None) -> list[str]:
    """Processes, namespaces, iptables rules and tracked processes a cluster run left behind.

    A process counts when it is this state dir's replica or client process (another checkout
    on the machine may run its own experiment meanwhile), or when its command line holds
    ``marker`` (a user's service, e.g. its script path).
    """
    mgr = runtime_manager(state)
    cfg = mgr.load_config()
    out: list[str] = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ours = f"{state.resolve()}/" in cmd and (
            ("replica serve" in cmd and "selfhood-run-" in cmd)
            or "cluster_world.clientproc" in cmd)
        if ours or (marker is not None and marker in cmd):
            out.append(f"process {pid}: {cmd[:120]}")
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    brokers = {cfg.namespace(n) for n in cfg.node_ids} if cfg is not None else set()
    for line in names.splitlines():
        ns = line.split()[0] if line.split() else ""
        if cfg is not None and ns.startswith(f"sh{cfg.tag}") and ns not in brokers:
            out.append(f"namespace {ns}")
    for ns in sorted(brokers):
        rules = subprocess.run(["ip", "netns", "exec", ns, "iptables", "-S"],
                               capture_output=True, text=True).stdout
        out += [f"rule in {ns}: {r}" for r in rules.splitlines() if "DROP" in r]
    if cfg is not None and cfg.netns:
        out += [f"node {n}" for n in mgr.nodes()]
    out += [f"tracked process {n}" for n in mgr.process_names() if mgr.process_pid(n)]
    return out
