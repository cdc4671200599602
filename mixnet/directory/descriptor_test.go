package directory

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDescriptorSignVerifyRoundTrip(t *testing.T) {
	n := newTestNode(t, autoNode)
	sd := n.signed(t, time.Now())

	// Through the wire encoding, as the directory receives it.
	wire, err := json.Marshal(sd)
	if err != nil {
		t.Fatal(err)
	}
	var got SignedDescriptor
	if err := json.Unmarshal(wire, &got); err != nil {
		t.Fatal(err)
	}
	d, err := got.Verify()
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if d.Identity != n.id() || d.NoiseKey != n.desc.NoiseKey || d.HTTPAddr != n.desc.HTTPAddr ||
		d.Capabilities != autoNode || len(d.SphinxKeys) != 2 {
		t.Fatalf("Verify returned %+v, want the signed descriptor %+v", d, n.desc)
	}
	if k, ok := d.SphinxKeyFor(1); !ok || k != n.desc.SphinxKeys[1].Key {
		t.Fatalf("SphinxKeyFor(1) = %v, %v", k, ok)
	}
	// Every key field uses the Key text form on the wire.
	if !bytes.Contains(sd.Descriptor, []byte(`"identity":"`+n.id().String()+`"`)) {
		t.Fatalf("descriptor JSON does not carry the identity in Key text form: %s", sd.Descriptor)
	}
}

// TestDescriptorTamperingRejected changes signed bytes after signing: every
// change must fail the signature check.
func TestDescriptorTamperingRejected(t *testing.T) {
	n := newTestNode(t, autoNode)
	sd := n.signed(t, time.Now())
	replace := func(old, new string) func(*SignedDescriptor) {
		return func(s *SignedDescriptor) {
			if !bytes.Contains(s.Descriptor, []byte(old)) {
				t.Fatalf("descriptor has no %q", old)
			}
			s.Descriptor = bytes.Replace(s.Descriptor, []byte(old), []byte(new), 1)
		}
	}
	other := newTestNode(t, mixOnly)
	for name, tamper := range map[string]func(*SignedDescriptor){
		"http address":                        replace(n.desc.HTTPAddr, "127.0.0.1:1"),
		"mixnet address":                      replace(`"mixnet_addr":"127.0.0.1:1789"`, `"mixnet_addr":"127.0.0.1:1788"`),
		"noise key":                           replace(n.desc.NoiseKey.String(), newKey(t).String()),
		"sphinx key":                          replace(n.desc.SphinxKeys[0].Key.String(), newKey(t).String()),
		"capability":                          replace(`"exit":true`, `"exit":false`),
		"version":                             replace("test-1.0", "test-2.0"),
		"whitespace":                          func(s *SignedDescriptor) { s.Descriptor = append([]byte(" "), s.Descriptor...) },
		"signature bit":                       func(s *SignedDescriptor) { s.Signature[5] ^= 1 },
		"identity swapped for another node's": replace(n.id().String(), other.id().String()),
		"signed by another key": func(s *SignedDescriptor) {
			s.Signature = ed25519.Sign(other.priv, signedMessage(descriptorDomain, s.Descriptor))
		},
		"signed without domain prefix": func(s *SignedDescriptor) {
			s.Signature = ed25519.Sign(n.priv, s.Descriptor)
		},
		"signed as a topology": func(s *SignedDescriptor) {
			s.Signature = ed25519.Sign(n.priv, signedMessage(topologyDomain, s.Descriptor))
		},
	} {
		t.Run(name, func(t *testing.T) {
			c := SignedDescriptor{Descriptor: bytes.Clone(sd.Descriptor), Signature: bytes.Clone(sd.Signature)}
			tamper(&c)
			_, err := c.Verify()
			if !errors.Is(err, ErrBadSignature) {
				t.Fatalf("Verify = %v, want ErrBadSignature", err)
			}
		})
	}
}

// TestDescriptorInsaneFieldsRejected signs descriptors with bad fields
// correctly: Verify must still refuse them, and so must SignDescriptor.
func TestDescriptorInsaneFieldsRejected(t *testing.T) {
	n := newTestNode(t, exitGW)
	for name, c := range map[string]struct {
		mutate func(*Descriptor)
		want   string
	}{
		"zero identity":                   {func(d *Descriptor) { d.Identity = Key{} }, "identity"},
		"zero noise key":                  {func(d *Descriptor) { d.NoiseKey = Key{} }, "noise key"},
		"no sphinx key":                   {func(d *Descriptor) { d.SphinxKeys = nil }, "no sphinx key"},
		"zero sphinx key":                 {func(d *Descriptor) { d.SphinxKeys[0].Key = Key{} }, "zero"},
		"three sphinx keys":               {func(d *Descriptor) { d.SphinxKeys = append(d.SphinxKeys, SphinxKey{2, newKey(t)}) }, "3 sphinx keys"},
		"rotations not consecutive":       {func(d *Descriptor) { d.SphinxKeys[1].Rotation = 5 }, "not consecutive"},
		"rotations backwards":             {func(d *Descriptor) { d.SphinxKeys[0].Rotation, d.SphinxKeys[1].Rotation = 1, 0 }, "not consecutive"},
		"no capability":                   {func(d *Descriptor) { d.Capabilities = Capabilities{} }, "capability"},
		"no mixnet address":               {func(d *Descriptor) { d.MixnetAddr = "" }, "mixnet address"},
		"mixnet address no port":          {func(d *Descriptor) { d.MixnetAddr = "127.0.0.1" }, "mixnet address"},
		"port zero":                       {func(d *Descriptor) { d.MixnetAddr = "127.0.0.1:0" }, "port"},
		"port too big":                    {func(d *Descriptor) { d.MixnetAddr = "127.0.0.1:65536" }, "port"},
		"unspecified address":             {func(d *Descriptor) { d.HTTPAddr = "0.0.0.0:8080" }, "unspecified"},
		"unspecified v6":                  {func(d *Descriptor) { d.HTTPAddr = "[::]:8080" }, "unspecified"},
		"bad host":                        {func(d *Descriptor) { d.HTTPAddr = "exa mple.com:80" }, "neither"},
		"gateway without clients address": {func(d *Descriptor) { d.ClientsAddr = "" }, "clients address"},
		"long version":                    {func(d *Descriptor) { d.Version = strings.Repeat("v", 65) }, "version"},
		"control char version":            {func(d *Descriptor) { d.Version = "1.0\n" }, "non-printable"},
		"no issued_at":                    {func(d *Descriptor) { d.IssuedAt = time.Time{} }, "issued_at"},
		"wireguard address by name":       {func(d *Descriptor) { d.WGAddr = "exit.example:51820" }, "not a name"},
		"wireguard address port zero":     {func(d *Descriptor) { d.WGAddr = "192.0.2.1:0" }, "port"},
		"wireguard address unspecified":   {func(d *Descriptor) { d.WGAddr = "0.0.0.0:51820" }, "unspecified"},
		"wireguard address on a mixnode": {func(d *Descriptor) {
			d.WGAddr, d.ClientsAddr, d.Capabilities = "192.0.2.1:51820", "", Capabilities{Mixnode: true}
		}, "no gateway"},
	} {
		t.Run(name, func(t *testing.T) {
			d := n.desc
			d.SphinxKeys = append([]SphinxKey(nil), d.SphinxKeys...)
			c.mutate(&d)
			if _, err := SignDescriptor(n.priv, d); err == nil && d.Identity == n.id() {
				t.Fatal("SignDescriptor signed an insane descriptor")
			}
			// Sign by hand so Verify sees a valid signature over bad fields.
			raw, _ := json.Marshal(d)
			sd := SignedDescriptor{Descriptor: raw, Signature: ed25519.Sign(n.priv, signedMessage(descriptorDomain, raw))}
			_, err := sd.Verify()
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Verify = %v, want ErrInvalid mentioning %q", err, c.want)
			}
		})
	}
}

func TestDescriptorMalformedEnvelopeRejected(t *testing.T) {
	n := newTestNode(t, mixOnly)
	sd := n.signed(t, time.Now())
	for name, c := range map[string]SignedDescriptor{
		"empty":             {},
		"no signature":      {Descriptor: sd.Descriptor},
		"short signature":   {Descriptor: sd.Descriptor, Signature: sd.Signature[:63]},
		"long signature":    {Descriptor: sd.Descriptor, Signature: append(bytes.Clone(sd.Signature), 0)},
		"not an object":     {Descriptor: json.RawMessage(`[1,2,3]`), Signature: sd.Signature},
		"trailing garbage":  {Descriptor: append(bytes.Clone(sd.Descriptor), []byte(`{}`)...), Signature: sd.Signature},
		"oversized":         {Descriptor: json.RawMessage(`{"version":"` + strings.Repeat("a", MaxDescriptorSize) + `"}`), Signature: sd.Signature},
		"key of wrong size": {Descriptor: json.RawMessage(`{"identity":"AAAA"}`), Signature: sd.Signature},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := c.Verify(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestSignDescriptorNeedsTheIdentitysKey(t *testing.T) {
	n := newTestNode(t, mixOnly)
	_, otherPriv, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := SignDescriptor(otherPriv, n.desc); err == nil {
		t.Fatal("signed a descriptor with a key that is not its identity's")
	}
}

// An exit's IP router key reaches clients through the signed topology.
func TestRouterKeyTravels(t *testing.T) {
	n := newTestNode(t, Capabilities{Entry: true, Exit: true})
	rk := Key{7}
	n.desc.RouterKey = &rk
	got, err := n.signed(t, time.Now()).Verify()
	if err != nil {
		t.Fatal(err)
	}
	if got.RouterKey == nil || *got.RouterKey != rk {
		t.Fatalf("router key %v, want %v", got.RouterKey, rk)
	}
}

func TestWGAddrTravels(t *testing.T) {
	n := newTestNode(t, Capabilities{Entry: true, Exit: true})
	n.desc.WGAddr = "[2001:db8::1]:51820"
	got, err := n.signed(t, time.Now()).Verify()
	if err != nil {
		t.Fatal(err)
	}
	node := got.Node(1)
	if ap, ok := node.WGAddrPort(); !ok || ap.String() != "[2001:db8::1]:51820" {
		t.Fatalf("wg address %v %v", ap, ok)
	}
	other := node
	other.WGAddr = "192.0.2.7:51820"
	if node.EqualRouting(&other) {
		t.Fatal("nodes with different wireguard addresses route alike")
	}
}
