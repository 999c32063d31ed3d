#!/usr/bin/env bash
# The whole test suite: sets up the emulator venv (once), builds whittle, runs every Rust test
# (unit tests and the integration tests against the emulator) and the emulator's own tests.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# A clean build gains nothing from incremental compilation's bookkeeping.
if [ "${CI:-}" = true ]; then
  export CARGO_INCREMENTAL=0
fi
# The emulator is installed (once) and checked by its own tests while whittle builds: one is
# mostly downloads and Python, the other compiling Rust, and neither needs the other.
emulator_log="$(mktemp)"
trap 'rm -f "$emulator_log"' EXIT
(
  "$root/tests/emulator/setup.sh"
  "$root/.venv-moto/bin/python" -m unittest discover -s "$root/tests/emulator"
) >"$emulator_log" 2>&1 &
emulator=$!
# The integration tests run the real binary, which `cargo test` does not build for another
# package's tests.
cargo build -p whittle
emulator_status=0
wait "$emulator" || emulator_status=$?
cat "$emulator_log" >&2
if [ "$emulator_status" -ne 0 ]; then
  echo "run.sh: the emulator's setup or its own tests failed (exit $emulator_status); the integration tests stand on it" >&2
  exit 1
fi
cargo test --workspace
