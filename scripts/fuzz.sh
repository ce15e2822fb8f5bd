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
  # The fuzzing coordinator sometimes stops with "context deadline
  # exceeded" when -fuzztime runs out while its workers start (busy
  # machine): no input failed. That, and only that, is tried once more; a
  # real failure writes its input to testdata/fuzz and fails at once.
  for try in 1 2; do
    if out=$(go test -run '^$' -fuzz "^${target}\$" -fuzztime "$time_per_target" "$pkg" 2>&1); then
      printf '%s\n' "$out"
      break
    fi
    printf '%s\n' "$out"
    if [ "$try" = 1 ] && grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'Failing input written' <<<"$out"; then
      echo "== $pkg $target: the fuzzer timed out starting, no failing input; once more"
      continue
    fi
    status=1
    break
  done
done < <(grep -rn --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' . | sort)
exit $status
