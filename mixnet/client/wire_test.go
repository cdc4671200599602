package client

import (
	"bytes"
	"testing"

	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/gatewire"
	"github.com/nym-go/nym/mixnet/sphinx"
)

// walkTo processes pkt hop by hop from first with the nodes' keys until the
// last hop, and returns what it delivers.
func walkTo(t *testing.T, keys map[directory.Key]*sphinx.PrivateKey, first [32]byte, pkt []byte) sphinx.Processed {
	t.Helper()
	hop := first
	for range 8 {
		k := keys[directory.Key(hop)]
		if k == nil {
			t.Fatalf("no node %x", hop[:4])
		}
		p, err := k.Process(pkt)
		if err != nil {
			t.Fatalf("hop %x: %v", hop[:4], err)
		}
		if p.Final {
			return p
		}
		hop, pkt = p.NextHop, p.Packet
	}
	t.Fatal("route too long")
	return sphinx.Processed{}
}

// A stream's packet, built in place, is on the wire what the encoders make
// of the same message: opened layer by layer, its plaintext is byte for
// byte padPlaintext(Fragment(message)), and its SURB-ack works.
func TestStreamWireForward(t *testing.T) {
	c, keys := offlineClientKeys(t)
	to := c.addr // to ourselves: the offline client holds our key
	s := &Stream{c: c, to: to, tag: c.replyKeys.tagFor(to)}
	for _, n := range []int{0, 1, 3} {
		var p Payload
		p.reset(newWireBuffer(), false, sphinx.SizeRegular)
		for i := range p.buf { // stale bytes, as in a reused buffer
			p.buf[i] = 0xa5
		}
		room, err := p.SetSURBs(n)
		if err != nil {
			t.Fatal(err)
		}
		data := randomBytes(room)
		if err := p.SetData(append(p.Buf(), data...)); err != nil {
			t.Fatal(err)
		}
		send := buildSend(t, s, &p, nil)
		if len(send.Packet) != sphinx.RegularPacketSize {
			t.Fatalf("packet of %d bytes", len(send.Packet))
		}
		d := walkTo(t, keys, send.FirstHop, send.Packet)
		if d.Destination.Address != to.Identity || d.Destination.ID != zeroID {
			t.Fatal("delivered to the wrong destination")
		}
		body, err := sphinx.OpenPayload(d.Payload)
		if err != nil {
			t.Fatal(err)
		}
		env, err := gatewire.ParseEnvelope(body)
		if err != nil || !env.HasAck {
			t.Fatalf("envelope: %v", err)
		}
		if a := walkTo(t, keys, env.AckHop, env.Ack); a.Destination.Address != c.addr.Identity {
			t.Fatal("the SURB-ack does not come back to us")
		}
		pt, err := open(c.priv, env.Body)
		if err != nil {
			t.Fatal(err)
		}
		var f Fragment
		if err := f.UnmarshalBinary(pt); err != nil {
			t.Fatal(err)
		}
		got, err := parseMessage(mustUnpad(t, pt)[FragmentHeaderLen:])
		if err != nil {
			t.Fatal(err)
		}
		if got.kind != kindRepliable || got.tag != s.tag || len(got.surbs) != n || !bytes.Equal(got.data, data) {
			t.Fatalf("%d SURBs: decoded kind %d, %d SURBs, %d bytes of data", n, got.kind, len(got.surbs), len(got.data))
		}
		ref := &message{kind: kindRepliable, tag: s.tag, surbs: got.surbs, data: data}
		body2, _ := ref.appendBinary(nil)
		want, err := padPlaintext(&Fragment{SetID: f.SetID, Count: 1, Data: body2})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(pt, want) {
			t.Fatalf("%d SURBs: plaintext differs from the encoders'", n)
		}
	}
}

// buildSend builds p's packet on s and parses the Send message it makes.
func buildSend(t *testing.T, s *Stream, p *Payload, surb *replySURB) *gatewire.Send {
	t.Helper()
	bp, err := s.build(p, surb)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := gatewire.Parse(bp.wire)
	if err != nil {
		t.Fatal(err)
	}
	return msg.(*gatewire.Send)
}

func mustUnpad(t *testing.T, pt []byte) []byte {
	t.Helper()
	b, err := unpadPlaintext(pt)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A reply stream's packet, built in place, opens with the SURB's keys to
// the encoders' Fragment(message), byte for byte.
func TestStreamWireReply(t *testing.T) {
	c, keys := offlineClientKeys(t)
	var id [sphinx.IDSize]byte
	id[0] = 7
	surb, rk, err := c.newSURB(id)
	if err != nil {
		t.Fatal(err)
	}
	s := &Stream{c: c, reply: true}
	var p Payload
	p.reset(newWireBuffer(), true, sphinx.SizeRegular)
	for i := range p.buf {
		p.buf[i] = 0xa5
	}
	data := randomBytes(cap(p.Buf()))
	if err := p.SetData(append(p.Buf(), data...)); err != nil {
		t.Fatal(err)
	}
	send := buildSend(t, s, &p, &surb)
	if send.Parity != surb.parity || send.FirstHop != surb.surb.FirstHop {
		t.Fatal("Send header differs from the SURB's")
	}
	d := walkTo(t, keys, send.FirstHop, send.Packet)
	if d.Destination.ID != id {
		t.Fatal("reply delivered under the wrong ID")
	}
	pt, err := rk.Open(d.Payload)
	if err != nil {
		t.Fatal(err)
	}
	var f Fragment
	if err := f.UnmarshalBinary(pt); err != nil {
		t.Fatal(err)
	}
	body, _ := (&message{kind: kindReply, data: data}).appendBinary(nil)
	want, _ := (&Fragment{SetID: f.SetID, Count: 1, Data: body}).AppendBinary(nil)
	if !bytes.Equal(pt, want) {
		t.Fatal("reply plaintext differs from the encoders'")
	}
}
