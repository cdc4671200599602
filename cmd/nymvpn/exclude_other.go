//go:build !linux

package main

import "errors"

func runExcluded([]string) error {
	return errors.New("exclude: split tunnelling is supported on Linux only")
}

func excludedPrograms() []string { return nil }
