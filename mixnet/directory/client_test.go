package directory

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestClientReportsHTTPFailures(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
	}))
	defer ts.Close()
	c := &Client{BaseURL: ts.URL, Key: newDirectoryKey(t).Public().(ed25519.PublicKey)}
	_, err := c.Topology(context.Background())
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 502 || !strings.Contains(err.Error(), "bad gateway") {
		t.Fatalf("Topology = %v", err)
	}
	c.BaseURL = "http://127.0.0.1:1"
	if _, err := c.Topology(context.Background()); err == nil || !strings.Contains(err.Error(), "fetch topology") {
		t.Fatalf("unreachable directory: %v", err)
	}
}
