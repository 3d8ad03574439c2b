#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs system packages and Python
# deps, fetches the Kafka jars from Maven Central, starts a real 3-broker
# Kafka cluster and PostgreSQL (`selfhood cluster up`), runs ruff, mypy and
# pytest, and stops everything it started, even on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system.sh
bash scripts/setup-python.sh
export PATH="$PWD/.venv/bin:$PATH"

echo "== lint"
ruff check src tests bench
mypy

cleanup() { selfhood cluster down || true; }
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== cluster up"
selfhood cluster up --brokers 3

echo "== pytest"
set +e
pytest -m "not slow" --timeout=900 "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then echo "pytest collected no tests"; fi
exit "$rc"
