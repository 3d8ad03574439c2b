#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs system packages and Python
# deps, fetches the Kafka jars from Maven Central, starts a real 3-broker
# Kafka cluster and PostgreSQL (`selfhood cluster up`), runs ruff, mypy and
# pytest -m "not slow", and stops everything it started, even on failure or
# Ctrl-C. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system.sh
bash scripts/setup-python.sh
export PATH="$PWD/.venv/bin:$PATH"
# this checkout's own cluster; conftest.py finds it through the same variable
export SELFHOOD_STATE_DIR="${SELFHOOD_STATE_DIR:-$PWD/.selfhood}"

cleanup() {
  echo "== cluster down"
  selfhood cluster down || true
  # the netns cluster the cluster-runtime tests start beside it (tests/test_cluster_runtime.py)
  SELFHOOD_STATE_DIR="$SELFHOOD_STATE_DIR/netns" selfhood cluster down >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start clean (a previous run may have been killed), then pick a port block
# that is free: another checkout's cluster may hold the default one
selfhood cluster down >/dev/null 2>&1 || true
SELFHOOD_STATE_DIR="$SELFHOOD_STATE_DIR/netns" selfhood cluster down >/dev/null 2>&1 || true
if [ -z "${SELFHOOD_BASE_PORT:-}" ]; then
  SELFHOOD_BASE_PORT="$(python - <<'PY'
from selfhood.chaos.cluster import DEFAULT_BASE_PORT, port_free
for base in range(DEFAULT_BASE_PORT, 60000, 1000):
    if all(port_free("127.0.0.1", base + off) for off in range(0, 21)):
        print(base)
        break
PY
)"
  export SELFHOOD_BASE_PORT
fi

rc=0
echo "== lint"
ruff check src tests bench build_backend setup.py || rc=1
mypy || rc=1

echo "== cluster up (state dir $SELFHOOD_STATE_DIR, base port $SELFHOOD_BASE_PORT)"
selfhood cluster up --brokers 3

echo "== pytest"
# tests/test_compiled.py: build the wheel as `pip install .` does (its simulator compiled
# with mypyc) and run the fast suite against that install
export SELFHOOD_TEST_COMPILED="${SELFHOOD_TEST_COMPILED:-1}"
set +e
pytest -m "not slow" --timeout=900 "$@"
prc=$?
set -e
if [ "$prc" = 5 ]; then echo "pytest collected no tests"; fi
if [ "$prc" != 0 ]; then rc="$prc"; fi
exit "$rc"
