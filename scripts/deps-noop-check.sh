#!/usr/bin/env bash
# CI, after make test: a second `make deps` is a no-op. It must not call
# apt-get, apt or dpkg (stubs first on PATH fail loudly if it does), must
# leave dpkg's package list unchanged, must report every package of
# scripts/deps.txt present, and must finish within LIMIT seconds.
#
#   scripts/deps-noop-check.sh [LIMIT]     (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
limit="${1:-3}"
stubs=$(mktemp -d)
trap 'rm -rf "$stubs"' EXIT
for tool in apt-get apt dpkg; do
	printf '#!/bin/sh\necho "make deps ran %s $*: a second run must install nothing" >&2\nexit 1\n' "$tool" >"$stubs/$tool"
	chmod +x "$stubs/$tool"
done
dpkg_state() { dpkg-query -W -f='${Package} ${Version} ${Status}\n' | sha256sum; }

before=$(dpkg_state)
start=$(date +%s%N)
if ! out=$(PATH="$stubs:$PATH" make --no-print-directory deps 2>&1); then
	echo "$out" >&2
	echo "FAIL: the second make deps failed" >&2
	exit 1
fi
ms=$((($(date +%s%N) - start) / 1000000))
after=$(dpkg_state)
n=$(scripts/deps.sh --list | wc -l)
echo "$out"
fail=0
[[ "$out" == *"all $n packages present"* ]] || { echo "FAIL: it did not report all $n packages present" >&2; fail=1; }
[ "$before" = "$after" ] || { echo "FAIL: dpkg's package list changed" >&2; fail=1; }
[ "$ms" -le $((limit * 1000)) ] || { echo "FAIL: it took ${ms} ms, over ${limit} s" >&2; fail=1; }
[ "$fail" = 0 ] || exit 1
echo "make deps, second run: a no-op (nothing installed, no apt-get) in ${ms} ms"
