#!/usr/bin/env bash
# The whole test suite: sets up the emulator venv (once), builds whittle, runs every Rust test
# (unit tests and the integration tests against the emulator), the emulator's own tests, the
# CI recipe's tests and the HTML report's tests in headless Chromium.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# Chromium (apt-get, when missing) and playwright-core (npm ci) install in the background,
# overlapping the emulator's setup and the cargo build; waited for before the browser tests.
browser_log="$(mktemp)"
"$root/tests/browser/setup.sh" >"$browser_log" 2>&1 &
browser_setup=$!
"$root/tests/emulator/setup.sh"
# A clean build gains nothing from incremental compilation's bookkeeping.
if [ "${CI:-}" = true ]; then
  export CARGO_INCREMENTAL=0
fi
# The emulator's own tests first: the Rust integration tests stand on it.
"$root/.venv-moto/bin/python" -m unittest discover -s "$root/tests/emulator"
# The CI recipe: post-comments.py against a stand-in comment API, and yamllint on the YAML.
"$root/.venv-moto/bin/python" -m unittest discover -s "$root/tests/ci"
# The integration tests run the real binary, which `cargo test` does not build for another
# package's tests. It is built with every workspace test target in one resolution of
# features: `cargo build -p whittle` alone resolves dependency features without the test
# targets' dev-dependencies (proptest turns on features of getrandom and regex-syntax),
# which made `cargo test --workspace` build the whole AWS SDK a second time.
cargo build --workspace --bins --tests
# The HTML report in Chromium: needs the whittle and plan-fixture binaries just built.
if ! wait "$browser_setup"; then
  cat "$browser_log" >&2
  echo "tests/browser/setup.sh failed (its output above)" >&2
  exit 1
fi
(cd "$root/tests/browser" && node --test)
# Eight tests at once (cargo's default is one per core: 2 on CI). The integration tests mostly
# wait (on the emulator, on daemons' schedules, on trial windows), so on 2 cores 8 keep both
# busy; more only queue for the CPU and stretch the tests that check timing (measured: 6, 8
# and 10 about equal, 12 and 16 slower). It applies to every test binary; the unit tests take
# the same time with it. A test's own cases run at most 4 at once (WHITTLE_TEST_CASES_AT_ONCE).
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-8}"
cargo test --workspace
