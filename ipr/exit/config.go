package exit

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/nym-go/nym/anonymity"
	"github.com/nym-go/nym/ipr/router"
	"github.com/nym-go/nym/mixnet/client"
	"github.com/nym-go/nym/mixnet/directory"
	"github.com/nym-go/nym/mixnet/link"
	"github.com/nym-go/nym/platform"
	"github.com/nym-go/nym/tun"
)

// Defaults for zero Config fields.
const (
	DefaultTUNName        = "nymtun0"
	IdentityFileName      = "router.key"
	StateFileName         = "exit-network.state"
	DefaultControlTimeout = time.Second
)

// ServiceLoopix is the traffic shaping of the router's own mixnet client:
// Nym's per-hop delay, but no Poisson send stream and no cover streams.
//
// Why: almost everything the router sends is a reply through a SURB that a
// VPN client made and paid for with its own upstream Poisson slots; those
// clients' streams (and their cover) are what hides the traffic pattern.
// A Poisson stream here would cap every client of the exit together at one
// client's rate (Nym's 50 packets/s), and cover from a well-known service
// hides nothing about which client is talking.
func ServiceLoopix() client.Loopix {
	return client.Loopix{HopDelay: client.NymDefaults().HopDelay}
}

// Config configures a Service. Zero fields take the documented defaults.
type Config struct {
	// DataDir is the node's data directory: router.key and the networking
	// state file live there. Required unless IdentityFile, Identity and
	// StatePath are all given.
	DataDir string
	// Identity overrides the key in IdentityFile (default DataDir/router.key).
	Identity     *link.KeyPair
	IdentityFile string

	// Network is the network file of the directory authorities (the
	// node's); DirectoryURL and DirectoryKey name one directory instead, the
	// shorthand for a network of one. One or the other is required.
	Network      *directory.Network
	DirectoryURL string
	DirectoryKey ed25519.PublicKey
	// Gateway is this node's identity: the router connects to its own
	// gateway. Required.
	Gateway directory.Key
	// Loopix is the router client's shaping; nil means ServiceLoopix().
	Loopix *client.Loopix
	// SURBs is the router client's SURB policy.
	SURBs client.SURBPolicy
	// DialContext and HTTPClient, when set, are handed to the mixnet client.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	HTTPClient  *http.Client

	// Device, when set, is the exit's TUN: the service uses it as it is
	// (its MTU should be the router's, ipr.MaxIPPacket of the client's
	// ReplyCapacity: the router answers larger packets with ICMP "too
	// big") and closes it when Run returns. Nil: Run creates the kernel
	// TUN TUNName.
	Device tun.Device
	// Host is the exit's networking on its host around the TUN; nil means
	// the host's own: the TUN's addresses, forwarding, NAT and the
	// nftables policy, which need CAP_NET_ADMIN (StatePath records them).
	Host Host
	// TUNName is the exit TUN's name; default nymtun0.
	TUNName string
	// Uplink is the interface toward the internet: clients' traffic is
	// masqueraded out of it and no other interface, and the host forwards
	// nothing else while the router runs. Empty means the interface of the
	// exit namespace's IPv4 default route.
	Uplink string
	// StatePath records the host changes for platform.Restore; default
	// DataDir/exit-network.state.
	StatePath string
	// Policy is the operator's exit policy; nil accepts what the built-in
	// rejections let through.
	Policy *platform.ExitPolicy
	// AllowPrivate lets clients reach these private ranges (tests only).
	AllowPrivate []netip.Prefix
	// ExtraTUNs and ExtraClientPrefixes are another door's clients under
	// the same exit networking: the node's WireGuard TUN (package wggate)
	// and its ranges. The TUNs must exist before the router starts.
	ExtraTUNs           []string
	ExtraClientPrefixes []netip.Prefix
	// InNetNS, when set, runs fn on an OS thread of the network namespace
	// the exit's TUN and nftables belong in (tests put the exit in its own
	// namespace). Nil runs fn in the calling namespace.
	InNetNS func(fn func() error) error

	// Router holds the router.Router settings beyond the ones the service
	// sets itself (PayloadCapacity, TUN, Reply, CanReply, OpenStream,
	// Policy, Released). The limits that keep one client from the others are
	// there, zero meaning the default: MaxSenderRequests (1024 requests
	// waiting per sender tag) and MaxPendingRequests (16384 in all),
	// MaxAddrsPerSender (4 addresses per sender tag, live or in
	// quarantine) and AddrQuarantine (2 min before a released address is
	// handed to another client; its conntrack entries are flushed at
	// release).
	Router router.Config

	// ControlTimeout bounds how long a control reply (ConnectOK, Pong,
	// ...) waits for the sender's SURBs: the router calls it from the
	// sender's request worker. Default 1 s. Downstream data waits for no
	// SURB outside the router's queue: the client pulls it when it holds
	// one.
	ControlTimeout time.Duration

	// Trace, if set, records the exit's internet side, packet by packet,
	// into an anonymity trace (the node's trace_file): for measurement
	// only. The exit is named there by its router's identity, as its
	// gateway names the router's client.
	Trace *anonymity.Recorder

	Logger *slog.Logger
}

// withDefaults returns c with its zero fields filled in, or an error for
// missing required ones.
func (c Config) withDefaults() (Config, error) {
	if c.Network == nil && (c.DirectoryURL == "" || len(c.DirectoryKey) != ed25519.PublicKeySize) {
		return c, errors.New("exit: a network file or a directory URL and key are required")
	}
	if c.Gateway.IsZero() {
		return c, errors.New("exit: the node's gateway identity is required")
	}
	if c.DataDir == "" && (c.Identity == nil && c.IdentityFile == "" || c.Host == nil && c.StatePath == "") {
		return c, errors.New("exit: data directory is required")
	}
	if c.IdentityFile == "" && c.DataDir != "" {
		c.IdentityFile = filepath.Join(c.DataDir, IdentityFileName)
	}
	if c.StatePath == "" && c.DataDir != "" {
		c.StatePath = filepath.Join(c.DataDir, StateFileName)
	}
	if c.TUNName == "" {
		c.TUNName = DefaultTUNName
	}
	if c.Loopix == nil {
		l := ServiceLoopix()
		c.Loopix = &l
	}
	if c.ControlTimeout <= 0 {
		c.ControlTimeout = DefaultControlTimeout
	}
	if c.InNetNS == nil {
		c.InNetNS = func(fn func() error) error { return fn() }
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// LoadOrCreateIdentity loads the router's identity from dataDir/router.key,
// creating it (mode 0600) on first use. Its public key is what the node
// announces as its RouterKey.
func LoadOrCreateIdentity(dataDir string) (link.KeyPair, error) {
	kp, err := client.LoadOrCreateIdentity(filepath.Join(dataDir, IdentityFileName))
	if err != nil {
		return kp, fmt.Errorf("exit: router identity: %w", err)
	}
	return kp, nil
}
