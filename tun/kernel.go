package tun

// KernelDevice is a Device backed by an operating-system network interface.
type KernelDevice interface {
	Device

	// Index is the interface index, fixed when the device was created. The
	// platform package configures addresses and routes by it (or by Name).
	Index() int
}
