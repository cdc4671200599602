package node

import (
	"strings"
	"testing"
	"time"
)

// The ticket settings are refused at start, by name, when they cannot work.
func TestTicketSettingsValidated(t *testing.T) {
	base := DefaultConfig()
	base.DataDir, base.Mode = t.TempDir(), ModeEntryGateway
	base.DirectoryURL, base.DirectoryKey = "http://192.0.2.1:8000", "key"
	for name, c := range map[string]struct {
		edit func(*Config)
		want string
	}{
		"negative grace":    {func(c *Config) { c.TicketGrace.Duration = -time.Second }, "ticket_grace"},
		"negative interval": {func(c *Config) { c.TicketReportInterval.Duration = -time.Second }, "ticket_report_interval"},
		"interval too long": {func(c *Config) { c.TicketReportInterval.Duration = 2 * time.Minute }, "ticket_report_interval"},
		"negative quota":    {func(c *Config) { c.TicketQuotaBytes = -1 }, "ticket_quota_bytes"},
	} {
		cfg := base
		c.edit(&cfg)
		if err := cfg.validateGateway(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %s", name, err, c.want)
		}
	}
	ok := base
	ok.RequireTickets, ok.TicketGrace.Duration, ok.TicketReportInterval.Duration, ok.TicketQuotaBytes = true, time.Second, time.Minute, 1<<20
	if err := ok.validateGateway(); err != nil {
		t.Fatal(err)
	}
}
