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
	v := &directory.Vote{Epoch: epoch, IssuedAt: now.UTC().Round(0), Params: s.paramsFor(epoch), Nodes: []directory.VoteNode{}}
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
// vote for epoch N, which it makes in the vote window before N starts.
func (s *Server) handleVotes(w http.ResponseWriter, r *http.Request) {
	epoch, err := strconv.ParseUint(r.URL.Query().Get("epoch"), 10, 64)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("want ?epoch=N: %v", err))
		return
	}
	cs := s.cons
	cs.mu.Lock()
	body := cs.ownVotes[epoch]
	cs.mu.Unlock()
	if body == nil {
		writeError(w, http.StatusNotFound, fmt.Errorf("no vote for epoch %d: votes are made in the %s before an epoch starts", epoch, cs.window))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}
