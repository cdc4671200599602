package platform

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// boundNetNS is a network namespace held open by a handle, so that netlink
// and nftables connections can be created in it from any goroutine.
type boundNetNS struct {
	handle netns.NsHandle
	inode  uint64
}

// currentNetNS opens the network namespace of the calling OS thread. A caller
// that locked its thread into a namespace gets that namespace.
func currentNetNS() (*boundNetNS, error) {
	h, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		h.Close()
		return nil, fmt.Errorf("network namespace: %w", err)
	}
	return &boundNetNS{handle: h, inode: st.Ino}, nil
}

func (ns *boundNetNS) close() {
	if ns != nil {
		ns.handle.Close()
	}
}

// checkRecorded refuses to undo changes recorded in another namespace: undoing
// them here would delete routes or tables that belong to someone else.
func (ns *boundNetNS) checkRecorded(what string, recorded uint64) error {
	if recorded != 0 && recorded != ns.inode {
		return fmt.Errorf("%s: recorded in network namespace %d, but this thread is in %d; run Restore there",
			what, recorded, ns.inode)
	}
	return nil
}

// run calls fn on a fresh OS thread switched into the namespace, for the few
// operations that follow the calling thread's namespace (sysctl files under
// /proc/sys/net). fn must not start goroutines: they would not run in the
// namespace.
func (ns *boundNetNS) run(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return // the thread stays locked and is discarded
		}
		defer orig.Close()
		if err := netns.Set(ns.handle); err != nil {
			errc <- err
			return
		}
		err = fn()
		// Hand the thread back only if it is back in its own namespace;
		// otherwise it dies with this goroutine.
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
