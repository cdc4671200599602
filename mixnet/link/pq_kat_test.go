package link

import (
	"bytes"
	"crypto/mlkem/mlkemtest"
	"testing"

	"github.com/flynn/noise"
)

// katInputs are everything a hybrid handshake's keys derive from.
type katInputs struct {
	initiator, responder KeyPair
	ephemeral            byte // seeds both sides' X25519 ephemeral keys
	kem                  *KEMKey
	kemRandom            byte // seeds the ML-KEM encapsulation
}

func katKey(t *testing.T, b byte) KeyPair {
	t.Helper()
	k, err := KeyPairFromPrivate([32]byte(bytes.Repeat([]byte{b}, 32)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func katKEM(t *testing.T, b byte) *KEMKey {
	t.Helper()
	k, err := NewKEMKey(bytes.Repeat([]byte{b}, KEMSeedSize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// hybridTranscript runs the real hybrid configuration and KEM in memory,
// deterministically, and returns the first transport message each side
// sends (a fixed plaintext at nonce 0): a fingerprint of its session keys.
func hybridTranscript(t *testing.T, in katInputs) (fromInitiator, fromResponder []byte) {
	t.Helper()
	pk, err := ParseKEMPublicKey(in.kem.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	secret, ct, err := mlkemtest.Encapsulate768(pk.ek, bytes.Repeat([]byte{in.kemRandom}, 32))
	if err != nil {
		t.Fatal(err)
	}
	kem := &kemEncap{secret: secret}
	kem.payload.KeyID = pk.id
	copy(kem.payload.Ciphertext[:], ct)
	payload1, _ := kem.payload.MarshalBinary()

	rng := func(b byte) *bytes.Reader { return bytes.NewReader(bytes.Repeat([]byte{b}, 64)) }
	ini, err := noise.NewHandshakeState(handshakeConfig(true, in.initiator, in.responder.Public[:], true, rng(in.ephemeral)))
	if err != nil {
		t.Fatal(err)
	}
	if err := ini.SetPresharedKey(kem.secret); err != nil {
		t.Fatal(err)
	}
	responder := in.responder
	responder.KEM = in.kem
	res, err := noise.NewHandshakeState(handshakeConfig(false, responder, nil, true, rng(in.ephemeral+1)))
	if err != nil {
		t.Fatal(err)
	}

	msg, _, _, err := ini.WriteMessage(nil, payload1)
	if err != nil {
		t.Fatal(err)
	}
	got, _, _, err := res.ReadMessage(nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	psk, err := responder.decapsulate(got)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.SetPresharedKey(psk); err != nil {
		t.Fatal(err)
	}
	if msg, _, _, err = res.WriteMessage(nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err = ini.ReadMessage(nil, msg); err != nil {
		t.Fatal(err)
	}
	msg, iSend, iRecv, err := ini.WriteMessage(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, rRecv, rSend, err := res.ReadMessage(nil, msg)
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte("known answer")
	fromInitiator, _ = iSend.Encrypt(nil, nil, plain)
	fromResponder, _ = rSend.Encrypt(nil, nil, plain)
	// The two ends agree, or the rest of the test compares nothing.
	if p, err := rRecv.Decrypt(nil, nil, fromInitiator); err != nil || !bytes.Equal(p, plain) {
		t.Fatalf("responder cannot read the initiator: %v", err)
	}
	if p, err := iRecv.Decrypt(nil, nil, fromResponder); err != nil || !bytes.Equal(p, plain) {
		t.Fatalf("initiator cannot read the responder: %v", err)
	}
	return fromInitiator, fromResponder
}

// TestSessionKeysDependOnBothSecrets is the known-answer check: the same
// inputs give the same session keys, and changing either the X25519 side
// (an ephemeral or a static key) or the ML-KEM side (the encapsulation's
// randomness, hence its secret, or the KEM key) changes both directions'
// keys.
func TestSessionKeysDependOnBothSecrets(t *testing.T) {
	base := katInputs{initiator: katKey(t, 1), responder: katKey(t, 2), ephemeral: 3, kem: katKEM(t, 4), kemRandom: 5}
	i0, r0 := hybridTranscript(t, base)
	if i1, r1 := hybridTranscript(t, base); !bytes.Equal(i0, i1) || !bytes.Equal(r0, r1) {
		t.Fatal("the same inputs gave different session keys: the check compares nothing")
	}
	changes := map[string]func(*katInputs){
		"X25519 ephemeral":     func(in *katInputs) { in.ephemeral = 9 },
		"X25519 responder key": func(in *katInputs) { in.responder = katKey(t, 7) },
		"X25519 initiator key": func(in *katInputs) { in.initiator = katKey(t, 8) },
		"ML-KEM secret":        func(in *katInputs) { in.kemRandom = 6 },
		"ML-KEM key":           func(in *katInputs) { in.kem = katKEM(t, 10) },
	}
	for name, change := range changes {
		t.Run(name, func(t *testing.T) {
			in := base
			change(&in)
			i, r := hybridTranscript(t, in)
			if bytes.Equal(i, i0) || bytes.Equal(r, r0) {
				t.Fatalf("changing the %s left the session keys unchanged", name)
			}
		})
	}
}

// TestKEMSecretIsThePSK: with everything X25519 equal, a responder that
// derives another ML-KEM secret than the initiator cannot authenticate
// message 2 to it — the secret really enters the key schedule before any
// transport key exists.
func TestKEMSecretIsThePSK(t *testing.T) {
	responder := katKey(t, 2)
	ini, err := noise.NewHandshakeState(handshakeConfig(true, katKey(t, 1), responder.Public[:], true, nil))
	if err != nil {
		t.Fatal(err)
	}
	res, err := noise.NewHandshakeState(handshakeConfig(false, responder, nil, true, nil))
	if err != nil {
		t.Fatal(err)
	}
	ini.SetPresharedKey(bytes.Repeat([]byte{1}, 32))
	res.SetPresharedKey(bytes.Repeat([]byte{2}, 32))
	msg, _, _, _ := ini.WriteMessage(nil, nil)
	if _, _, _, err := res.ReadMessage(nil, msg); err != nil {
		t.Fatal(err) // message 1 does not depend on the PSK
	}
	msg, _, _, _ = res.WriteMessage(nil, nil)
	if _, _, _, err := ini.ReadMessage(nil, msg); err == nil {
		t.Fatal("message 2 authenticated under a different ML-KEM secret")
	}
}
