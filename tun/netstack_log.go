package tun

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	glog "gvisor.dev/gvisor/pkg/log"
)

// gVisor logs through one process-wide *log.BasicLogger that writes
// glog-style lines to stderr. Its packages capture that pointer in their
// own package variables at init (the rate-limited "martian packet dropped"
// logger, for one), so log.SetTarget, which installs a new logger, would
// not reach them; the emitter of the original logger has to be replaced.
// That is a plain field write, safe only before any stack runs, hence init.
func init() {
	glog.Log().Emitter = slogEmitter{}
}

// slogEmitter hands gVisor's log lines to slog.Default. Info lines are
// noise for a VPN user and go out at Debug; Warnings stay Warnings.
type slogEmitter struct{}

func (slogEmitter) Emit(_ int, level glog.Level, _ time.Time, format string, v ...any) {
	lvl := slog.LevelDebug
	if level == glog.Warning {
		lvl = slog.LevelWarn
	}
	l := slog.Default()
	if !l.Enabled(context.Background(), lvl) {
		return
	}
	l.Log(context.Background(), lvl, fmt.Sprintf(format, v...), "component", "gvisor")
}
