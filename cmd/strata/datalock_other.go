//go:build !unix

package main

import (
	"fmt"
	"os"
)

// dataLock does nothing where flock(2) is missing: a second strata on the same directory is
// not detected there.
type dataLock struct{}

func lockDataDir(dir, flag string) (*dataLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	return &dataLock{}, nil
}

func (l *dataLock) release() {}
