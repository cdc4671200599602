//go:build !linux

package netmon

func newSource(Config) (source, error) { return nil, ErrUnsupported }
