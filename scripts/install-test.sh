#!/usr/bin/env bash
# Install test of the packages built by scripts/package.sh, on this Debian
# machine as root. systemd is usually not PID 1 here, so the daemon is started
# the way the installed unit's ExecStart would start it: as user latch with
# the supplementary group latch-admin, umask 0077, /run/latch made for it.
#
# Shows: install (users, modes, conffile, enabled unit, `systemd-analyze
# verify`), /ready over TLS, latchctl for root and for a non-root member of
# latch-admin while others are refused, an upgrade and a reinstall that keep
# the database rows and an edited conffile, remove (keeps config and data)
# and purge (removes them). For the .rpm: its file list, config flags and
# scriptlets (rpm cannot install it on Debian).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '== %s\n' "$*"; }
fail() { printf 'install-test.sh: FAIL: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "must run as root (it installs packages)"

work=$(mktemp -d)
# Copies: building the revision-2 package below clears target/debian.
cp target/debian/latch_*.deb target/generate-rpm/latch-*.rpm "$work/"
deb=$(ls "$work"/latch_*.deb)
rpm_file=$(ls "$work"/latch-*.rpm)
admin_user=latch-itest-admin
other_user=latch-itest-other
daemon_pid=

# latchd's own pid, from ready.json (the process started may be strace).
latchd_pid() { python3 -c 'import json; print(json.load(open("/var/lib/latch/ready.json"))["pid"])'; }

cleanup() {
    if [ -n "$daemon_pid" ]; then
        # latchd itself first: killing strace alone would leave it running.
        [ -s /var/lib/latch/ready.json ] &&
            kill "$(latchd_pid)" 2>/dev/null
        kill "$daemon_pid" 2>/dev/null || true
    fi
    userdel "$admin_user" 2>/dev/null || true
    userdel "$other_user" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# apt's progress goes to a log, shown only when apt fails.
apt_get() {
    DEBIAN_FRONTEND=noninteractive apt-get -y -q "$@" </dev/null >"$work/apt.log" 2>&1 ||
        { cat "$work/apt.log"; fail "apt-get $*"; }
}

# Starts latchd exactly as the installed unit's ExecStart line (and any
# ExecStartPre before it); with "traced", under strace (as latch too) to
# check the SystemCallFilter.
start_daemon() {
    local unit exec_pre exec_start tracer=""
    unit=$(systemctl cat latch.service 2>/dev/null || cat /lib/systemd/system/latch.service)
    exec_pre=$(printf '%s\n' "$unit" | sed -n 's/^ExecStartPre=\(.*\)/\1 \&\&/p')
    exec_start=$(printf '%s\n' "$unit" | sed -n 's/^ExecStart=//p')
    [ "${1:-}" = traced ] && tracer="strace -f -qq -o $work/trace"
    install -d -m 0755 -o latch -g latch /run/latch   # RuntimeDirectory=latch, Mode=0755
    if [ -n "$tracer" ]; then chown latch "$work"; fi   # strace writes its log as latch
    rm -f /var/lib/latch/ready.json
    setpriv --reuid=latch --regid=latch --groups=latch-admin --inh-caps=-all \
        sh -c "umask 0077; $exec_pre exec $tracer $exec_start" >"$work/latchd.log" 2>&1 &
    daemon_pid=$!
    for _ in $(seq 100); do
        [ -s /var/lib/latch/ready.json ] && return 0
        kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/latchd.log"; fail "latchd exited during start"; }
        sleep 0.1
    done
    cat "$work/latchd.log"
    fail "latchd did not write ready.json within 10 s"
}

# SIGTERM to latchd itself, then wait for a clean exit.
stop_daemon() {
    kill -TERM "$(latchd_pid)"
    wait "$daemon_pid" || { cat "$work/latchd.log"; fail "latchd exited non-zero on SIGTERM"; }
    daemon_pid=
}

https() { curl -sS --fail-with-body --cacert /var/lib/latch/tls/cert.pem "$@"; }

count_users() { python3 -c 'import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute("select count(*) from users").fetchone()[0])' /var/lib/latch/latch.db; }

check_running_install() {
    local ready
    ready=$(https https://localhost:8443/ready)
    [ "$ready" = '{"status":"ready"}' ] || fail "/ready answered $ready"
    echo "/ready over TLS: $ready"
    latchctl status >/dev/null || fail "latchctl status as root failed"
    runuser -u "$admin_user" -- latchctl status >"$work/status" || fail "latchctl as a latch-admin member failed"
    grep -q '0.1.0' "$work/status" || fail "latchctl status printed no version"
    if runuser -u "$other_user" -- latchctl status 2>"$work/refused"; then
        fail "latchctl worked for a user outside latch-admin"
    fi
    grep -q 'permission denied' "$work/refused" || fail "refusal does not say why: $(cat "$work/refused")"
    echo "refused as expected: $(cat "$work/refused")"
    # A conffile closed to the admin (it may hold the SMTP password): the
    # socket named, latchctl works without it and says it passed it over.
    local ran=0 unaimed=0
    chmod 600 /etc/latch/latch.toml
    runuser -u "$admin_user" -- latchctl --socket /run/latch/admin.sock status >"$work/status" 2>"$work/closed" ||
        ran=$?
    runuser -u "$admin_user" -- latchctl status >/dev/null 2>"$work/unaimed" || unaimed=$?
    chmod 644 /etc/latch/latch.toml
    [ "$ran" = 0 ] || fail "latchctl --socket with the config closed: $(cat "$work/closed")"
    [ "$unaimed" != 0 ] && grep -q 'Permission denied.*give --socket or --state-dir to go without it' "$work/unaimed" ||
        fail "latchctl without --socket, the config closed: $(cat "$work/unaimed")"
    echo "config closed, no socket named: $(cat "$work/unaimed")"
    grep -q '0.1.0' "$work/status" || fail "latchctl --socket printed no version"
    grep -q 'going by --socket' "$work/closed" || fail "the closed config is not told: $(cat "$work/closed")"
    echo "config closed, socket named: $(cat "$work/closed")"
}

say "start from a clean slate"
DEBIAN_FRONTEND=noninteractive apt-get -y -q purge latch </dev/null >/dev/null 2>&1 || true
rm -rf /var/lib/latch /etc/latch
useradd --system --no-create-home --shell /usr/sbin/nologin "$other_user" 2>/dev/null || true

say "apt-get install $(basename "$deb")"
apt_get install "$deb"

say "files, users, modes"
[ "$(stat -c '%a %U:%G' /var/lib/latch)" = "750 latch:latch" ] || fail "/var/lib/latch is $(stat -c '%a %U:%G' /var/lib/latch)"
getent group latch-admin >/dev/null || fail "group latch-admin missing"
[ "$(getent passwd latch | cut -d: -f7)" = /usr/sbin/nologin ] || fail "user latch has a login shell"
dpkg-query -W -f='${Conffiles}\n' latch | grep -q '/etc/latch/latch.toml' || fail "latch.toml is not a conffile"
for f in /usr/bin/latchd /usr/bin/latchctl /usr/lib/sysusers.d/latch.conf \
    /usr/share/man/man8/latchd.8.gz /usr/share/man/man8/latchctl.8.gz /usr/share/man/man5/latch.toml.5.gz \
    /usr/share/bash-completion/completions/latchctl /usr/share/zsh/vendor-completions/_latchctl \
    /usr/share/fish/vendor_completions.d/latchctl.fish \
    /usr/share/latch/prometheus/latch-alerts.yml /usr/share/latch/grafana/latch-dashboard.json; do
    [ -f "$f" ] || fail "$f not installed"
done
[ -L /etc/systemd/system/multi-user.target.wants/latch.service ] || fail "latch.service not enabled"
verify_out=$(systemd-analyze verify latch.service 2>&1) || { echo "$verify_out"; fail "systemd-analyze verify"; }
[ -z "$verify_out" ] || { echo "$verify_out"; fail "systemd-analyze verify printed findings"; }
echo "enabled, not started; systemd-analyze verify: clean"
useradd --no-create-home --shell /usr/sbin/nologin -G latch-admin "$admin_user"

say "start as the unit would (traced); /ready over TLS; latchctl permissions"
start_daemon traced
check_running_install
https -H 'content-type: application/json' \
    -d '{"email":"keep-me@example.org","password":"correct horse battery staple"}' \
    https://localhost:8443/v1/auth/register >/dev/null
https -H 'content-type: application/json' -d '{"email":"keep-me@example.org","password":"wrong password!"}' \
    https://localhost:8443/v1/auth/login -o /dev/null 2>/dev/null || true   # a 401, traced
latchctl config reload >/dev/null || fail "latchctl config reload"
stop_daemon
python3 scripts/check_syscalls.py /lib/systemd/system/latch.service "$work/trace" ||
    fail "the unit's SystemCallFilter would kill latchd"
rows=$(count_users)
[ "$rows" -ge 1 ] || fail "no user row after register"
# Two edits: a setting, and pages off with the mail links still at them,
# which the daemon warns about (once in the log, however it is started).
sed -i -e 's/^access_ttl = "15m"/access_ttl = "10m"/' -e 's/^enabled = true$/enabled = false/' /etc/latch/latch.toml
grep -q '^access_ttl = "10m"' /etc/latch/latch.toml || fail "could not edit the conffile"
echo "users rows: $rows; conffile edited (access_ttl = 10m, pages off)"

say "upgrade to revision 2, then reinstall: rows and the edited conffile stay"
mkdir "$work/rev2"
cargo deb --no-build --locked --quiet --deb-revision 2 --output "$work/rev2/" >/dev/null
cp "$deb" target/debian/
apt_get install "$work"/rev2/latch_*-2_*.deb
[ "$(dpkg-query -W -f='${Version}' latch)" = "0.1.0-2" ] || fail "upgrade did not happen"
apt_get install --reinstall "$work"/rev2/latch_*-2_*.deb
grep -q '^access_ttl = "10m"' /etc/latch/latch.toml || fail "the edited conffile was replaced"
[ "$(count_users)" = "$rows" ] || fail "user rows changed across upgrade"
start_daemon
check_running_install
stop_daemon
# Counted at the start only: check_running_install closes and reopens the
# conffile, and the daemon's watch may answer that with a reload, which
# rightly warns again.
warned=$(grep 'the pages are off' "$work/latchd.log" | grep -vc 'latch::daemon::reload' || true)
[ "$warned" = 1 ] || { cat "$work/latchd.log"; fail "the config's warning was logged $warned times, not once"; }
echo "the edited config's warning: logged once"

say "remove keeps config and data"
apt_get remove latch
[ -f /etc/latch/latch.toml ] || fail "remove deleted the config"
[ -f /var/lib/latch/latch.db ] || fail "remove deleted the database"
[ "$(count_users)" = "$rows" ] || fail "user rows changed on remove"

say "purge removes them"
apt_get purge latch
[ ! -e /etc/latch ] || fail "purge left /etc/latch"
[ ! -e /var/lib/latch ] || fail "purge left /var/lib/latch"
getent passwd latch >/dev/null || fail "purge deleted the latch user (policy: keep it)"

say "rpm: file list, config flags, scriptlets"
rpm -qpl "$rpm_file" >"$work/rpm-files"
for f in /usr/bin/latchd /usr/bin/latchctl /etc/latch/latch.toml /usr/lib/systemd/system/latch.service \
    /usr/lib/sysusers.d/latch.conf /usr/share/man/man8/latchd.8.gz /usr/share/man/man5/latch.toml.5.gz \
    /usr/share/latch/prometheus/latch-alerts.yml; do
    grep -qx "$f" "$work/rpm-files" || fail "$f missing from the rpm"
done
rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpm_file" | grep -q '^cn /etc/latch/latch.toml$' ||
    fail "latch.toml is not %config(noreplace) in the rpm"
rpm -qp --scripts "$rpm_file" >"$work/rpm-scripts"
for want in 'useradd -r' 'groupadd -r latch-admin' 'systemctl --no-reload preset latch.service' \
    'disable --now latch.service' 'try-restart latch.service'; do
    grep -q -- "$want" "$work/rpm-scripts" || fail "rpm scriptlets lack: $want"
done
for script in packaging/rpm/*.sh; do sh -n "$script" || fail "$script: syntax"; done
# %pre must be idempotent: the users exist now (from the .deb), so it changes nothing.
sh packaging/rpm/pre.sh || fail "rpm %pre failed with existing users"
echo "rpm: $(wc -l <"$work/rpm-files") files, config noreplace, scriptlets ok"

say "install test passed"
