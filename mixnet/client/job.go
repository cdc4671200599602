package client

import (
	"crypto/rand"
	"sync/atomic"
	"time"

	"github.com/nym-go/nym/mixnet/sphinx"
)

// job is one packet's worth of work waiting to be sent: a forward fragment
// (acknowledged or not) or a reply fragment on a SURB. Each job holds one
// slot of the in-flight window from the moment it is queued until it is
// acknowledged, given up, or (when not acknowledged) sent.
type job struct {
	// Forward fragments.
	to        Address
	plaintext []byte
	reliable  bool
	ackID     [sphinx.IDSize]byte

	// Reply fragments.
	surb *replySURB

	queued time.Time
	// sends counts transmissions and failed builds; the ack tracker reads
	// it to decide when to give up.
	sends atomic.Int32
	// finished is set once the job's window slot is given back.
	finished atomic.Bool
}

// randomID fills id with random bytes.
func randomID(id *[sphinx.IDSize]byte) { rand.Read(id[:]) }

// window bounds the jobs in flight. acquire blocks; release is called
// exactly once per job (finish ensures it).
type window chan struct{}

// finish gives the job's window slot back, once.
func (c *Client) finish(j *job) {
	if j.finished.CompareAndSwap(false, true) {
		<-c.window
	}
}
