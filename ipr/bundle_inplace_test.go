package ipr

import (
	"errors"
	"strings"
	"testing"
)

// ResetInPlace packs a bundle behind a header into the room of a buffer the
// caller was handed, up to its capacity and never past it: the bytes land in
// that buffer's array.
func TestBundleEncoderResetInPlace(t *testing.T) {
	p := udp4(t, "10.0.0.2", "192.0.2.1", 53, strings.Repeat("a", 100-28)) // 100 bytes
	buf := make([]byte, 0, 4+2*(LengthPrefixSize+100)+10)
	var enc BundleEncoder // the zero value, made usable by ResetInPlace
	enc.ResetInPlace(append(buf, "HEAD"...))
	for i := range 2 {
		if err := enc.Add(p); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
	}
	if err := enc.Add(p); !errors.Is(err, ErrBundleFull) {
		t.Fatalf("third packet: %v, want ErrBundleFull", err)
	}
	b := enc.Bytes()
	if &b[:cap(b)][cap(b)-1] != &buf[:cap(buf)][cap(buf)-1] || string(b[:4]) != "HEAD" || len(b) != 4+2*102 {
		t.Fatalf("bundle of %d bytes not written in place behind its header", len(b))
	}
	got, bad := SplitBundle(b[4:], nil)
	if bad != 0 || len(got) != 2 {
		t.Fatalf("split: %d packets, %d malformed", len(got), bad)
	}
}
