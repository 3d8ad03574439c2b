"""`selfhood run --runtime cluster`: the same generators over replica OS processes (IO).

Modules: `world` (the `ClusterRuntime` and the interpreter's `ClusterWorld`),
`netns` (namespaces for replicas and clients, iptables cuts), `clientproc`
(the client process in its own namespace).
"""
