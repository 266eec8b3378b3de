//go:build !unix

package tier

import "errors"

const offHeapSupported = false

func mapAnon(int) ([]byte, error) { return nil, errors.New("no anonymous mappings here") }

func unmapAnon([]byte) {}
