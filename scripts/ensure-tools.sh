#!/usr/bin/env bash
# Make sure the project's Python tools (scripts/tools-requirements.txt, pinned) are installed in .venv-tools/.
# Idempotent and fast when already done: the venv remembers the requirements it was built from and pip runs only
# when they changed. Prints the venv's bin directory on stdout, so callers can do BIN=$(scripts/ensure-tools.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$ROOT/.venv-tools
REQS=$ROOT/scripts/tools-requirements.txt
STAMP=$VENV/.requirements

die() { echo "flashsale: ERROR: $*" >&2; exit 1; }

if [[ -f $STAMP ]] && cmp -s "$REQS" "$STAMP" && [[ -x $VENV/bin/python ]]; then
    echo "$VENV/bin"
    exit 0
fi

command -v python3 >/dev/null 2>&1 ||
    die "python3 is missing (needed for the deployment checks); install it with: sudo apt-get install -y python3 python3-venv"
python3 -c 'import venv, ensurepip' 2>/dev/null ||
    die "python3's venv module (with ensurepip) is missing; install it with: sudo apt-get install -y python3-venv"

echo "flashsale: installing the deployment check tools into $VENV" >&2
[[ -x $VENV/bin/python ]] || python3 -m venv "$VENV" >&2
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQS" >&2 ||
    die "pip could not install scripts/tools-requirements.txt into $VENV"
cp "$REQS" "$STAMP"
echo "$VENV/bin"
