// Package promreg registers a component's Prometheus collectors as one unit:
// all of them or none, and unregistered together when the component closes,
// so a component that fails to start, or is replaced, leaves no half of its
// metrics behind on a registry it shares with others.
package promreg

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers cs with r, all or none: on the first failure it
// unregisters those it had registered and returns the error. On success it
// returns a func that unregisters them all; calling it more than once is
// harmless. A nil r registers nothing (the component keeps its metrics to
// itself) and returns a func that does nothing.
func Register(r prometheus.Registerer, cs ...prometheus.Collector) (unregister func(), err error) {
	if r == nil {
		return func() {}, nil
	}
	for i, c := range cs {
		if err := r.Register(c); err != nil {
			unregisterAll(r, cs[:i])
			return nil, err
		}
	}
	return sync.OnceFunc(func() { unregisterAll(r, cs) }), nil
}

func unregisterAll(r prometheus.Registerer, cs []prometheus.Collector) {
	for _, c := range cs {
		r.Unregister(c)
	}
}
