#!/usr/bin/env bash
# quiet.sh WHAT COMMAND...: runs COMMAND with its output held back; prints it only if the
# command fails (then with what failed), so that the first screen of `make demo` is the demo.
# `make V=1 ...` runs commands without this (every compiler line and pip message shown).
set -u
what=$1; shift
if [ "${V:-0}" = 1 ]; then
  exec "$@"
fi
log=$(mktemp "${TMPDIR:-/tmp}/hvlab-build.XXXXXX")
"$@" >"$log" 2>&1
rc=$?
if [ "$rc" = 0 ]; then
  rm -f "$log"
  exit 0
fi
cat "$log" >&2
rm -f "$log"
echo "make: $what failed (exit code $rc); the output above says why (make V=1 shows every command)" >&2
exit "$rc"
