package directory

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestKeyTextRoundTrip(t *testing.T) {
	k := newKey(t)
	text, err := k.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	if len(text) != 43 || strings.ContainsAny(string(text), "+/=") {
		t.Fatalf("text form %q is not 43 unpadded base64url characters", text)
	}
	got, err := ParseKey(string(text))
	if err != nil || got != k {
		t.Fatalf("ParseKey(%q) = %v, %v; want %v", text, got, err, k)
	}
	// Keys inside JSON use the same form.
	js, _ := json.Marshal(struct{ K Key }{k})
	if want := `{"K":"` + string(text) + `"}`; string(js) != want {
		t.Fatalf("JSON %s, want %s", js, want)
	}
}

func TestKeyRejectsMalformedText(t *testing.T) {
	good := newKey(t).String()
	for name, text := range map[string]string{
		"empty":           "",
		"short":           good[:42],
		"long":            good + "A",
		"padded":          good + "=",
		"std alphabet":    strings.Repeat("+", 43),
		"non-canonical":   good[:42] + "B", // "B" sets one of the 2 spare low bits
		"json number":     "12345",
		"whitespace":      " " + good[1:],
		"huge":            strings.Repeat("A", 10000),
		"invalid unicode": strings.Repeat("\xff", 43),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseKey(text); err == nil {
				t.Fatalf("ParseKey(%q) accepted", truncate(text, 60))
			}
		})
	}
}
