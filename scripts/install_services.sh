#!/usr/bin/env bash
# Debian's PostgreSQL and Redis servers for the production-shape tests (tests/integration/production):
# the tests run their own throwaway instances (initdb + postgres, redis-server) on free loopback
# ports, so the packages' own services are neither needed nor started. Needs root (CI runs as root);
# otherwise the production tests skip outside CI with a visible reason (and fail under CI=true).
set -uo pipefail
missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != "0" ]; then
  echo "==> ${missing[*]} missing and not root: production tests will be skipped (or fail under CI=true)"; exit 0
fi
echo "==> installing ${missing[*]} (Debian)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || echo "==> ${missing[*]} install failed"
