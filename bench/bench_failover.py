"""Failover gap on real processes: kill -9 of an owner to the first acknowledged write.

Runs the sequential mode on the cluster runtime (`selfhood run --runtime
cluster`: replica processes in network namespaces over the 3-broker Kafka
cluster) with a schedule that kills and restarts owners in turn, and reports,
per group session timeout, the gap p50/p99 and the events the new owners
replayed. The reference, in the same run, is the session timeout itself:
Kafka reassigns a silent member's partitions only after it, so `x session`
(gap p50 / session timeout) says what the rebalance and the claim through
the log add on top. Needs root; starts the cluster if it is not running.

    sudo python bench/bench_failover.py [--session-timeouts 1000,3000] [--kills 4]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from selfhood.chaos.cluster_world.world import run_cluster
from selfhood.chaos.nemesis import final_heal
from selfhood.spec import ExperimentSpec, NemesisOp, with_overrides


def schedule(kills: int, replicas: tuple[str, ...], every_ms: int) -> tuple[NemesisOp, ...]:
    out = []
    for i in range(kills):
        r = replicas[i % len(replicas)]
        at = 500 + i * every_ms
        out += [NemesisOp(at_ms=at, f="crash", value=r),
                NemesisOp(at_ms=at + every_ms // 2, f="restart", value=r)]
    return tuple(out)


def measure(session_ms: int, kills: int) -> dict[str, Any]:
    every = max(2000, 3 * session_ms)
    base = ExperimentSpec()
    sched = schedule(kills, base.replica_names, every)
    spec = with_overrides(base, name="bench-failover", runtime="cluster", modes=("sequential",),
                          session_timeout_ms=session_ms, schedule=sched, nemesis=(),
                          time_limit_s=(500 + kills * every) / 1000, quiesce_ms=500)
    res = run_cluster(spec, sched, final_heal(sched, spec.time_limit_s * 1000),
                      progress=lambda m: print(m, file=sys.stderr))["sequential"]
    f = res.failover
    p50 = f["p50_ms"]
    return {"session_timeout_ms": session_ms, "kills": f["kills"], "measured": f["measured"],
            "p50_ms": p50, "p99_ms": f["p99_ms"],
            "x_session": None if p50 is None else round(p50 / session_ms, 2),
            "replayed_from": f["replayed_from"], "replayed_events": f["replayed_events"],
            "each": f["each"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--session-timeouts", default="1000,3000",
                    help="comma list of group session timeouts (ms)")
    ap.add_argument("--kills", type=int, default=4, help="owner kills per session timeout")
    ap.add_argument("--json", help="write the rows here too")
    args = ap.parse_args()
    rows = [measure(int(s), args.kills) for s in args.session_timeouts.split(",")]
    print(f"{'session ms':>10}  {'kills':>5}  {'measured':>8}  {'gap p50 ms':>10}  "
          f"{'gap p99 ms':>10}  {'x session':>9}  replayed (from start/tail, events)")
    for r in rows:
        rf = r["replayed_from"]
        print(f"{r['session_timeout_ms']:>10}  {r['kills']:>5}  {r['measured']:>8}  "
              f"{r['p50_ms'] if r['p50_ms'] is not None else '-':>10}  "
              f"{r['p99_ms'] if r['p99_ms'] is not None else '-':>10}  "
              f"{r['x_session'] if r['x_session'] is not None else '-':>9}  "
              f"{rf['start']}/{rf['tail']}, {r['replayed_events']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
