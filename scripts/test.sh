#!/usr/bin/env bash
# Runs the whole test suite. The integration tests start the real latchd and
# talk to it with outside clients: a real SMTP server (aiosmtpd), a JWT
# verifier (PyJWT), a TOTP implementation (pyotp), an API fuzzer
# (schemathesis), a browser (chromium, selenium, axe-core), a TLS scanner
# (sslyze), promtool and the sqlite3 CLI; install them first if this machine
# lacks them. Tests named
# `*_as_root` act as other users or mount a small filesystem; without root
# they are left out, visibly.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import aiosmtpd, jwt, cryptography, schemathesis, pyotp, selenium, sslyze' >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check aiosmtpd PyJWT cryptography 'schemathesis>=4.3,<5' \
        pyotp selenium 'sslyze>=6,<7'
fi
# promtool (Debian's prometheus package) checks the live /metrics text; the
# sqlite3 CLI is how the audit tests tamper with a row, as an intruder would.
need_apt=()
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v sqlite3 >/dev/null 2>&1 || need_apt+=(sqlite3)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# The pages are tested in Debian's chromium through its chromedriver, with
# axe-core (npm) injected into every page; nothing is downloaded by a test.
if [ ! -f target/browser-tools/node_modules/axe-core/axe.min.js ]; then
    mkdir -p target/browser-tools
    npm install --silent --no-audit --no-fund --prefix target/browser-tools axe-core@4 >/dev/null
fi
if ! command -v cargo-nextest >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
fi
filter=()
if [ "$(id -u)" != 0 ]; then
    echo "== not root: leaving out the tests named *_as_root (they act as another user or mount a filesystem)" >&2
    filter=(-E 'not test(/_as_root$/)')
fi
exec cargo nextest run "${filter[@]}" "$@"
