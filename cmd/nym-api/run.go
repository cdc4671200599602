package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/nym-go/nym/mixnet/authority"
	"github.com/nym-go/nym/mixnet/directory"
)

// runFlags are the flags of `nym-api run`.
type runFlags struct {
	listen         string
	dataDir        string
	epochLength    time.Duration
	rotationEpochs uint64
	probeInterval  time.Duration
	probeTimeout   time.Duration
	descriptorTTL  time.Duration
	minPerformance float64
	layerSize      int
	maxEntries     int
	maxExits       int
	admission      authority.Admission
	monitor        authority.Monitor
	logLevel       string
	logFormat      string
	network        string
	voteWindow     time.Duration
	metricsListen  string
	noTickets      bool
	tickets        authority.Tickets
}

func newRunCommand() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run --data-dir DIR [--listen ADDR]",
		Short: "Serve the directory API and turn epochs until SIGINT or SIGTERM",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:8080", "host:port for the HTTP API")
	fl.StringVar(&f.dataDir, "data-dir", "", "directory for the signing key and state (required)")
	fl.DurationVar(&f.epochLength, "epoch-length", time.Hour, "length of an epoch; fixed when the data dir is created")
	fl.Uint64Var(&f.rotationEpochs, "rotation-epochs", 24, "epochs per Sphinx key rotation; fixed when the data dir is created")
	fl.DurationVar(&f.probeInterval, "probe-interval", 0, "how often nodes' health endpoints are probed (default epoch-length/6)")
	fl.DurationVar(&f.probeTimeout, "probe-timeout", 0, "timeout of one health probe (default min(probe-interval, 5s))")
	fl.DurationVar(&f.descriptorTTL, "descriptor-ttl", 0, "a node that has not re-registered for this long loses its role (default 2×epoch-length)")
	fl.Float64Var(&f.minPerformance, "min-performance", 0.5, "lowest probe success rate (0..1] that keeps a role")
	fl.IntVar(&f.layerSize, "layer-size", authority.DefaultLimits.LayerSize, "most mix nodes per layer")
	fl.IntVar(&f.maxEntries, "max-entries", authority.DefaultLimits.MaxEntries, "most entry gateways per epoch")
	fl.IntVar(&f.maxExits, "max-exits", authority.DefaultLimits.MaxExits, "most exit gateways per epoch")
	fl.StringVar(&f.network, "network", "", "network file (TOML, see `nym-api network`) naming every authority of the network and the threshold; "+
		"this authority is the entry with its own key. Without it the directory is a single authority (k = 1)")
	fl.DurationVar(&f.voteWindow, "vote-window", 0, "with --network: how long before each epoch boundary the authorities vote and sign (default epoch-length/4)")
	fl.StringVar(&f.metricsListen, "metrics-listen", "", "host:port serving Prometheus metrics at /metrics (default: none)")
	fl.BoolVar(&f.noTickets, "no-tickets", false, "do not issue or redeem bandwidth tickets (no issuer keys are made or published)")
	fl.Float64Var(&f.tickets.ReportRate, "ticket-report-rate", 0, "spent-ticket serials one gateway may report per second on average (default 100)")
	fl.IntVar(&f.tickets.ReportBurst, "ticket-report-burst", 0, "spent-ticket serials one gateway may report at once (default 50000)")
	fl.IntVar(&f.tickets.MaxConcurrentIssues, "max-concurrent-issues", 0, "ticket issuance requests signed at once (default 2)")
	fl.StringVar(&f.admission.Mode, "admission", authority.AdmissionOpen,
		"open: any node that proves its keys and address may take a seat, within the limits below (local networks, tests); "+
			"approval: only nodes approved with \"nym-api nodes approve\" (a public network without stake runs this)")
	fl.IntVar(&f.admission.MaxSeatsPerAddress, "max-seats-per-address", 0, "most nodes of one IP address taking part in an epoch (default 2; -1 unlimited)")
	fl.IntVar(&f.admission.MaxSeatsPerPrefix, "max-seats-per-prefix", 0, "most nodes of one IPv4 /24 or IPv6 /48 taking part in an epoch (default 4; -1 unlimited, for a local network in one /24)")
	fl.Float64Var(&f.admission.RegisterRate, "register-rate", 0, "new node identities one source may register per second (default 0.1)")
	fl.IntVar(&f.admission.RegisterBurst, "register-burst", 0, "new node identities one source may register at once (default 32)")
	fl.IntVar(&f.admission.MaxPending, "max-pending", 0, "most registrations held before their first Noise handshake (default 256)")
	fl.IntVar(&f.monitor.Loops, "monitor-loops", 0, "Sphinx test loops sent through each seated node per probe round, which score it (default 3; -1 turns the monitor off)")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.StringVar(&f.logFormat, "log-format", "text", "text or json")
	return cmd
}

// config checks the flags and turns them into a authority.Config.
func (f runFlags) config(log *slog.Logger) (authority.Config, error) {
	if err := requireDataDir(f.dataDir); err != nil {
		return authority.Config{}, err
	}
	if _, _, err := net.SplitHostPort(f.listen); err != nil {
		return authority.Config{}, fmt.Errorf("--listen %q: %v (want host:port, e.g. 127.0.0.1:8080)", f.listen, err)
	}
	if f.epochLength < 50*time.Millisecond {
		return authority.Config{}, fmt.Errorf("--epoch-length %s: must be at least 50ms", f.epochLength)
	}
	if f.rotationEpochs < 1 {
		return authority.Config{}, errors.New("--rotation-epochs must be at least 1")
	}
	if f.probeInterval < 0 || f.probeTimeout < 0 || f.descriptorTTL < 0 {
		return authority.Config{}, errors.New("--probe-interval, --probe-timeout and --descriptor-ttl must not be negative")
	}
	if f.probeInterval > 0 && f.probeInterval >= f.epochLength {
		return authority.Config{}, fmt.Errorf("--probe-interval %s must be shorter than --epoch-length %s so every node is probed within an epoch", f.probeInterval, f.epochLength)
	}
	if f.minPerformance <= 0 || f.minPerformance > 1 {
		return authority.Config{}, fmt.Errorf("--min-performance %v: must be in (0, 1]", f.minPerformance)
	}
	for name, v := range map[string]int{"--layer-size": f.layerSize, "--max-entries": f.maxEntries, "--max-exits": f.maxExits} {
		if v < 1 {
			return authority.Config{}, fmt.Errorf("%s %d: must be at least 1", name, v)
		}
	}
	var network *directory.Network
	if f.network != "" {
		var err error
		if network, err = directory.LoadNetwork(f.network); err != nil {
			return authority.Config{}, err
		}
	} else if f.voteWindow != 0 {
		return authority.Config{}, errors.New("--vote-window needs --network")
	}
	if f.voteWindow < 0 || (f.voteWindow > 0 && f.voteWindow >= f.epochLength) {
		return authority.Config{}, fmt.Errorf("--vote-window %s: must be positive and shorter than --epoch-length %s", f.voteWindow, f.epochLength)
	}
	if f.metricsListen != "" {
		if _, _, err := net.SplitHostPort(f.metricsListen); err != nil {
			return authority.Config{}, fmt.Errorf("--metrics-listen %q: %v (want host:port)", f.metricsListen, err)
		}
	}
	return authority.Config{
		Network:        network,
		VoteWindow:     f.voteWindow,
		DataDir:        f.dataDir,
		EpochLength:    f.epochLength,
		RotationEpochs: f.rotationEpochs,
		ProbeInterval:  f.probeInterval,
		ProbeTimeout:   f.probeTimeout,
		DescriptorTTL:  f.descriptorTTL,
		MinPerformance: f.minPerformance,
		Limits:         authority.Limits{MaxEntries: f.maxEntries, MaxExits: f.maxExits, LayerSize: f.layerSize},
		Tickets:        authority.Tickets{Disabled: f.noTickets, ReportRate: f.tickets.ReportRate, ReportBurst: f.tickets.ReportBurst, MaxConcurrentIssues: f.tickets.MaxConcurrentIssues},
		Admission:      f.admission,
		Monitor:        f.monitor,
		Logger:         log,
	}, nil
}

// shutdownGrace bounds how long in-flight requests may finish on shutdown.
const shutdownGrace = 5 * time.Second

func run(ctx context.Context, f runFlags) error {
	log, err := newLogger(f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	cfg, err := f.config(log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	srv, err := authority.NewServer(cfg)
	if err != nil {
		return err
	}
	if f.metricsListen != "" {
		stopMetrics, err := serveMetrics(f.metricsListen, reg, log)
		if err != nil {
			srv.Close()
			return err
		}
		defer stopMetrics()
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		srv.Close()
		return fmt.Errorf("listen: %w", err)
	}
	key, _ := directory.KeyFromEd25519(srv.PublicKey())
	log.Info("listening", "addr", ln.Addr().String(), "directory_key", key.String())

	httpSrv := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		if err := srv.Run(ctx); err != nil {
			log.Error("directory loop", "err", err)
		}
	}()

	var failure error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-serveErr:
		failure = fmt.Errorf("serve: %w", err)
		stop()
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := httpSrv.Shutdown(shutdownCtx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	<-loopDone
	if failure == nil {
		if err := <-serveErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
			failure = fmt.Errorf("serve: %w", err)
		}
	}
	if err := srv.Close(); err != nil && failure == nil {
		failure = fmt.Errorf("close state: %w", err)
	}
	if failure == nil {
		log.Info("stopped")
	}
	return failure
}

// serveMetrics serves reg at http://addr/metrics until the returned func is
// called.
func serveMetrics(addr string, reg *prometheus.Registry, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String())
	return func() { srv.Close(); <-done }, nil
}
