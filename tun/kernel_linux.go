package tun

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

// writeOffset is the headroom in front of each packet handed to wireguard's
// Write: with IFF_VNET_HDR it writes a 10-byte virtio-net header there. 16
// is what wireguard-go itself uses.
const writeOffset = 16

// kernelDevice is a kernel TUN with IFF_VNET_HDR offloads: Read splits the
// kernel's TSO/USO super-packets, Write coalesces (GRO) before writing.
type kernelDevice struct {
	dev   wgtun.Device
	name  string
	index int
	mtu   int
	batch int

	writeMu   sync.Mutex
	writeBufs [][]byte // lazily allocated, writeOffset+MaxPacketSize each
	groBufs   [][]byte // slice headers handed to wireguard, which extends and swaps them

	closed     atomic.Bool
	closeOnce  sync.Once
	closeErr   error
	eventsDone chan struct{}
}

// CreateKernel creates the TUN interface name (at most 15 bytes; "" lets the
// kernel pick tunN) with the given MTU, in the network namespace of the
// calling OS thread, and turns on checksum, TSO and (Linux ≥ 6.2) USO
// offloads. The interface is left down, without addresses or routes.
func CreateKernel(name string, mtu int) (KernelDevice, error) {
	if err := validMTU(mtu); err != nil {
		return nil, err
	}
	if len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("tun: interface name %q longer than %d bytes", name, unix.IFNAMSIZ-1)
	}
	// wireguard finds the index and sets the MTU through sockets of the
	// current thread's namespace, and so does netlink below: all of it must
	// run on the thread that opened the device.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	dev, err := wgtun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("tun: create %q: %w", name, err)
	}
	k, err := newKernelDevice(dev, mtu)
	if err != nil {
		go func() {
			for range dev.Events() { // ends when dev.Close closes it
			}
		}()
		dev.Close()
		return nil, fmt.Errorf("tun: create %q: %w", name, err)
	}
	return k, nil
}

func newKernelDevice(dev wgtun.Device, mtu int) (*kernelDevice, error) {
	name, err := dev.Name()
	if err != nil {
		return nil, fmt.Errorf("interface name: %w", err)
	}
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("look up link %s: %w", name, err)
	}
	batch := dev.BatchSize()
	if err := limitGSOSegments(link, batch, mtu); err != nil {
		return nil, err
	}
	k := &kernelDevice{
		dev:        dev,
		name:       name,
		index:      link.Attrs().Index,
		mtu:        mtu,
		batch:      batch,
		writeBufs:  make([][]byte, batch),
		groBufs:    make([][]byte, batch),
		eventsDone: make(chan struct{}),
	}
	// wireguard's netlink listener blocks once its 5-slot Events channel is
	// full, so something must always drain it. Link state is the platform
	// package's business, read from netlink; nothing here needs the events.
	// The channel is closed by dev.Close, which ends this goroutine.
	go func() {
		defer close(k.eventsDone)
		for range dev.Events() {
		}
	}()
	return k, nil
}

// limitGSOSegments keeps one kernel super-packet within one Read batch: the
// kernel never hands the device a GSO packet of more than gso_max_segs
// segments, and wireguard drops what does not fit in the caller's buffers.
// At usual MTUs a 64 KiB super-packet has under 128 segments anyway, so a
// kernel that refuses the setting only matters for small MTUs.
func limitGSOSegments(link netlink.Link, batch, mtu int) error {
	if link.Attrs().GSOMaxSegs != 0 && int(link.Attrs().GSOMaxSegs) <= batch {
		return nil
	}
	err := netlink.LinkSetGSOMaxSegs(link, batch)
	if err == nil {
		return nil
	}
	// Smallest segment: an IPv6 header (40) and a TCP header (20) per packet.
	worstSegments := (MaxPacketSize + mtu - 61) / (mtu - 60)
	if mtu <= 60 || worstSegments > batch {
		return fmt.Errorf("limit gso_max_segs to %d (needed at MTU %d): %w", batch, mtu, err)
	}
	return nil
}

func (k *kernelDevice) Read(bufs [][]byte, sizes []int) (int, error) {
	if err := checkReadBuffers(bufs, sizes, k.batch); err != nil {
		return 0, err
	}
	n, err := k.dev.Read(bufs, sizes, 0)
	switch {
	case err == nil:
		return n, nil
	case k.closed.Load() || errors.Is(err, os.ErrClosed):
		return 0, fmt.Errorf("tun: read %s: %w", k.name, os.ErrClosed)
	case errors.Is(err, wgtun.ErrTooManySegments) && n > 0:
		// The tail of an oversized super-packet is lost, as a router
		// would drop it; what fitted is good.
		return n, nil
	default:
		return 0, fmt.Errorf("tun: read %s: %w", k.name, err)
	}
}

func (k *kernelDevice) Write(pkts [][]byte) error {
	if k.closed.Load() {
		return fmt.Errorf("tun: write %s: %w", k.name, os.ErrClosed)
	}
	k.writeMu.Lock()
	defer k.writeMu.Unlock()
	var errs error
	for len(pkts) > 0 {
		chunk := pkts[:min(len(pkts), k.batch)]
		pkts = pkts[len(chunk):]
		if err := k.writeChunk(chunk); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return fmt.Errorf("tun: write %s: %w", k.name, os.ErrClosed)
			}
			errs = errors.Join(errs, err)
		}
	}
	if errs != nil {
		return fmt.Errorf("tun: write %s: %w", k.name, errs)
	}
	return nil
}

// writeChunk copies up to batch packets behind writeOffset bytes of
// headroom and writes them. Each buffer keeps 64 KiB of capacity because
// wireguard's GRO appends the following segments of a flow in place.
func (k *kernelDevice) writeChunk(pkts [][]byte) error {
	var errs error
	m := 0
	for _, p := range pkts {
		if len(p) == 0 || len(p) > MaxPacketSize {
			errs = errors.Join(errs, fmt.Errorf("packet of %d bytes", len(p)))
			continue
		}
		if k.writeBufs[m] == nil {
			k.writeBufs[m] = make([]byte, writeOffset+MaxPacketSize)
		}
		buf := k.writeBufs[m][:writeOffset+len(p)]
		copy(buf[writeOffset:], p)
		k.groBufs[m] = buf
		m++
	}
	if m == 0 {
		return errs
	}
	_, err := k.dev.Write(k.groBufs[:m], writeOffset)
	clear(k.groBufs[:m])
	return errors.Join(errs, err)
}

func (k *kernelDevice) BatchSize() int { return k.batch }
func (k *kernelDevice) MTU() int       { return k.mtu }
func (k *kernelDevice) Name() string   { return k.name }
func (k *kernelDevice) Index() int     { return k.index }

func (k *kernelDevice) Close() error {
	k.closeOnce.Do(func() {
		k.closed.Store(true)
		if err := k.dev.Close(); err != nil {
			k.closeErr = fmt.Errorf("tun: close %s: %w", k.name, err)
		}
		<-k.eventsDone
	})
	return k.closeErr
}

func (k *kernelDevice) wireGuardTUN() wgtun.Device {
	return &wireGuardView{k: k, events: make(chan wgtun.Event)}
}

// wireGuardView is a kernel TUN as a wireguard-go device drives it
// directly (see WireGuardTUN).
type wireGuardView struct {
	k      *kernelDevice
	events chan wgtun.Event
	once   sync.Once
}

func (v *wireGuardView) File() *os.File             { return v.k.dev.File() }
func (v *wireGuardView) MTU() (int, error)          { return v.k.dev.MTU() }
func (v *wireGuardView) Name() (string, error)      { return v.k.name, nil }
func (v *wireGuardView) Events() <-chan wgtun.Event { return v.events }
func (v *wireGuardView) BatchSize() int             { return v.k.batch }

func (v *wireGuardView) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := v.k.dev.Read(bufs, sizes, offset)
	if err != nil && v.k.closed.Load() {
		return 0, fmt.Errorf("tun: read %s: %w", v.k.name, os.ErrClosed)
	}
	return n, err
}

func (v *wireGuardView) Write(bufs [][]byte, offset int) (int, error) {
	if v.k.closed.Load() {
		return 0, fmt.Errorf("tun: write %s: %w", v.k.name, os.ErrClosed)
	}
	return v.k.dev.Write(bufs, offset)
}

// Close closes the TUN and ends Events.
func (v *wireGuardView) Close() error {
	err := v.k.Close()
	v.once.Do(func() { close(v.events) })
	return err
}
