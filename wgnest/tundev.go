package wgnest

import (
	"os"
	"sync"

	wgtun "golang.zx2c4.com/wireguard/tun"

	"github.com/nym-go/nym/tun"
)

// newTunDevice gives the inner WireGuard device the user's TUN: a kernel
// TUN (nymvpn0) directly, so the device's buffers take the kernel's
// packets with no copy of ours (tun.WireGuardTUN); any other tun.Device
// through tunDevice.
func newTunDevice(dev tun.Device) wgtun.Device {
	if wg, ok := tun.WireGuardTUN(dev); ok {
		return wg
	}
	return newCopyingTunDevice(dev)
}

// tunDevice adapts a tun.Device (a userspace one, say) to wireguard.
//
// wireguard reads into its own buffers at an offset, shorter than the
// MaxPacketSize buffers tun.Device reads into, so reads go through a batch
// of our own and are copied (one memcpy per packet, far below the cost of
// the ChaCha20-Poly1305 that follows). Writes pass straight through: the
// device copies them.
type tunDevice struct {
	dev tun.Device

	readMu sync.Mutex // wireguard reads from one goroutine; this keeps it so
	bufs   [][]byte
	sizes  []int

	writeMu sync.Mutex
	pkts    [][]byte

	events chan wgtun.Event
	once   sync.Once
}

func newCopyingTunDevice(dev tun.Device) *tunDevice {
	bufs, sizes := tun.NewBatch(dev)
	return &tunDevice{dev: dev, bufs: bufs, sizes: sizes, events: make(chan wgtun.Event)}
}

func (d *tunDevice) File() *os.File             { return nil }
func (d *tunDevice) MTU() (int, error)          { return d.dev.MTU(), nil }
func (d *tunDevice) Name() (string, error)      { return d.dev.Name(), nil }
func (d *tunDevice) Events() <-chan wgtun.Event { return d.events }
func (d *tunDevice) BatchSize() int             { return d.dev.BatchSize() }

func (d *tunDevice) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	d.readMu.Lock()
	defer d.readMu.Unlock()
	n, err := d.dev.Read(d.bufs, d.sizes)
	if err != nil {
		return 0, err
	}
	m := 0
	for i := range n {
		if m == len(bufs) {
			break // cannot happen: wireguard passes BatchSize buffers
		}
		if offset+d.sizes[i] > len(bufs[m]) {
			continue // larger than any WireGuard message; dropped as a router would
		}
		sizes[m] = copy(bufs[m][offset:], d.bufs[i][:d.sizes[i]])
		m++
	}
	return m, nil
}

func (d *tunDevice) Write(bufs [][]byte, offset int) (int, error) {
	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	d.pkts = d.pkts[:0]
	for _, b := range bufs {
		if len(b) > offset {
			d.pkts = append(d.pkts, b[offset:])
		}
	}
	err := d.dev.Write(d.pkts)
	clear(d.pkts)
	if err != nil {
		return 0, err
	}
	return len(bufs), nil
}

// Close closes the TUN, which ends the device's reader, and the events
// channel, which ends its event reader.
func (d *tunDevice) Close() error {
	err := d.dev.Close()
	d.once.Do(func() { close(d.events) })
	return err
}
