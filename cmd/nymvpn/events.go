package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/nym-go/nym/vpn"
)

// The states an event reports. Connecting, connected and reconnecting are
// the tunnels' own (vpn.State's names); disconnected and error are the
// daemon's.
const (
	stateConnecting   = "connecting"
	stateConnected    = "connected"
	stateReconnecting = "reconnecting"
	stateDisconnected = "disconnected"
	stateError        = "error"
)

// event is one line of `nymvpn events`: a change of the tunnel's state.
type event struct {
	State string    `json:"state"`
	Mode  string    `json:"mode,omitempty"`
	Error string    `json:"error,omitempty"` // why, in state error
	Time  time.Time `json:"time"`
}

// eventBacklog is how many events a subscriber may fall behind before its
// stream ends: a front end that stops reading must not hold the daemon up.
const eventBacklog = 64

// events fans state changes out to the subscribers. Everything that
// changes the tunnel's state publishes here, and nothing else does: the
// stream is pushed, never polled.
type events struct {
	mu   sync.Mutex
	last event
	subs map[chan event]struct{}
}

// publish sends e to every subscriber, unless it repeats the last event. A
// subscriber eventBacklog events behind is dropped (its channel closed).
func (es *events) publish(e event) {
	es.mu.Lock()
	defer es.mu.Unlock()
	if e.State == es.last.State && e.Mode == es.last.Mode && e.Error == es.last.Error {
		return
	}
	e.Time = time.Now()
	es.last = e
	for ch := range es.subs {
		select {
		case ch <- e:
		default:
			close(ch)
			delete(es.subs, ch)
		}
	}
}

// subscribe returns a channel of the events from now on, the last event
// (the state now), and the function that ends the subscription.
func (es *events) subscribe() (<-chan event, event, func()) {
	es.mu.Lock()
	defer es.mu.Unlock()
	if es.subs == nil {
		es.subs = make(map[chan event]struct{})
	}
	ch := make(chan event, eventBacklog)
	es.subs[ch] = struct{}{}
	return ch, es.last, func() {
		es.mu.Lock()
		defer es.mu.Unlock()
		if _, ok := es.subs[ch]; ok {
			close(ch)
			delete(es.subs, ch)
		}
	}
}

// onState is a tunnel's OnState for mode: its states as events. Closed is
// left out: the daemon says disconnected or error when a tunnel ends.
func (d *daemon) onState(mode string) func(vpn.State) {
	return func(s vpn.State) {
		switch s {
		case vpn.StateConnecting:
			d.events.publish(event{State: stateConnecting, Mode: mode})
		case vpn.StateConnected:
			d.events.publish(event{State: stateConnected, Mode: mode})
		case vpn.StateReconnecting:
			d.events.publish(event{State: stateReconnecting, Mode: mode})
		}
	}
}

// streamEvents answers the events op: the state now, then one JSON line
// per change, until the client closes the connection or the daemon stops.
func (d *daemon) streamEvents(ctx context.Context, conn net.Conn) {
	conn.SetDeadline(time.Time{})
	ch, now, cancel := d.events.subscribe()
	defer cancel()
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		io.Copy(io.Discard, conn) // returns when the client closes, or on conn.Close below
	}()
	defer func() { conn.Close(); <-gone }()
	enc := json.NewEncoder(conn)
	for e, ok := now, true; ok; {
		conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if enc.Encode(e) != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-gone:
			return
		case e, ok = <-ch:
		}
	}
}

func newEvents(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "events",
		Short: "Print the tunnel's state changes as JSON lines, as they happen",
		Long: "Prints the state now, then one JSON object per change: {\"state\": connecting, connected,\n" +
			"reconnecting, disconnected or error, \"mode\", \"error\": why, \"time\"}. Runs until interrupted\n" +
			"or the daemon stops.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, err := net.DialTimeout("unix", o.socket, 2*time.Second)
			if err != nil {
				return fmt.Errorf("no daemon at %s: %w", o.socket, err)
			}
			defer conn.Close()
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			context.AfterFunc(ctx, func() { conn.Close() })
			if err := json.NewEncoder(conn).Encode(request{Op: "events"}); err != nil {
				return fmt.Errorf("talking to the daemon: %w", err)
			}
			dec := json.NewDecoder(conn)
			out := json.NewEncoder(cmd.OutOrStdout())
			for {
				var e json.RawMessage
				if err := dec.Decode(&e); err != nil {
					if ctx.Err() != nil || err == io.EOF {
						return nil
					}
					return fmt.Errorf("reading events: %w", err)
				}
				if err := out.Encode(e); err != nil {
					return err
				}
			}
		},
	}
}

// notify publishes a fast tunnel's state change (fastTunnel.onState).
func (ft *fastTunnel) notify(s vpn.State) {
	if ft.onState != nil {
		ft.onState(s)
	}
}
