package authority

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/nym-go/nym/mixnet/directory"
)

// makeVote signs this authority's vote for epoch: every node it judges fit
// for a role in epoch, as it registered, with the performance measured.
func (s *Server) makeVote(epoch uint64) (directory.SignedVote, *directory.Vote, []directory.Descriptor, error) {
	s.mu.Lock()
	now := s.cfg.Now()
	eligible, _ := s.eligibleLocked(epoch, now)
	v := &directory.Vote{Epoch: epoch, IssuedAt: now.UTC().Round(0), Params: s.paramsFor(epoch), Nodes: []directory.VoteNode{},
		Issuers: s.issuerKeysAt(s.clock.start(epoch)), Monitors: s.monitorKeys()}
	var descs []directory.Descriptor
	for _, c := range eligible {
		n := s.nodes[c.id]
		v.Nodes = append(v.Nodes, directory.VoteNode{Descriptor: n.rec.signed(), Performance: c.score})
		descs = append(descs, n.desc)
	}
	s.mu.Unlock()
	if s.cons.tamperVote != nil {
		descs = s.cons.tamperVote(v, descs)
	}
	sv, err := directory.SignVote(s.priv, v)
	if err != nil {
		return directory.SignedVote{}, nil, nil, fmt.Errorf("vote for epoch %d: %w", epoch, err)
	}
	return sv, v, descs, nil
}

// handleVotes serves GET /api/v1/votes?epoch=N: this authority's signed
// vote for epoch N, which it makes in the vote window before N starts; with
// &authority=KEY, the vote of that authority it received, so votes reach
// authorities that cannot reach their authors.
func (s *Server) handleVotes(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	epoch, err := strconv.ParseUint(q.Get("epoch"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("want ?epoch=N: %v", err))
		return
	}
	cs := s.cons
	of := cs.self.Key
	if k := q.Get("authority"); k != "" {
		if of, err = directory.ParseKey(k); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("authority: %v", err))
			return
		}
	}
	cs.mu.Lock()
	vv, ok := cs.votes[epoch][of]
	cs.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("no vote of %s for epoch %d here: votes are made in the %s before an epoch starts", of, epoch, cs.window))
		return
	}
	writeJSON(w, http.StatusOK, vv.signed)
}
