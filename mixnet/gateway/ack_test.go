package gateway

import (
	"bytes"
	"crypto/rand"
	"testing"
	"time"

	"github.com/nym-go/nym/internal/leakcheck"
	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// sphinxNode is a node on a test route: its routing address and Sphinx key.
type sphinxNode struct {
	addr [32]byte
	key  *sphinx.PrivateKey
}

func newSphinxNode() sphinxNode {
	n := sphinxNode{key: sphinx.GenerateKey()}
	rand.Read(n.addr[:])
	return n
}

func (n sphinxNode) hop() sphinx.Hop {
	return sphinx.Hop{Address: n.addr, Key: n.key.PublicKey(), Delay: time.Millisecond}
}

// walk processes pkt through nodes and returns what the last one learns.
func walk(t *testing.T, pkt []byte, nodes ...sphinxNode) sphinx.Processed {
	t.Helper()
	for i, n := range nodes {
		p, err := n.key.Process(pkt)
		if err != nil {
			t.Fatalf("hop %d: %v", i, err)
		}
		if i == len(nodes)-1 {
			if !p.Final {
				t.Fatalf("hop %d is not the last", i)
			}
			return p
		}
		if p.Final || p.NextHop != nodes[i+1].addr {
			t.Fatalf("hop %d routes to %x, want %x", i, p.NextHop[:4], nodes[i+1].addr[:4])
		}
		pkt = p.Packet
	}
	panic("unreachable")
}

func TestSURBAckSentAndPayloadDelivered(t *testing.T) {
	leakcheck.Check(t)
	tg := startGateway(t, t.TempDir(), link.KeyPair{}, nil)
	tg.fwd.scribble = true
	recipient := tg.dial(link.KeyPair{}, false)

	// The sender's ack comes back over ackMix to the sender's own gateway.
	ackMix, senderGateway, mix, thisGateway := newSphinxNode(), newSphinxNode(), newSphinxNode(), newSphinxNode()
	sender := sphinx.Destination{Address: [32]byte{0x5e}, ID: [16]byte{0xac}}
	ackPkt, err := sphinx.NewPacket([]sphinx.Hop{ackMix.hop(), senderGateway.hop()}, sender, []byte("fragment 42"), sphinx.SizeAck)
	if err != nil {
		t.Fatal(err)
	}
	env := (&gatewire.Envelope{HasAck: true, AckParity: 1, AckHop: ackMix.addr, Ack: ackPkt, Body: []byte("end-to-end sealed body")}).AppendBinary(nil)
	dest := sphinx.Destination{Address: recipient.addr(), ID: [16]byte{0x1d}}
	pkt, err := sphinx.NewPacket([]sphinx.Hop{mix.hop(), thisGateway.hop()}, dest, env, sphinx.SizeRegular)
	if err != nil {
		t.Fatal(err)
	}
	p := walk(t, pkt, mix, thisGateway)
	sentPayload := bytes.Clone(p.Payload)

	tg.Deliver(p)

	got := tg.fwd.waitN(t, 1)[0]
	if got.hop != ackMix.addr || !got.odd || !bytes.Equal(got.pkt, ackPkt) {
		t.Fatalf("ack forwarded to %x odd %v (%d bytes); want %x odd true, the ack packet", got.hop[:4], got.odd, len(got.pkt), ackMix.addr[:4])
	}
	// It is a working packet: it reaches the sender's gateway for the sender.
	if back := walk(t, got.pkt, ackMix, senderGateway); back.Destination != sender {
		t.Fatalf("ack arrives for %x, want the sender", back.Destination.Address[:4])
	}
	if v := tg.metric("nym_gateway_acks_sent_total"); v != 1 {
		t.Errorf("acks_sent_total = %v, want 1", v)
	}

	d := recipient.nextDeliver()
	if d.ID != dest.ID || !bytes.Equal(d.Payload, sentPayload) {
		t.Fatalf("recipient got id %x and a payload that differs from the packet's", d.ID[:2])
	}
	msg, err := sphinx.OpenPayload(d.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := gatewire.ParseEnvelope(msg); err != nil || string(e.Body) != "end-to-end sealed body" {
		t.Fatalf("recipient's envelope: %v %q", err, e.Body)
	}

	// A payload that does not open (a SURB reply) goes to the client as it
	// is, and sends no ack.
	sealed := randomBytes(len(p.Payload))
	tg.deliver(recipient.addr(), dest.ID, sealed)
	if d := recipient.nextDeliver(); !bytes.Equal(d.Payload, sealed) {
		t.Fatal("sealed reply altered")
	}
	if v := tg.metric("nym_gateway_acks_sent_total"); v != 1 {
		t.Errorf("acks_sent_total = %v after a reply, want still 1", v)
	}
}

// A packet the gateway cannot deliver sends no ack: its sender must not
// believe it arrived, and retransmits it.
func TestNoAckForUnknownClient(t *testing.T) {
	leakcheck.Check(t)
	tg := startGateway(t, t.TempDir(), link.KeyPair{}, nil)
	ackMix, senderGateway, mix, thisGateway := newSphinxNode(), newSphinxNode(), newSphinxNode(), newSphinxNode()
	ackPkt, err := sphinx.NewPacket([]sphinx.Hop{ackMix.hop(), senderGateway.hop()}, sphinx.Destination{}, []byte("frag"), sphinx.SizeAck)
	if err != nil {
		t.Fatal(err)
	}
	env := (&gatewire.Envelope{HasAck: true, AckHop: ackMix.addr, Ack: ackPkt, Body: []byte("body")}).AppendBinary(nil)
	stranger := sphinx.Destination{Address: [32]byte{0x57}}
	pkt, err := sphinx.NewPacket([]sphinx.Hop{mix.hop(), thisGateway.hop()}, stranger, env, sphinx.SizeRegular)
	if err != nil {
		t.Fatal(err)
	}
	tg.Deliver(walk(t, pkt, mix, thisGateway))
	if v := tg.metric("nym_gateway_acks_sent_total"); v != 0 {
		t.Fatalf("acks_sent_total = %v for a packet nobody can receive, want 0", v)
	}
	if got := tg.fwd.count(); got != 0 {
		t.Fatalf("%d packets forwarded, want none", got)
	}
}
