#!/usr/bin/env bash
# Installs Debian's Chromium (headless) for the review console's browser test, if it is missing.
#
# The browser comes from Debian, not from a pip/npm download of a bundled build, because the
# tests drive it over its DevTools protocol with nothing but a WebSocket client of ours.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
chromium --version
