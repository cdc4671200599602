//go:build !linux

package mixnode

import "errors"

func newPreciseSleeper() (sleeper, error) {
	return nil, errors.New("mixnode: precise sleep needs Linux")
}

func preciseThread() error { return nil }
