#!/usr/bin/env bash
# Installs what the packaging stages need on a fresh Debian machine with only
# the Rust toolchain: Debian's lintian, rpm, rpmlint, mandoc, promtool, curl
# and strace, and the cargo subcommands cargo-deb and cargo-generate-rpm (pinned;
# `cargo install` skips them when that version is already in ~/.cargo/bin).
set -euo pipefail

need_apt=()
for tool in lintian:lintian rpm:rpm rpmlint:rpmlint mandoc:mandoc promtool:prometheus curl:curl strace:strace; do
    command -v "${tool%%:*}" >/dev/null || need_apt+=("${tool#*:}")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "== apt-get install ${need_apt[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

cargo_tool() {
    local crate=$1 version=$2
    if ! cargo install --list | grep -q "^$crate v$version:"; then
        echo "== cargo install $crate@$version"
        cargo install --locked --quiet "$crate@$version"
    fi
}
cargo_tool cargo-deb 3.8.0
cargo_tool cargo-generate-rpm 0.21.1
