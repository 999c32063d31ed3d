#!/usr/bin/env bash
# Sets up the browser tests of the HTML report, idempotently: Debian's Chromium (only when
# /usr/bin/chromium is missing; apt-get needs root, as CI runs) and playwright-core at the
# version package-lock.json pins (`npm ci`, only when node_modules does not hold it).
# Playwright's own browser download is never used: it needs hosts CI cannot reach.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium
fi
pinned_is_installed() {
  (cd "$here" && node -e '
    const want = require("./package.json").devDependencies["playwright-core"];
    process.exit(require("./node_modules/playwright-core/package.json").version === want ? 0 : 1);
  ' 2>/dev/null)
}
if ! pinned_is_installed; then
  (cd "$here" && npm ci --no-audit --no-fund)
fi
