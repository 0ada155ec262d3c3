#!/usr/bin/env bash
# Installs Debian's Prometheus (the server and promtool) for the rule tests and `make test-ops`,
# if it is missing. Debian's package, not a download of a release tarball: the machines this
# project is tested on reach Debian's mirrors, not GitHub's release assets.
set -euo pipefail
if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends: no node exporter or alertmanager; policy-rc.d keeps the package's
# service from starting (the tests start their own server on loopback).
echo 'exit 101' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
$SUDO chmod +x /usr/sbin/policy-rc.d
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
$SUDO rm -f /usr/sbin/policy-rc.d
promtool --version | head -n 1
