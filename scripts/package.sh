#!/usr/bin/env bash
# Builds and checks the packages: man pages and completions generated from
# the clap definitions, `mandoc -T lint`, the Prometheus rules and their unit
# tests, the Grafana dashboard, the systemd unit (`systemd-analyze security`
# exposure <= 1.5), then latch_<version>_<arch>.deb (lintian: no errors, no
# warnings) and the .rpm (rpmlint: no errors). Packages land in target/debian
# and target/generate-rpm. Needs: cargo-deb, cargo-generate-rpm, mandoc,
# promtool, lintian, rpmlint, systemd-analyze (scripts/ci-tools.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '== %s\n' "$*"; }
fail() { printf 'package.sh: %s\n' "$*" >&2; exit 1; }

say "cargo build --release (latchd, latchctl) and the page generator"
cargo build --release --locked --bins
cargo build --locked --example package_assets

# Reproducible page dates and archive timestamps: the last commit's time.
# Exported only after every cargo build: C build scripts (aws-lc-sys) watch
# it, and a change would rebuild half the dependency tree.
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH

say "man pages and completions -> target/assets"
rm -rf target/assets
target/debug/examples/package_assets target/assets
cp man/latch.toml.5 target/assets/man/

say "mandoc -T lint"
# Run inside the directory so cross-references (Xr latchd 8) resolve.
(cd target/assets/man && mandoc -T lint -W style ./*) || fail "mandoc -T lint found problems (above)"

say "promtool check rules / test rules"
promtool check rules etc/prometheus/latch-alerts.yml
(cd etc/prometheus && promtool test rules latch-alerts.test.yml)

say "Grafana dashboard covers every metric the alerts use"
python3 - <<'EOF'
import json, re, sys
rules = open("etc/prometheus/latch-alerts.yml").read()
dash = json.load(open("etc/grafana/latch-dashboard.json"))
exprs = " ".join(t["expr"] for p in dash["panels"] for t in p.get("targets", []))
alert_metrics = set(re.findall(r"latch_[a-z_]+", rules)) - {"latch_http_request_duration_seconds_bucket"}
alert_metrics.add("latch_http_request_duration_seconds")
missing = sorted(m for m in alert_metrics if m not in exprs)
if missing:
    sys.exit(f"dashboard lacks panels for: {', '.join(missing)}")
print(f"{len(dash['panels'])} panels; all {len(alert_metrics)} alert metrics shown")
EOF

say "systemd-analyze security (exposure must be <= 1.5)"
exposure=$(systemd-analyze security --offline=yes --no-pager systemd/latch.service 2>/dev/null |
    sed -n 's/.*Overall exposure level for latch.service: \([0-9.]*\).*/\1/p')
[ -n "$exposure" ] || fail "systemd-analyze printed no exposure level"
echo "exposure level: $exposure"
awk -v e="$exposure" 'BEGIN { exit !(e <= 1.5) }' || fail "unit exposure $exposure is above 1.5"

say "cargo deb"
rm -rf target/debian
cargo deb --no-build --locked --quiet
deb=$(ls target/debian/latch_*.deb)
echo "$deb"

say "lintian (no errors, no warnings)"
lintian --fail-on error,warning "$deb"

say "cargo generate-rpm"
# rpm ships compressed pages (cargo-deb compresses its own copies).
for page in target/assets/man/*.[58]; do gzip -9 -n -c "$page" >"$page.gz"; done
rm -rf target/generate-rpm
cargo generate-rpm
rpm_file=$(ls target/generate-rpm/latch-*.rpm)
echo "$rpm_file"

say "rpmlint (no errors)"
# rpmlint exits non-zero for warnings too; only errors fail the build.
rpmlint_out=$(rpmlint -c packaging/rpm/rpmlint.toml "$rpm_file" 2>&1 || true)
echo "$rpmlint_out"
echo "$rpmlint_out" | grep -q ' 0 errors' || fail "rpmlint reported errors"

say "packages ready: $deb $rpm_file"
