package main

import (
	"bytes"
	"crypto/rand"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/poll"
	"github.com/nym-go/nym/internal/testnet"
	"github.com/nym-go/nym/mixnet/link"
)

// The tunnel works with the network file of 3 authorities (k = 2), one of
// them stopped: nodes, the exit's router and the proxy all take the
// consensus the other two sign, from whichever answers.
func TestSocks5WithAnAuthorityDown(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for epochs")
	}
	id, err := link.GenerateKeyPair(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk := id.Public
	net := testnet.Start(t, testnet.Options{RouterKey: &rk, Authorities: 3, Threshold: 2})
	n := &testNet{Net: net, dirURL: net.DirectoryURL, dirKey: net.DirectoryKey}
	before, err := n.Topology()
	if err != nil {
		t.Fatal(err)
	}
	n.StopAuthority(0)
	poll.Until(t, 4*net.EpochLength()+10*time.Second, "a consensus the other two signed", func() bool {
		topo, err := n.Topology()
		return err == nil && topo.Epoch > before.Epoch+1 && topo.Routable() == nil
	})
	s := startSocksOn(t, n, id, socksOptions{}, connectRequest{networkFile: net.NetworkFile})
	body, _ := s.get(t, "http://"+webName+"/", "")
	if !bytes.Equal(body, s.page) {
		t.Fatalf("got %d bytes, not the %d-byte page", len(body), len(s.page))
	}
}
