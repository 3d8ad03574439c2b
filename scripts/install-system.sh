#!/usr/bin/env bash
# System packages the real path needs, from Debian: PostgreSQL server,
# iptables and iproute2 (network namespaces), Java 17 + Maven (Kafka jars),
# python3-venv (.venv), setpriv/useradd (PostgreSQL runs unprivileged),
# faketime (libfaketime: skewed replica clocks), chromium (report tests,
# driven by Playwright).
# Installs only what is missing; safe to run again.
set -euo pipefail
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then need+=(postgresql); fi
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
command -v useradd >/dev/null 2>&1 || need+=(passwd)
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || need+=(python3-venv)
# libfaketime: the cluster runtime's clock skew (`selfhood run --runtime cluster`)
ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || need+=(faketime)
# the report's browser tests drive Debian's chromium through Playwright (no browser download)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing system packages: ${need[*]}"
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi
# Debian's postgresql package starts its own "main" cluster on 5432; we run a
# project-local one instead and never touch that service.
