#!/usr/bin/env bash
# Runs every Go fuzz target in the module for a short while (default 10s
# each; `scripts/fuzz.sh 60s` for longer). Seed corpora live next to the
# tests in testdata/fuzz/<Target>/ and are also run by plain `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."
time_per_target=${1:-10s}
status=0
while IFS= read -r line; do
  file=${line%%:*}
  target=$(sed -E 's/.*func (Fuzz[A-Za-z0-9_]*).*/\1/' <<<"$line")
  pkg=./$(dirname "$file")
  echo "== $pkg $target ($time_per_target)"
  if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$time_per_target" "$pkg"; then
    status=1
  fi
done < <(grep -rn --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' . | sort)
exit $status
