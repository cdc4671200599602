package directory

import (
	"bytes"
	"fmt"
)

// MaxMonitorKeys bounds the monitor keys of a vote or topology: one per
// authority.
const MaxMonitorKeys = 64

// MonitorKey is the link key an authority's loop monitor connects to
// gateways with, as a client. Gateways that require bandwidth tickets let
// it in without one: it measures the network and buys nothing. Like an
// issuer key, each authority is the only voice for its own: its vote names
// it, and the consensus carries what each authority's vote said.
type MonitorKey struct {
	Authority Key `json:"authority"`
	Link      Key `json:"link"`
}

// validateMonitorKeys checks ks is ordered by authority, one each, with
// keys set.
func validateMonitorKeys(ks []MonitorKey) error {
	if len(ks) > MaxMonitorKeys {
		return fmt.Errorf("%w: %d monitor keys, limit %d", ErrInvalid, len(ks), MaxMonitorKeys)
	}
	for i, k := range ks {
		if k.Authority.IsZero() || k.Link.IsZero() {
			return fmt.Errorf("%w: monitor key %d is empty", ErrInvalid, i)
		}
		if i > 0 && bytes.Compare(ks[i-1].Authority[:], k.Authority[:]) >= 0 {
			return fmt.Errorf("%w: monitor keys out of order or repeated at %d", ErrInvalid, i)
		}
	}
	return nil
}

// CompareMonitorKeys orders monitor keys by authority.
func CompareMonitorKeys(a, b MonitorKey) int { return bytes.Compare(a.Authority[:], b.Authority[:]) }

// IsMonitor reports whether link is the link key of an authority's loop
// monitor in t.
func (t *Topology) IsMonitor(link [32]byte) bool {
	for _, k := range t.Monitors {
		if [32]byte(k.Link) == link {
			return true
		}
	}
	return false
}
