"""Our linearizability checker beside Porcupine, on the same files, in one run.

Builds the Go harness in bench/porcupine once (Porcupine comes from the Go
module proxy), then times both checkers on the 102 etcd histories
(cas-register) and the c50 kv pair (kv, partitioned by key). Each file is
checked --repeat times by each side and the median is kept; parsing is not
timed on either side, the check itself (pairing, partitioning, search) is.
Passes alternate (Porcupine over all files, then ours) so load drift on the
machine hits both sides alike.
Prints per-group sums of medians and the ratio ours / Porcupine (goal: 3x).

    python bench/bench_linear.py [--repeat 5] [--peers ../shared/peers/porcupine] [--json out]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selfhood.checkers.formats import read_history
from selfhood.checkers.history import Op
from selfhood.checkers.linear import check_linearizable

HERE = Path(__file__).resolve().parent
DEFAULT_PEERS = HERE.parents[1] / "shared" / "peers" / "porcupine"
GROUPS = {"etcd (102 logs)": "jepsen/", "kv c50-ok": "kv/c50-ok", "kv c50-bad": "kv/c50-bad"}


def _files(peers: Path) -> dict[str, bool]:
    rows = (peers / "expected.tsv").read_text().splitlines()[1:]
    out = {}
    for row in rows:
        name, verdict = row.split("\t")
        if name.startswith("jepsen/") or name.startswith("kv/c50"):
            out[name] = verdict.strip() == "true"
    return out


def _build_harness(tmp: Path) -> Path:
    go = shutil.which("go")
    if go is None:
        sys.exit("bench_linear: the `go` tool is needed to build the Porcupine harness")
    exe = tmp / "porcupine-bench"
    subprocess.run([go, "build", "-o", str(exe), "."], cwd=HERE / "porcupine", check=True)
    return exe


def _porcupine_pass(exe: Path, peers: Path, files: list[str]) -> dict[str, tuple[bool, float]]:
    proc = subprocess.run([str(exe), "-peers", str(peers), "-repeat", "1", *files],
                          check=True, capture_output=True, text=True)
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return {str(r["file"]): (bool(r["linearizable"]), float(r["median_s"])) for r in rows}


def _our_pass(histories: dict[str, tuple[list[Op], str]]) -> dict[str, tuple[object, float]]:
    out: dict[str, tuple[object, float]] = {}
    for name, (ops, model) in histories.items():
        t0 = time.perf_counter()
        verdict = check_linearizable(ops, model).valid
        out[name] = (verdict, time.perf_counter() - t0)
    return out


def _medians(passes: list[dict[str, tuple[object, float]]]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for name in passes[0]:
        out[name] = {"file": name, "linearizable": passes[-1][name][0],
                     "median_s": statistics.median(p[name][1] for p in passes)}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--peers", type=Path, default=DEFAULT_PEERS)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    expected = _files(args.peers)
    files = sorted(expected)
    histories: dict[str, tuple[list[Op], str]] = {}
    for name in files:
        kv = name.startswith("kv/")
        histories[name] = (read_history(args.peers / name, "edn" if kv else "jepsen-log"),
                           "kv" if kv else "cas-register")
    # Alternate whole passes so drifting machine load hits both sides alike.
    go_passes: list[dict[str, tuple[object, float]]] = []
    our_passes: list[dict[str, tuple[object, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        exe = _build_harness(Path(tmp))
        for _ in range(args.repeat):
            go_passes.append(dict(_porcupine_pass(exe, args.peers, files)))
            our_passes.append(_our_pass(histories))
    porcupine = _medians(go_passes)
    ours = _medians(our_passes)

    wrong = [f for f in files if ours[f]["linearizable"] is not expected[f]]
    wrong_go = [f for f in files if porcupine[f]["linearizable"] is not expected[f]]
    print(f"files: {len(files)}  repeat: {args.repeat}  (median per file, summed per group)")
    print(f"{'group':<18} {'ours (s)':>10} {'porcupine (s)':>14} {'ratio':>7}")
    summary: dict[str, dict[str, float]] = {}
    total_ours = total_go = 0.0
    for label, prefix in GROUPS.items():
        names = [f for f in files if f.startswith(prefix)]
        a = sum(float(str(ours[f]["median_s"])) for f in names)
        b = sum(float(str(porcupine[f]["median_s"])) for f in names)
        total_ours += a
        total_go += b
        summary[label] = {"ours_s": a, "porcupine_s": b, "ratio": a / b if b else float("inf")}
        print(f"{label:<18} {a:>10.3f} {b:>14.3f} {a / b if b else float('inf'):>6.2f}x")
    ratio = total_ours / total_go if total_go else float("inf")
    summary["all"] = {"ours_s": total_ours, "porcupine_s": total_go, "ratio": ratio}
    print(f"{'all':<18} {total_ours:>10.3f} {total_go:>14.3f} {ratio:>6.2f}x   (goal: <= 3x)")
    slow = sorted(files, key=lambda f: -float(str(ours[f]["median_s"])))[:5]
    print("slowest for us: " + ", ".join(
        f"{f} {float(str(ours[f]['median_s'])):.3f}s vs {float(str(porcupine[f]['median_s'])):.3f}s"
        for f in slow))
    print(f"verdicts matching expected.tsv: ours {len(files) - len(wrong)}/{len(files)}, "
          f"porcupine {len(files) - len(wrong_go)}/{len(files)}")
    # Sequential consistency on the same files (Porcupine has no such mode):
    # one pass, verdicts counted, so the two consistency models sit side by side.
    t0 = time.perf_counter()
    seq: dict[str, object] = {}
    for name, (ops, model) in histories.items():
        seq[name] = check_linearizable(ops, model, consistency="sequential",
                                       time_limit_s=30).valid
    seq_s = time.perf_counter() - t0
    counts = {v: sum(1 for x in seq.values() if x == v) for v in (True, False, "unknown")}
    stale = sum(1 for f in files if not expected[f] and seq[f] is True)
    print(f"sequential: {seq_s:.3f} s for all {len(files)} files; valid {counts[True]}, "
          f"invalid {counts[False]}, unknown {counts['unknown']}; "
          f"{stale} of {sum(1 for f in files if not expected[f])} non-linearizable ones "
          "are sequentially consistent")
    summary["sequential"] = {"ours_s": seq_s}
    if args.json is not None:
        args.json.write_text(json.dumps({"summary": summary, "ours": ours,
                                         "porcupine": porcupine}, indent=2, default=str))
    return 1 if wrong or wrong_go else 0


if __name__ == "__main__":
    sys.exit(main())
