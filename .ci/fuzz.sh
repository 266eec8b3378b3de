#!/usr/bin/env bash
# Runs every fuzz target of every package for $FUZZTIME each (go test -fuzz takes one target
# per run).
#
# Go's fuzzing coordinator (before Go 1.27) can fail a run at the -fuzztime boundary with only
# "context deadline exceeded" and no failing input: a race between the deadline context and its
# child (go.dev/issue/75804). Such a run is repeated, up to twice; a run that found a failing
# input is never repeated.
set -euo pipefail
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-5s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for pkg in $($GO list ./... | grep -v /integration); do
  dir=$($GO list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    for attempt in 1 2 3; do
      echo "fuzz $pkg $target ($FUZZTIME)"
      if $GO test -run=NONE -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "$pkg" >"$log" 2>&1; then
        break
      fi
      if grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log" && [ "$attempt" -lt 3 ]; then
        echo "  coordinator timed out without a failing input; running again"
        continue
      fi
      cat "$log"
      exit 1
    done
  done
done
