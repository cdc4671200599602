package main

import (
	"context"
	"errors"
	"testing"
)

// A change of the network cuts short what went out by the old uplink (a
// registration or handshake hanging on a gateway gone), and is not lost
// when the attempt got through all the same.
func TestUntilNetChange(t *testing.T) {
	changes := make(chan struct{}, 1)
	started := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- untilNetChange(t.Context(), changes, func(ctx context.Context) error {
			close(started)
			<-ctx.Done() // hangs until cut short
			return ctx.Err()
		})
	}()
	<-started
	changes <- struct{}{}
	if err := <-errc; !errors.Is(err, errNetChanged) {
		t.Fatalf("cut short: %v; want errNetChanged", err)
	}

	// No change: fn's own error, and nothing consumed.
	boom := errors.New("refused")
	if err := untilNetChange(t.Context(), changes, func(context.Context) error { return boom }); err != boom {
		t.Fatalf("without a change: %v; want fn's error", err)
	}

	// Through in spite of a change meanwhile: nil, and the change kept for
	// the next one.
	err := untilNetChange(t.Context(), changes, func(ctx context.Context) error {
		changes <- struct{}{}
		<-ctx.Done() // the change was seen...
		return nil   // ...but the attempt got through
	})
	if err != nil {
		t.Fatalf("through despite the change: %v", err)
	}
	select {
	case <-changes:
	default:
		t.Fatal("the change was lost")
	}

	// The owner's end is no change.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := untilNetChange(ctx, changes, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }); errors.Is(err, errNetChanged) || !errors.Is(err, context.Canceled) {
		t.Fatalf("after the owner's cancel: %v", err)
	}
}
