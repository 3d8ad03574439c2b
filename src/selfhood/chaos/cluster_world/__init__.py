"""`selfhood run --runtime cluster`: the same generators over replica OS processes (IO).

Modules: `world` (the `ClusterRuntime` and the interpreter's `ClusterWorld`)
and `clientproc` (the client process in its own namespace). Namespaces,
iptables rules and tracked processes come from the cluster manager
(`selfhood.chaos.cluster`).
"""
