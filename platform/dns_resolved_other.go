//go:build !linux

package platform

// systemd-resolved is Linux's alone.

func resolvedManages(string) bool { return false }

func applyResolved(DNSConfig) (*DNS, error) { return nil, ErrUnsupported }

func restoreResolved(dnsRecord) error { return nil }
