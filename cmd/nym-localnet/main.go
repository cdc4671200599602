// Command nym-localnet holds the Go side of the local network that
// localnet/localnet.sh builds out of network namespaces: the servers of the
// pretend internet behind the exit gateway.
//
//	nym-localnet inet --http :80 --dns :53 --name internet.test=198.51.100.2
//	nym-localnet sha256     # the SHA-256 of what /1MiB serves
//
// The namespaces, veths and the mixnet processes are the script's business;
// this program only answers HTTP and DNS inside the "internet" namespace.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "inet":
		if err := runInet(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "nym-localnet inet:", err)
			os.Exit(1)
		}
	case "sha256":
		fmt.Println(blobSHA256())
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: nym-localnet inet [--http ADDR] [--dns ADDR] [--name NAME=IP ...]\n       nym-localnet sha256")
	os.Exit(2)
}

// blobSize is the size of the file served at /1MiB.
const blobSize = 1 << 20

// blob returns the 1 MiB served at /1MiB: SHA-256 in counter mode, so the
// content is fixed (its hash can be checked after a trip through the VPN)
// yet does not compress, unlike a run of zeros.
func blob() []byte {
	out := make([]byte, 0, blobSize)
	var ctr [8]byte
	for i := uint64(0); len(out) < blobSize; i++ {
		binary.BigEndian.PutUint64(ctr[:], i)
		h := sha256.Sum256(append([]byte("nym-localnet"), ctr[:]...))
		out = append(out, h[:]...)
	}
	return out[:blobSize]
}

func blobSHA256() string {
	h := sha256.Sum256(blob())
	return hex.EncodeToString(h[:])
}

// The page at /page: 20 objects of 25 KiB, 500 KiB in all besides the HTML.
const (
	pageObjects    = 20
	pageObjectSize = 25 << 10
)

func pageHTML() string {
	var b strings.Builder
	b.WriteString("<!doctype html>\n<html><head><title>nym-localnet page</title></head><body>\n")
	for i := range pageObjects {
		fmt.Fprintf(&b, "<img src=\"/obj/%d\">\n", i)
	}
	b.WriteString("</body></html>\n")
	return b.String()
}

// names maps a lower-case fully qualified name ("internet.test.") to its
// addresses; repeated --name flags add addresses.
type names map[string][]netip.Addr

func (n names) String() string { return fmt.Sprint(map[string][]netip.Addr(n)) }

func (n names) Set(v string) error {
	name, ip, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("%q: want NAME=IP", v)
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return err
	}
	key := strings.ToLower(strings.TrimSuffix(name, ".")) + "."
	n[key] = append(n[key], addr.Unmap())
	return nil
}

func runInet(args []string) error {
	fs := flag.NewFlagSet("inet", flag.ContinueOnError)
	httpAddr := fs.String("http", ":80", "address of the HTTP server (empty: none)")
	dnsAddr := fs.String("dns", ":53", "UDP and TCP address of the DNS server (empty: none)")
	zone := names{}
	fs.Var(zone, "name", "NAME=IP the DNS server answers (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 3)

	if *httpAddr != "" {
		ln, err := net.Listen("tcp", *httpAddr)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: newHTTPHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- srv.Serve(ln) }()
		defer srv.Close()
		log.Printf("http on %s (/1MiB sha256 %s)", ln.Addr(), blobSHA256())
	}
	if *dnsAddr != "" {
		pc, err := net.ListenPacket("udp", *dnsAddr)
		if err != nil {
			return err
		}
		defer pc.Close()
		ln, err := net.Listen("tcp", *dnsAddr)
		if err != nil {
			return err
		}
		defer ln.Close()
		go func() { errc <- serveDNSUDP(pc, zone) }()
		go func() { errc <- serveDNSTCP(ln, zone) }()
		log.Printf("dns on %s answering %v", pc.LocalAddr(), zone)
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}

func newHTTPHandler() http.Handler {
	data := blob()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		// The demo reads this line to show the request arrived from the
		// exit's address, not the client's.
		fmt.Fprintf(w, "hello from the internet; you are %s\n", r.RemoteAddr)
	})
	mux.HandleFunc("GET /1MiB", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "1MiB", time.Time{}, bytes.NewReader(data))
	})
	// A page as a browser loads it (localnet/bench.sh): /page is HTML that
	// references pageObjects objects /obj/0.. of pageObjectSize bytes each.
	mux.HandleFunc("GET /page", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, pageHTML())
	})
	mux.HandleFunc("GET /obj/{n}", func(w http.ResponseWriter, r *http.Request) {
		var i int
		if _, err := fmt.Sscan(r.PathValue("n"), &i); err != nil || i < 0 || i >= pageObjects {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		off := i * pageObjectSize % (blobSize - pageObjectSize)
		http.ServeContent(w, r, "obj", time.Time{}, bytes.NewReader(data[off:off+pageObjectSize]))
	})
	return mux
}

// answer builds the response to one DNS query. It serves A and AAAA for the
// configured names, an empty answer for other types of a known name, and
// NXDOMAIN for everything else: this is the only resolver the pretend
// internet has, so there is nothing to recurse to.
func answer(query []byte, zone names) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, err
	}
	q, err := p.Question()
	if err != nil {
		return nil, err
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	addrs, known := zone[strings.ToLower(q.Name.String())]
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), rh)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(q); err != nil {
		return nil, err
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	res := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
	for _, a := range addrs {
		switch {
		case q.Type == dnsmessage.TypeA && a.Is4():
			res.Type = dnsmessage.TypeA
			err = b.AResource(res, dnsmessage.AResource{A: a.As4()})
		case q.Type == dnsmessage.TypeAAAA && a.Is6():
			res.Type = dnsmessage.TypeAAAA
			err = b.AAAAResource(res, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
		if err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

func serveDNSUDP(pc net.PacketConn, zone names) error {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		resp, err := answer(buf[:n], zone)
		if err != nil {
			continue // not a query we can parse: drop it, as resolvers do
		}
		pc.WriteTo(resp, from)
	}
}

// serveDNSTCP serves DNS over TCP (two-byte length prefix), which resolvers
// fall back to and some VPN DNS paths use.
func serveDNSTCP(ln net.Listener, zone names) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go func() {
			defer c.Close()
			for {
				c.SetDeadline(time.Now().Add(30 * time.Second))
				var l [2]byte
				if _, err := io.ReadFull(c, l[:]); err != nil {
					return
				}
				q := make([]byte, binary.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				resp, err := answer(q, zone)
				if err != nil {
					return
				}
				out := binary.BigEndian.AppendUint16(nil, uint16(len(resp)))
				if _, err := c.Write(append(out, resp...)); err != nil {
					return
				}
			}
		}()
	}
}
