#!/usr/bin/env bash
# Make PostgreSQL available for the distributed-tuning test (tests/test_tune.py, marker `postgres`).
# Installs Debian's `postgresql` package when its server binaries are missing; the test itself then
# creates a private cluster in a temporary folder on 127.0.0.1 (tests/postgres_helpers.py) and removes
# it afterwards, so nothing is left running. Needs root (CI is root); without apt it does nothing and
# the test skips with the reason.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then
  echo "postgres.sh: PostgreSQL server binaries present: $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | head -1)"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "postgres.sh: not root or no apt-get; the PostgreSQL test will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null
# Debian's package may create and start a default cluster; the test does not use it: stop it.
if command -v pg_ctlcluster >/dev/null 2>&1; then
  pg_lsclusters --no-header 2>/dev/null | while read -r ver name _; do pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true; done
fi
echo "postgres.sh: installed $(ls -d /usr/lib/postgresql/*/bin | head -1)"
