#!/usr/bin/env bash
# Makes sure the browser the console's tests drive is installed: Chromium
# and its WebDriver (the Debian packages `chromium` and `chromium-driver`),
# installing them with apt-get if they are missing. Exits non-zero, saying
# why, if they cannot be had: the browser tests fail, never skip, without
# them.
set -euo pipefail

if command -v chromedriver >/dev/null 2>&1 && command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: chromium and chromedriver are needed for the console's browser tests; install them (Debian: apt-get install chromium chromium-driver)" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "installing chromium and chromium-driver (the console's browser tests drive them)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
command -v chromedriver >/dev/null && command -v chromium >/dev/null
