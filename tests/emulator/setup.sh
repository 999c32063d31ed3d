#!/usr/bin/env bash
# Installs the local AWS emulator (moto and the Python packages of its extension, pinned in
# requirements.txt) into .venv-moto at the repository root.
# Idempotent: a venv already installed from the same requirements is left as it is.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.venv-moto"
requirements="$root/tests/emulator/requirements.txt"
pin="$(sha256sum "$requirements" | cut -d' ' -f1)"
marker="$venv/.whittle-pin"

if [ -x "$venv/bin/python" ] && [ "$(cat "$marker" 2>/dev/null)" = "$pin" ]; then
  exit 0
fi
python="$(command -v python3 || true)"
if [ -z "$python" ]; then
  echo "setup: python3 is missing; install it (Debian: apt-get install python3 python3-venv)" >&2
  exit 1
fi
echo "setup: installing tests/emulator/requirements.txt into $venv (about ten seconds, once)" >&2
if ! "$python" -m venv "$venv" 2>/dev/null; then
  # Debian's python3 ships venv separately.
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$venv"
    "$python" -m venv "$venv"
  else
    echo "setup: python3 cannot create a venv; install python3-venv" >&2
    exit 1
  fi
fi
# uv installs the set in 10 s of CPU where pip took 25 s, all of it beside the cargo build on
# CI's two cores. It is pinned here, installed by the venv's pip; uv reads SSL_CERT_FILE and,
# with --system-certs, the system's certificate store, as pip does. --compile-bytecode, as pip
# does by default: where PYTHONDONTWRITEBYTECODE is set (this machine's kind sets it), Python
# never writes the .pyc files itself, and every emulator and script then compiled moto and
# boto3 at each start (1.2 s of CPU to import them, against 0.4 s). Should uv fail (a mirror
# only pip is configured for, say), pip installs the set instead.
pip=("$venv/bin/pip" install --quiet --disable-pip-version-check)
if "${pip[@]}" uv==0.13.8 &&
  "$venv/bin/uv" pip install --quiet --system-certs --compile-bytecode \
    --python "$venv/bin/python" -r "$requirements"; then
  :
else
  echo "setup: uv could not install the emulator's packages; installing them with pip" >&2
  "${pip[@]}" -r "$requirements"
fi
echo "$pin" > "$marker"
