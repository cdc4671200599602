// Package tun moves IP packets between the VPN and the host's IP stack.
//
// Two devices sit behind one interface, so the VPN's packet pumps drive either:
//
//   - CreateKernel: a kernel TUN interface (Linux) on golang.zx2c4.com/wireguard/tun,
//     with the kernel's segmentation and receive offloads turned on. It needs
//     CAP_NET_ADMIN. Addresses and routes are the platform package's job.
//   - CreateNetstack: a userspace TCP/IP stack (gVisor) that needs no privileges;
//     the returned *Net dials, listens and resolves names through it, which is
//     what the SOCKS5 front-end uses.
//
// Packets are plain IP packets (version 4 or 6) with no header in front: the
// kernel device's virtio header and write offset are handled inside.
//
// Importing this package sends gVisor's process-wide log, which would go to
// stderr, to slog.Default instead (gVisor's Info and Debug at slog Debug).
package tun

import (
	"errors"
	"fmt"
)

// MaxPacketSize is the largest IP packet a Device reads or writes (the IPv4
// total-length limit; IPv6 jumbograms are not supported). Every read buffer
// must be at least this long: the kernel may change a TUN's MTU under us,
// and a short buffer must never cut a packet.
const MaxPacketSize = 65535

// ErrShortBuffer is returned by Read when bufs or sizes is shorter than
// BatchSize or a buffer is shorter than MaxPacketSize.
var ErrShortBuffer = errors.New("tun: read buffers too small")

// Device is a source and sink of IP packets.
//
// All methods are safe for concurrent use; one goroutine reading and one
// writing is the usual shape. Close unblocks a pending Read; afterwards Read
// and Write return an error that matches os.ErrClosed.
type Device interface {
	// Read blocks until at least one packet is available, then reads up to
	// len(bufs) packets into bufs, sets sizes[i] to the length of packet i
	// and returns how many it read. len(bufs) and len(sizes) must be at least
	// BatchSize() and every bufs[i] at least MaxPacketSize bytes long
	// (NewBatch makes such buffers); otherwise Read returns ErrShortBuffer.
	// The caller owns bufs before and after the call: the device keeps no
	// reference to them. On the kernel device one Read returns a whole
	// segmentation-offload super-packet split into MTU-sized packets.
	// An error that does not match os.ErrClosed (or ErrShortBuffer)
	// concerns this read only, such as a malformed packet from the kernel:
	// log it and keep reading.
	Read(bufs [][]byte, sizes []int) (n int, err error)

	// Write hands packets to the IP stack. It copies them, so the caller may
	// reuse pkts as soon as it returns, and it never modifies them. It tries
	// every packet; a non-nil error reports the ones the stack refused
	// (malformed, unknown IP version) while the rest were delivered.
	Write(pkts [][]byte) error

	// BatchSize is the number of packets one Read may return: the minimum
	// length of its bufs, and a good batch to hand to Write. It does not
	// change over the device's life.
	BatchSize() int

	// MTU is the maximum transmission unit the device was created with.
	MTU() int

	// Name is the interface name ("nymvpn0"), or "netstack" for the
	// userspace device.
	Name() string

	// Close releases the device and stops its goroutines. It is safe to
	// call more than once.
	Close() error
}

// NewBatch allocates read buffers for d: BatchSize buffers of MaxPacketSize
// bytes and a sizes slice to match. Allocate once per reader and reuse.
func NewBatch(d Device) (bufs [][]byte, sizes []int) {
	n := d.BatchSize()
	backing := make([]byte, n*MaxPacketSize)
	bufs = make([][]byte, n)
	for i := range bufs {
		bufs[i] = backing[i*MaxPacketSize : (i+1)*MaxPacketSize : (i+1)*MaxPacketSize]
	}
	return bufs, make([]int, n)
}

// checkReadBuffers enforces Read's contract before any packet is taken from
// the device, so a short buffer is reported instead of losing a packet.
func checkReadBuffers(bufs [][]byte, sizes []int, batch int) error {
	if len(bufs) < batch || len(sizes) < len(bufs) {
		return fmt.Errorf("%w: %d buffers and %d sizes, need %d", ErrShortBuffer, len(bufs), len(sizes), batch)
	}
	for i, b := range bufs {
		if len(b) < MaxPacketSize {
			return fmt.Errorf("%w: buffer %d holds %d bytes, need %d", ErrShortBuffer, i, len(b), MaxPacketSize)
		}
	}
	return nil
}

// validMTU rejects MTUs no IP stack can use: IPv4 needs 68 and IPv6 1280, but
// the VPN may run IPv4 alone, so only the IPv4 floor is enforced here.
func validMTU(mtu int) error {
	if mtu < 68 || mtu > MaxPacketSize {
		return fmt.Errorf("tun: MTU %d out of range [68, %d]", mtu, MaxPacketSize)
	}
	return nil
}
