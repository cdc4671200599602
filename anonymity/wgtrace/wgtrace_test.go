package wgtrace

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/nym-go/nym/anonymity"
)

// Two traced binds on loopback, a client's and a gateway's: a datagram
// from one to the other is recorded Out at the sender and In at the
// receiver, under one packet id, with each end named as the other names
// it, and the trace passes anonymity.Check.
func TestBindRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.trace")
	rec, err := anonymity.OpenRecorder(path)
	if err != nil {
		t.Fatal(err)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	const gwID = 7
	client := Bind(conn.NewStdNetBind(), Config{
		Rec:  rec,
		Self: func(port uint16) anonymity.NodeID { return anonymity.EndpointID(netip.AddrPortFrom(lo, port)) },
		Role: anonymity.RoleClient,
		Peer: func(netip.AddrPort) (anonymity.NodeID, anonymity.Role) { return gwID, anonymity.RoleGateway },
	})
	gw := Bind(conn.NewStdNetBind(), Config{
		Rec:  rec,
		Self: func(uint16) anonymity.NodeID { return gwID },
		Role: anonymity.RoleGateway,
		Peer: func(ep netip.AddrPort) (anonymity.NodeID, anonymity.Role) {
			return anonymity.EndpointID(ep), anonymity.RoleClient
		},
	})
	_, cport, err := client.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	recv, gport, err := gw.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	ep, err := client.ParseEndpoint(netip.AddrPortFrom(lo, gport).String())
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("a WireGuard message, as far as the trace can tell")
	if err := client.Send([][]byte{msg}, ep); err != nil {
		t.Fatal(err)
	}
	// The datagram arrives on the IPv4 socket's receive function.
	bufs := make([][]byte, gw.BatchSize())
	for i := range bufs {
		bufs[i] = make([]byte, 2048)
	}
	sizes, eps := make([]int, len(bufs)), make([]conn.Endpoint, len(bufs))
	if n, err := recv[0](bufs, sizes, eps); err != nil || n != 1 || string(bufs[0][:sizes[0]]) != string(msg) {
		t.Fatalf("received %d datagrams (%v)", n, err)
	}
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := anonymity.ReadTrace(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2: %+v", len(recs), recs)
	}
	cid := anonymity.EndpointID(netip.AddrPortFrom(lo, cport))
	out, in := recs[0], recs[1]
	if out.Node != cid || out.Peer != gwID || out.Dir != anonymity.Out || out.Role != anonymity.RoleClient ||
		in.Node != gwID || in.Peer != cid || in.Dir != anonymity.In || in.PeerRole != anonymity.RoleClient {
		t.Errorf("records %+v\n%+v: want the client (%d) Out to the gateway and the gateway In from it", out, in, cid)
	}
	if out.Size != uint32(len(msg)) || in.Size != out.Size || out.Truth.Packet != anonymity.PacketIDOf(msg) ||
		in.Truth.Packet != out.Truth.Packet || in.Truth.Sender != cid || out.Truth.Sender != cid {
		t.Errorf("records %+v\n%+v: sizes, packet ids or senders differ", out, in)
	}
	if _, err := anonymity.Check(recs); err != nil {
		t.Error(err)
	}
}
