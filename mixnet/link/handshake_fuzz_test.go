package link

import (
	"bytes"
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/flynn/noise"
)

// FuzzKEMPayload checks message 1's hybrid payload decoder: it never
// panics, accepts exactly kemPayloadSize bytes, and what it accepts
// re-encodes to the input.
func FuzzKEMPayload(f *testing.F) {
	good, _ := (&kemPayload{KeyID: KEMKeyID{1, 2, 3}}).MarshalBinary()
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var p kemPayload
		if err := p.UnmarshalBinary(b); err != nil {
			if len(b) == kemPayloadSize {
				t.Fatalf("refused a %d-byte payload: %v", len(b), err)
			}
			return
		}
		re, _ := p.MarshalBinary()
		if !bytes.Equal(re, b) {
			t.Fatal("payload does not re-encode to its input")
		}
	})
}

// FuzzHybridHandshake feeds arbitrary bytes to a responder that has a KEM
// key (and may require post-quantum links), alone or among rotating keys
// (KEMKeys), and to a hybrid initiator. No
// input may panic either or complete a handshake without the keys; seeds
// include a real hybrid message 1, so the fuzzer starts past the length
// dispatch and into decryption and decapsulation.
func FuzzHybridHandshake(f *testing.F) {
	responder := newPQKey(f)
	initiator := newKey(f)
	pk := publicKEM(f, responder)
	other, err := GenerateKEMKey()
	if err != nil {
		f.Fatal(err)
	}
	rotating := KeyPair{Private: responder.Private, Public: responder.Public, KEMKeys: NewKEMKeyring(other, responder.KEM)}

	msg1 := realHybridMessage1(f, initiator, responder, encapsulate(pk))
	f.Add(msg1, false, false)
	f.Add(msg1, false, true)
	f.Add(append(msg1, 0, 64), false, false)
	f.Add([]byte{0, 48}, false, true)
	f.Add(bytes.Repeat([]byte{0, 48}, 100), true, false)
	f.Fuzz(func(t *testing.T, script []byte, asInitiator, requirePQ bool) {
		if asInitiator {
			nc := scriptConn{bytes.NewReader(script)}
			if _, err := initiatorHandshake(context.Background(), nc, initiator, responder.Public, encapsulate(pk), time.Second); err == nil {
				t.Fatal("handshake completed against a scripted peer")
			}
			return
		}
		for _, local := range []KeyPair{responder, rotating} {
			local.RequirePQ = requirePQ
			nc := scriptConn{bytes.NewReader(script)}
			if _, err := respond(context.Background(), nc, local, time.Second); err == nil {
				t.Fatal("handshake completed against a scripted peer")
			}
		}
	})
}

// realHybridMessage1 is a length-prefixed hybrid message 1 as an honest
// initiator writes it.
func realHybridMessage1(t testing.TB, initiator, responder KeyPair, kem *kemEncap) []byte {
	t.Helper()
	var w bytes.Buffer
	hs, err := noise.NewHandshakeState(handshakeConfig(true, initiator, responder.Public[:], true, nil))
	if err != nil {
		t.Fatal(err)
	}
	hs.SetPresharedKey(kem.secret)
	payload, _ := kem.payload.MarshalBinary()
	msg, _, _, err := hs.WriteMessage(nil, payload)
	if err != nil {
		t.Fatal(err)
	}
	binary.Write(&w, binary.BigEndian, uint16(len(msg)))
	w.Write(msg)
	return w.Bytes()
}
