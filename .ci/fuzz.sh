#!/usr/bin/env bash
# Runs every fuzz target of every package for $FUZZTIME each (go test -fuzz takes one target
# per run).
set -euo pipefail
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-5s}
for pkg in $($GO list ./... | grep -v /integration); do
  dir=$($GO list -f '{{.Dir}}' "$pkg")
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "fuzz $pkg $target ($FUZZTIME)"
    $GO test -run=NONE -fuzz="^${target}\$" -fuzztime="$FUZZTIME" "$pkg" >/tmp/strata-fuzz.log 2>&1 || { cat /tmp/strata-fuzz.log; exit 1; }
  done
done
