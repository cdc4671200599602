package exit

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

const capNetAdmin = 12

// HasNetAdmin reports whether the process holds CAP_NET_ADMIN in its
// effective set: the TUN, addresses, nftables and sysctls all need it.
func HasNetAdmin() bool {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return os.Geteuid() == 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		hex, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		caps, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		return err == nil && caps&(1<<capNetAdmin) != 0
	}
	return false
}
