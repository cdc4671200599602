package client

import (
	"errors"
	"strings"
	"testing"
)

func testAddress() Address {
	var a Address
	for i := range a.Identity {
		a.Identity[i] = byte(i)
		a.Gateway[i] = byte(255 - i)
	}
	return a
}

func TestAddressRoundTrip(t *testing.T) {
	a := testAddress()
	s := a.String()
	if len(s) != 2*43+1 {
		t.Fatalf("address text %q has %d characters, want 87", s, len(s))
	}
	got, err := ParseAddress(s)
	if err != nil {
		t.Fatal(err)
	}
	if got != a {
		t.Fatalf("round trip changed the address: %v != %v", got, a)
	}
	var b Address
	if err := b.UnmarshalText([]byte(s)); err != nil || b != a {
		t.Fatalf("UnmarshalText: %v, %v", b, err)
	}
}

func TestParseAddressErrors(t *testing.T) {
	good := testAddress().String()
	ident, gw, _ := strings.Cut(good, ".")
	for _, tc := range []struct{ in, want string }{
		{"", "no '.'"},
		{ident, "no '.'"},
		{ident + "." + gw[:42], "gateway part has 42 characters"},
		{ident[:40] + "." + gw, "identity part has 40 characters"},
		{ident[:42] + "!" + "." + gw, "identity part is not base64url"},
		{ident + "." + gw[:42] + "B", "gateway part is not in canonical"}, // last char carries unused bits
		{ident + "." + gw + ".x", "gateway part has"},
	} {
		_, err := ParseAddress(tc.in)
		if err == nil {
			t.Errorf("ParseAddress(%q) succeeded", tc.in)
			continue
		}
		if !errors.Is(err, ErrBadAddress) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseAddress(%q) = %v, want an ErrBadAddress saying %q", tc.in, err, tc.want)
		}
	}
}

func FuzzAddress(f *testing.F) {
	f.Add(testAddress().String())
	f.Add("")
	f.Add(".")
	f.Add(strings.Repeat("A", 43) + "." + strings.Repeat("_", 43))
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddress(s)
		if err != nil {
			return
		}
		// Only the canonical form parses, so printing gives back the input.
		if a.String() != s {
			t.Fatalf("ParseAddress(%q) printed as %q", s, a.String())
		}
	})
}
