package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func counter(name string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: name})
}

// registered lists the metric names gathered from reg.
func registered(t *testing.T, reg *prometheus.Registry) map[string]bool {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := make(map[string]bool)
	for _, f := range families {
		names[f.GetName()] = true
	}
	return names
}

// TestRegisterAllOrNone: when one collector clashes with one already
// registered, none of the set stays registered; once the clash is gone the
// whole set registers, and unregister takes all of it away.
func TestRegisterAllOrNone(t *testing.T) {
	reg := prometheus.NewRegistry()
	other := counter("b_total")
	reg.MustRegister(other)
	set := []prometheus.Collector{counter("a_total"), counter("b_total"), counter("c_total")}
	if _, err := Register(reg, set...); err == nil {
		t.Fatal("a set with a clashing name registered")
	}
	if got := registered(t, reg); len(got) != 1 || !got["b_total"] {
		t.Fatalf("after the failed registration the registry holds %v, want only b_total", got)
	}
	reg.Unregister(other)
	unregister, err := Register(reg, set...)
	if err != nil {
		t.Fatal(err)
	}
	if got := registered(t, reg); len(got) != 3 {
		t.Fatalf("registry holds %v, want the three", got)
	}
	unregister()
	unregister()
	if got := registered(t, reg); len(got) != 0 {
		t.Fatalf("after unregister the registry holds %v", got)
	}
	// The names are free again: the component can be made anew.
	if _, err := Register(reg, set...); err != nil {
		t.Fatalf("registering again after unregister: %v", err)
	}
}

func TestRegisterNil(t *testing.T) {
	unregister, err := Register(nil, counter("a_total"))
	if err != nil || unregister == nil {
		t.Fatalf("Register(nil): unregister is nil: %t, err %v", unregister == nil, err)
	}
	unregister()
}
