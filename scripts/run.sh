#!/usr/bin/env bash
# The main job on a fresh machine: install Python deps, then `selfhood run`
# on the embedded default (deterministic simulator, no servers needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-python.sh
exec .venv/bin/selfhood run "$@"
