#!/usr/bin/env bash
# Runs the whole test suite. The integration tests start the real latchd and
# talk to it with outside clients: a real SMTP server (aiosmtpd) and a JWT
# verifier (PyJWT); install them first if this machine lacks them.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import aiosmtpd, jwt, cryptography' >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check aiosmtpd PyJWT cryptography
fi
if ! command -v cargo-nextest >/dev/null 2>&1; then
    cargo install --locked cargo-nextest
fi
exec cargo nextest run "$@"
