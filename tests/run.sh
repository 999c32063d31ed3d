#!/usr/bin/env bash
# The whole test suite: sets up the emulator venv (once), builds whittle, runs every Rust test
# (unit tests and the integration tests against the emulator), the emulator's own tests, the
# CI recipe's tests and the HTML report's tests in headless Chromium.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# The cargo build keeps both cores busy, so only set-ups that mostly wait on the network run
# beside it. The test suites then run side by side, each into its own log printed when it
# ends: the integration tests (which mostly wait on emulators and schedules), the unit tests,
# the Python suites and the browser tests. Any failure fails the run, after everything has
# finished.
logs="$(mktemp -d)"
failed=0
finish() { # NAME PID
  if wait "$2"; then
    cat "$logs/$1"
  else
    cat "$logs/$1" >&2
    echo "tests/run.sh: $1 failed (its output above)" >&2
    failed=1
  fi
}
# Chromium (apt-get, when missing) and playwright-core (npm ci) install in the background,
# overlapping the cargo build; waited for before the browser tests.
"$root/tests/browser/setup.sh" >"$logs/browser-setup" 2>&1 &
browser_setup=$!
# A clean build gains nothing from incremental compilation's bookkeeping.
if [ "${CI:-}" = true ]; then
  export CARGO_INCREMENTAL=0
fi
# The emulator's setup (a venv and its packages on a fresh clone: mostly waiting on the
# network) runs beside the cargo build and is waited for before the Rust tests, which start
# emulators. The Python suites run later, beside the Rust tests: the build keeps both cores
# busy, while the integration tests mostly wait.
"$root/tests/emulator/setup.sh" >"$logs/emulator-setup" 2>&1 &
emulator_setup=$!
# The integration tests run the real binary, which `cargo test` does not build for another
# package's tests. It is built with every workspace test target in one resolution of
# features: `cargo build -p whittle` alone resolves dependency features without the test
# targets' dev-dependencies (proptest turns on features of getrandom and regex-syntax),
# which made `cargo test --workspace` build the whole AWS SDK a second time.
cargo build --workspace --bins --tests
# The test harnesses `cargo test --workspace` would run (a build with nothing left to do, which
# lists them): a line each, "package directory<TAB>executable<TAB>what it is". Run here rather
# than by `cargo test`, which runs one after another, so that the unit tests run beside the
# integration tests instead of before them.
# The integration tests come first, so that they start first.
harnesses="$(cargo test --workspace --no-run --message-format=json | python3 -c '
import json, os, sys
found = []
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        unit = m["target"]["kind"] != ["test"]
        what = m["target"]["name"] + (" unit tests" if unit else " integration tests")
        found.append((unit, os.path.dirname(m["manifest_path"]), m["executable"], what))
for _, *line in sorted(found):
    print(*line, sep="\t")
')"
finish emulator-setup "$emulator_setup"
# The emulator's own tests (the Rust integration tests stand on it) and the CI recipe's
# (post-comments.py against a stand-in comment API, yamllint on the YAML).
(
  "$root/.venv-moto/bin/python" -m unittest discover -s "$root/tests/emulator"
  "$root/.venv-moto/bin/python" -m unittest discover -s "$root/tests/ci"
) >"$logs/python" 2>&1 &
python_tests=$!
finish browser-setup "$browser_setup"
# The HTML report in Chromium: needs the whittle and plan-fixture binaries just built.
(cd "$root/tests/browser" && node --test) >"$logs/browser" 2>&1 &
browser_tests=$!
# Eight tests at once (libtest's default is one per core: 2 on CI). The integration tests mostly
# wait (on the emulator, on daemons' schedules, on trial windows), so on 2 cores 8 keep both
# busy; more only queue for the CPU and stretch the tests that check timing (measured: 6, 8
# and 10 about equal, 12 and 16 slower). It applies to every test harness; the unit tests take
# the same time with it. A test's own cases run at most 4 at once (WHITTLE_TEST_CASES_AT_ONCE).
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-8}"
# Each harness runs in its package's directory, as cargo runs it: the integration tests in the
# background, printed when they end; the unit tests one after another meanwhile.
integration=""
while IFS=$'\t' read -r dir exe what; do
  if [ "$what" = "it integration tests" ]; then
    (cd "$dir" && "$exe") >"$logs/integration" 2>&1 &
    integration=$!
  else
    echo "Running $what (${exe#"$root/"})"
    (cd "$dir" && "$exe") || failed=1
  fi
done <<<"$harnesses"
if [ -n "$integration" ]; then
  finish integration "$integration"
else
  echo "tests/run.sh: cargo listed no integration test harness (it)" >&2
  failed=1
fi
finish python "$python_tests"
finish browser "$browser_tests"
exit "$failed"
