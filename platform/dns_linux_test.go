package platform

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDNSOfANamespace changes the resolver a namespace's processes see:
// `ip netns exec` bind-mounts /etc/netns/NAME/resolv.conf over
// /etc/resolv.conf.
func TestDNSOfANamespace(t *testing.T) {
	requireNetAdmin(t)
	ns := newNS(t, "d")
	dir := filepath.Join("/etc/netns", ns)
	_, statErr := os.Stat("/etc/netns")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.RemoveAll(dir)
		if os.IsNotExist(statErr) {
			os.Remove("/etc/netns") // only if we made it and it is empty
		}
	})
	path := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(path, []byte(originalResolvConf), 0o644); err != nil {
		t.Fatal(err)
	}
	seen := func() string { return sh(t, "ip", "netns", "exec", ns, "cat", "/etc/resolv.conf") }
	if got := seen(); got != originalResolvConf {
		t.Fatalf("namespace sees %q before, want %q", got, originalResolvConf)
	}
	d, err := ApplyDNS(DNSConfig{StatePath: filepath.Join(t.TempDir(), "state", "state.json"), ResolvConf: path, Servers: tunnelResolvers})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := seen(), string(renderResolvConf(tunnelResolvers)); got != want {
		t.Errorf("namespace sees %q while connected, want %q", got, want)
	}
	if err := d.Restore(); err != nil {
		t.Fatal(err)
	}
	if got := seen(); got != originalResolvConf {
		t.Errorf("namespace sees %q after Restore, want %q", got, originalResolvConf)
	}
}

// TestDNSOnABindMountedFile: inside `ip netns exec` (and in containers)
// resolv.conf is a mount point that cannot be renamed over; it is rewritten
// in place instead, and restored in place.
func TestDNSOnABindMountedFile(t *testing.T) {
	requireNetAdmin(t)
	dir := t.TempDir()
	source := filepath.Join(dir, "netns-resolv.conf")
	mountpoint := filepath.Join(dir, "resolv.conf")
	os.WriteFile(source, []byte(originalResolvConf), 0o644)
	os.WriteFile(mountpoint, []byte("nameserver 203.0.113.53\n"), 0o644)
	state := filepath.Join(dir, "state", "state.json")

	errc := make(chan error, 1)
	var whileConnected []byte
	go func() {
		// This thread gets a private mount namespace and is never handed
		// back (no UnlockOSThread): Go discards it when the goroutine ends.
		runtime.LockOSThread()
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				return err
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return err
			}
			if err := unix.Mount(source, mountpoint, "", unix.MS_BIND, ""); err != nil {
				return err
			}
			d, err := ApplyDNS(DNSConfig{StatePath: state, ResolvConf: mountpoint, Servers: tunnelResolvers})
			if err != nil {
				return err
			}
			if whileConnected, err = os.ReadFile(mountpoint); err != nil {
				return err
			}
			return d.Restore()
		}()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if string(whileConnected) != string(renderResolvConf(tunnelResolvers)) {
		t.Errorf("mount point held %q while connected", whileConnected)
	}
	if got := string(readFile(t, source)); got != originalResolvConf {
		t.Errorf("bind-mounted file after Restore: %q, want %q", got, originalResolvConf)
	}
	if got := string(readFile(t, mountpoint)); got != "nameserver 203.0.113.53\n" {
		t.Errorf("the file under the mount changed: %q", got)
	}
}
