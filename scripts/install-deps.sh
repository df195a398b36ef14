#!/usr/bin/env bash
# Installs every Debian package that Tandem's build, tests and benchmarks need.
# Idempotent: installs only what is missing; waits for (and retries around) another apt.
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake ninja-build pkg-config clang clang-format
  libyaml-cpp-dev libfmt-dev libcli11-dev libexpected-dev nlohmann-json3-dev libmnl-dev
  libssl-dev openssl libhiredis-dev libcap-dev
  # dashboard (npm packages come from web/package-lock.json, installed by the build)
  nodejs
  # tests
  libgtest-dev libgmock-dev libbenchmark-dev python3 python3-pytest curl procps iproute2 etcd-server
  python3-prometheus-client chromium keepalived redis-server
  # benchmarks (peers we compare against, load generator)
  haproxy nginx-light wrk util-linux
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# Debian's nodejs comes without npm (a package of its own); NodeSource's nodejs bundles it.
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

echo "install-deps: installing ${missing[*]}" >&2
for attempt in 1 2 3 4 5 6 7 8 9 10; do
  if $SUDO apt-get -o DPkg::Lock::Timeout=600 update -q; then break; fi
  echo "install-deps: apt-get update failed (attempt $attempt), retrying" >&2
  sleep 5
done
for attempt in 1 2 3 4 5; do
  if $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"; then
    exit 0
  fi
  echo "install-deps: apt-get install failed (attempt $attempt), retrying" >&2
  sleep 5
done
echo "install-deps: could not install: ${missing[*]}" >&2
exit 1
