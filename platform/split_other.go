//go:build !linux

package platform

import "fmt"

// Split is the exclusion group and its rules: Linux only for now.
type Split struct{}

// ApplySplit is not supported on this platform yet.
func ApplySplit(SplitConfig) (*Split, error) {
	return nil, fmt.Errorf("split tunnel: %w", ErrUnsupported)
}

// Exclude excludes nothing here.
func (*Split) Exclude() Exclude { return Exclude{} }

// Remove does nothing: nothing was applied.
func (*Split) Remove() error { return nil }

// JoinExcludeGroup is not supported on this platform yet.
func JoinExcludeGroup() error { return fmt.Errorf("split tunnel: %w", ErrUnsupported) }

// ExcludedPrograms is always empty here.
func ExcludedPrograms() ([]string, error) { return nil, nil }

func restoreSplit(*splitRecord) error {
	return fmt.Errorf("split tunnel: %w", ErrUnsupported)
}
