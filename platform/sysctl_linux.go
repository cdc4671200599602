package platform

import (
	"fmt"
	"os"
	"strings"
)

// readSysctl reads /proc/sys/KEY. Keys under net/ belong to the network
// namespace of the calling thread: call it inside boundNetNS.run.
func readSysctl(key string) (string, error) {
	b, err := os.ReadFile("/proc/sys/" + key)
	if err != nil {
		return "", fmt.Errorf("sysctl %s: %w", key, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// writeSysctl writes /proc/sys/KEY, like readSysctl in the calling thread's
// namespace. Only the keys checkSysctlKey allows are written.
func writeSysctl(key, value string) error {
	// The key may come from a state file: only ours, never a path out of
	// /proc/sys.
	if err := checkSysctlKey(key); err != nil {
		return err
	}
	if err := os.WriteFile("/proc/sys/"+key, []byte(value+"\n"), 0o644); err != nil {
		return fmt.Errorf("sysctl %s: %w", key, err)
	}
	return nil
}
