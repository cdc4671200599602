package authority

import "github.com/nym-go/nym/mixnet/directory"

// monitorKeys is this authority's loop monitor key to publish: the link
// key its test loops reach gateways with, so that gateways requiring
// tickets let them in for nothing (the loops measure the network; they
// buy no bandwidth). None with the monitor off.
func (s *Server) monitorKeys() []directory.MonitorKey {
	if s.cfg.Monitor.Loops < 0 {
		return nil
	}
	return []directory.MonitorKey{{Authority: s.pub, Link: directory.Key(s.adm.key.Public)}}
}
