#!/usr/bin/env bash
# Make sure Debian's Chromium is installed for the storefront's browser tests (crates/testkit/tests/e2e/
# storefront.rs drive /usr/bin/chromium headless; never a downloaded browser). Idempotent and fast when present.
# FLASHSALE_CHROMIUM names another binary; then nothing is installed.
set -euo pipefail

die() { echo "flashsale: ERROR: $*" >&2; exit 1; }

BIN=${FLASHSALE_CHROMIUM:-/usr/bin/chromium}
if [[ -x $BIN ]]; then
    exit 0
fi
[[ -n ${FLASHSALE_CHROMIUM:-} ]] && die "FLASHSALE_CHROMIUM=$BIN is not an executable"
command -v apt-get >/dev/null 2>&1 ||
    die "chromium is missing and apt-get is not available: install Chromium and set FLASHSALE_CHROMIUM to its binary"
SUDO=
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "chromium is missing; install it as root: apt-get install -y chromium"
    SUDO=sudo
fi
echo "flashsale: installing Debian's chromium for the browser tests" >&2
$SUDO apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >&2 ||
    die "apt-get could not install chromium"
[[ -x $BIN ]] || die "chromium was installed but $BIN is missing"
