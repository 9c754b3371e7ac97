#!/usr/bin/env bash
# Runs the whole test suite. The integration tests start the real latchd and
# talk to it with outside clients: a real SMTP server (aiosmtpd), a JWT
# verifier (PyJWT), a TOTP implementation (pyotp), an API fuzzer
# (schemathesis), promtool and the sqlite3
# CLI; install them first if this machine lacks them. Tests named
# `*_as_root` act as other users or mount a small filesystem; without root
# they are left out, visibly.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import aiosmtpd, jwt, cryptography, schemathesis, pyotp' >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check aiosmtpd PyJWT cryptography 'schemathesis>=4.3,<5' pyotp
fi
# promtool (Debian's prometheus package) checks the live /metrics text; the
# sqlite3 CLI is how the audit tests tamper with a row, as an intruder would.
need_apt=()
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v sqlite3 >/dev/null 2>&1 || need_apt+=(sqlite3)
if [ ${#need_apt[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
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
