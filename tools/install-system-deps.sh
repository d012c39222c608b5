#!/usr/bin/env bash
# Debian packages the test suite runs for real (Prometheus; Chromium and its driver for the
# browser test of the page at /). Idempotent; uses sudo when not root.
set -euo pipefail
packages=(prometheus chromium chromium-driver)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# The Debian package starts a system Prometheus on :9090; the tests start their own instead.
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
if command -v systemctl >/dev/null 2>&1; then $sudo systemctl disable --now prometheus 2>/dev/null || true; fi
