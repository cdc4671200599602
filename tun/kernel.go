package tun

import wgtun "golang.zx2c4.com/wireguard/tun"

// KernelDevice is a Device backed by an operating-system network interface.
type KernelDevice interface {
	Device

	// Index is the interface index, fixed when the device was created. The
	// platform package configures addresses and routes by it (or by Name).
	Index() int
}

// WireGuardTUN returns d as a wireguard-go TUN when d is a kernel TUN, so
// that a wireguard-go device reads and writes it with its own buffers and
// offsets: the kernel's super-packets are split straight into the
// device's buffers, and its writes coalesced in place, with no copy in
// between (Device.Write must copy, since it never modifies its packets).
// The returned device's Events never yield (link state is the platform
// package's, as for d); its Close closes d. ok is false for other devices.
func WireGuardTUN(d Device) (dev wgtun.Device, ok bool) {
	k, ok := d.(interface{ wireGuardTUN() wgtun.Device })
	if !ok {
		return nil, false
	}
	return k.wireGuardTUN(), true
}
