package main

import (
	"os"
	"path/filepath"
	"strings"
)

// redeemWireGuard redeems, once, a voucher of each of fast mode's ticket
// types (wireguard-entry for the entry's door, wireguard-exit for the
// exit's) into the daemon's ticketbook, when the local network minted them
// (its gateways require tickets).
func (n *e2eNet) redeemWireGuard() {
	n.t.Helper()
	if n.wgRedeemed {
		return
	}
	for _, f := range []string{"vouchers-wireguard-entry", "vouchers-wireguard-exit"} {
		b, err := os.ReadFile(filepath.Join(n.state, f))
		if os.IsNotExist(err) {
			return // LOCALNET_TICKETS=0
		}
		if err != nil {
			n.t.Fatal(err)
		}
		v := strings.Fields(string(b))
		if len(v) == 0 {
			n.t.Fatalf("%s holds no voucher", f)
		}
		if out, err := n.vpn("tickets", "add", v[0], "--network", filepath.Join(n.state, "network.toml"), "--state", n.vpnState); err != nil {
			n.t.Fatalf("nymvpn tickets add (%s): %v\n%s", f, err, out)
		}
	}
	n.wgRedeemed = true
}
