package directory

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testNetworkFile = `
threshold = 2
[[authority]]
name = "auth1"
key  = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE"
url  = "http://192.0.2.10:8000"
[[authority]]
name = "auth2"
key  = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI"
url  = "http://192.0.2.11:8000"
[[authority]]
name = "auth3"
key  = "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM"
url  = "https://auth3.example/"
`

func TestParseNetwork(t *testing.T) {
	n, err := ParseNetwork([]byte(testNetworkFile))
	if err != nil {
		t.Fatal(err)
	}
	if n.Threshold != 2 || len(n.Authorities) != 3 || n.Authorities[1].Key != (Key{2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2}) || n.Majority() != 2 {
		t.Fatalf("parsed %+v", n)
	}
	// Encode round-trips, and the ID depends on keys and threshold only.
	text, err := n.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseNetwork(text)
	if err != nil {
		t.Fatalf("re-parse %s: %v", text, err)
	}
	if back.ID() != n.ID() {
		t.Fatal("ID changed through Encode")
	}
	back.Authorities[0].URL, back.Authorities[0].Name = "http://192.0.2.99:1", "renamed"
	back.Authorities[0], back.Authorities[2] = back.Authorities[2], back.Authorities[0]
	if back.ID() != n.ID() {
		t.Fatal("ID depends on names, URLs or order")
	}
	back.Threshold = 3
	if back.ID() == n.ID() {
		t.Fatal("ID ignores the threshold")
	}
	path := filepath.Join(t.TempDir(), "network.toml")
	os.WriteFile(path, text, 0o644)
	if _, err := LoadNetwork(path); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadNetwork(path + ".missing"); err == nil || !strings.Contains(err.Error(), "network file") {
		t.Fatalf("missing file: %v", err)
	}
}

func TestParseNetworkRefuses(t *testing.T) {
	for _, tc := range []struct{ name, edit, want string }{
		{"threshold too low", "threshold = 1", "more than half"},
		{"threshold too high", "threshold = 4", "more than half"},
		{"duplicate key", `key  = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI"`, "used twice"},
		{"unknown setting", "thresold = 2", "unknown setting"},
		{"bad url", `url  = "ftp://192.0.2.10:8000"`, "http(s)"},
		{"bad key", `key  = "AQEB"`, "base64url"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := testNetworkFile
			switch {
			case strings.HasPrefix(tc.edit, "threshold"):
				text = strings.Replace(text, "threshold = 2", tc.edit, 1)
			case tc.name == "unknown setting":
				text = tc.edit + "\n" + text
			case strings.HasPrefix(tc.edit, "url"):
				text = strings.Replace(text, `url  = "http://192.0.2.10:8000"`, tc.edit, 1)
			default:
				text = strings.Replace(text, `key  = "AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM"`, tc.edit, 1)
				if tc.name == "bad key" {
					text = strings.Replace(testNetworkFile, `key  = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE"`, tc.edit, 1)
				}
			}
			_, err := ParseNetwork([]byte(text))
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
	if _, err := ParseNetwork([]byte("threshold = 1\n")); err == nil {
		t.Fatal("network without authorities accepted")
	}
	if _, err := ParseNetwork(make([]byte, MaxNetworkFileSize+1)); err == nil {
		t.Fatal("oversized network file accepted")
	}
	if err := SingleAuthority("http://192.0.2.1:8000", Key{1}).Validate(); err != nil {
		t.Fatalf("SingleAuthority: %v", err)
	}
}
