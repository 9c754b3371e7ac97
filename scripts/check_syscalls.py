#!/usr/bin/env python3
"""Checks that every system call in an strace log is allowed by a unit's
SystemCallFilter= lines, so the filter cannot kill latchd (SIGSYS) under
systemd on a path the trace covered.

Usage: check_syscalls.py UNIT_FILE STRACE_LOG

The lines apply in order, as systemd applies them: the first one without
"~" starts an allow list, "~" lines remove from it, later plain lines add
back. Groups (@name) are expanded with `systemd-analyze syscall-filter`.
"""

import re
import subprocess
import sys

_groups = {}


def expand(name):
    """The system calls a name stands for: itself, or a group's members."""
    if not name.startswith("@"):
        return {name}
    if name not in _groups:
        out = subprocess.run(
            ["systemd-analyze", "syscall-filter", name], capture_output=True, text=True, check=True
        ).stdout
        members = set()
        for line in out.splitlines()[1:]:
            item = line.strip()
            if item and not item.startswith("#"):
                members |= expand(item)
        _groups[name] = members
    return _groups[name]


def allowed_by(unit_text):
    allowed = None
    for line in unit_text.splitlines():
        if not line.startswith("SystemCallFilter="):
            continue
        value = line.split("=", 1)[1].strip()
        deny = value.startswith("~")
        names = set()
        for item in value.lstrip("~").split():
            names |= expand(item)
        if allowed is None:
            if deny:
                sys.exit("the first SystemCallFilter= is a deny list; this check expects an allow list")
            allowed = names
        elif deny:
            allowed -= names
        else:
            allowed |= names
    if allowed is None:
        sys.exit("the unit has no SystemCallFilter=")
    return allowed


def used_in(trace_text):
    calls = set()
    for line in trace_text.splitlines():
        # "1234  name(args..." or "1234  <... name resumed>..."
        m = re.match(r"^\d+\s+(?:<\.\.\. )?([a-z_0-9]+)[( ]", line)
        if m:
            calls.add(m.group(1))
    return calls


def main():
    unit_path, trace_path = sys.argv[1], sys.argv[2]
    allowed = allowed_by(open(unit_path).read())
    used = used_in(open(trace_path).read())
    refused = sorted(used - allowed)
    if refused:
        sys.exit(f"latchd made calls the unit's SystemCallFilter refuses: {', '.join(refused)}")
    print(f"{len(used)} distinct system calls traced, all allowed by SystemCallFilter")


if __name__ == "__main__":
    main()
