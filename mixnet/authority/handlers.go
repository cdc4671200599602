package authority

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/nym-go/nym/mixnet/directory"
	"io"
	"net/http"
	"time"
)

// handleRegister serves POST /api/v1/nodes: a node registers or refreshes its
// signed descriptor. Every failure is a 4xx with a JSON error saying what to
// fix; nothing a client sends can make it panic.
func (s *Server) handleRegister(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, directory.MaxSignedDescriptorSize))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("body exceeds %d bytes", directory.MaxSignedDescriptorSize))
			return
		}
		writeError(w, http.StatusBadRequest, fmt.Errorf("reading body: %w", err))
		return
	}
	var sd directory.SignedDescriptor
	if err := json.Unmarshal(data, &sd); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("body is not a signed descriptor: %w", err))
		return
	}
	d, err := sd.Verify()
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, directory.ErrBadSignature) {
			status = http.StatusForbidden
		}
		writeError(w, status, err)
		return
	}
	now := s.cfg.Now()
	if skew := d.IssuedAt.Sub(now).Abs(); skew > s.cfg.MaxClockSkew {
		writeError(w, http.StatusBadRequest, fmt.Errorf("descriptor issued at %s is %s away from the directory's clock (%s); the limit is %s: check the node's clock and sign a fresh descriptor",
			d.IssuedAt.Format(time.RFC3339), skew.Round(time.Second), now.UTC().Format(time.RFC3339), s.cfg.MaxClockSkew))
		return
	}

	if !s.allowRegistration(r, d.Identity) {
		writeError(w, http.StatusTooManyRequests, fmt.Errorf("too many new node registrations from %s; try again later", r.RemoteAddr))
		return
	}
	reg, status, err := s.register(d, sd, now)
	if err != nil {
		writeError(w, status, err)
		return
	}
	writeJSON(w, http.StatusOK, reg)
}

// register stores a verified descriptor and returns the answer for the node.
func (s *Server) register(d directory.Descriptor, sd directory.SignedDescriptor, now time.Time) (directory.Registration, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	existing, known := s.nodes[d.Identity]
	if known && d.IssuedAt.Before(existing.desc.IssuedAt) {
		// Refuses replays of an old descriptor, which could roll back keys.
		return directory.Registration{}, http.StatusConflict, fmt.Errorf("descriptor issued at %s is older than the one held for %s (issued at %s)",
			d.IssuedAt.Format(time.RFC3339Nano), d.Identity, existing.desc.IssuedAt.Format(time.RFC3339Nano))
	}
	if status, err := s.checkRegistrationLocked(&d, known, now); err != nil {
		return directory.Registration{}, status, err
	}
	if !known && len(s.nodes) >= s.cfg.MaxNodes {
		return directory.Registration{}, http.StatusServiceUnavailable, fmt.Errorf("directory is full (%d nodes)", s.cfg.MaxNodes)
	}
	rec := nodeRecord{Descriptor: bytes.Clone(sd.Descriptor), Signature: bytes.Clone(sd.Signature), ReceivedAt: now.UTC().Round(0)}
	if err := s.store.putNode(d.Identity, rec); err != nil {
		s.log.Error("storing descriptor", "node", d.Identity, "err", err)
		return directory.Registration{}, http.StatusInternalServerError, errors.New("could not store the descriptor")
	}
	if !known {
		existing = &nodeState{}
		s.nodes[d.Identity] = existing
		s.log.Info("node registered", "node", d.Identity, "capabilities", d.Capabilities, "http", d.HTTPAddr, "version", d.Version)
	}
	s.noteDescriptorLocked(existing, &d)
	existing.desc, existing.rec = d, rec

	// A node that holds a role and changed how it is reached (new keys, new
	// addresses) is republished at once, so clients do not wait an epoch.
	if old, ok := s.topo.NodeByIdentity(d.Identity); ok {
		if fresh := existing.topologyNode(); !fresh.EqualRouting(&old) {
			if err := s.publishLocked(now); err != nil {
				s.log.Error("republishing after descriptor change", "node", d.Identity, "err", err)
			} else {
				s.log.Info("republished topology: node changed keys or addresses", "node", d.Identity)
			}
		}
	}
	if len(existing.health.Results) > 0 {
		// A probed node that was left out for want of this rotation's
		// Sphinx key (it was slow to refresh across the boundary) may
		// fill an empty role now that it announced one.
		s.fillIncompleteLocked(now)
	} else {
		select {
		case s.probeNow <- d.Identity:
		default: // the next round will probe it
		}
	}
	return s.registrationLocked(&d), http.StatusOK, nil
}

// registrationLocked tells a node where the network is and what would keep it
// out of the next epoch.
func (s *Server) registrationLocked(d *directory.Descriptor) directory.Registration {
	epoch := s.current.Epoch
	role, layer := s.topo.RoleOf(d.Identity)
	if s.cons != nil {
		role, layer = s.cons.roleOf(d.Identity) // the consensus decides, not this authority alone
	}
	reg := directory.Registration{
		Identity:        d.Identity,
		Epoch:           epoch,
		EpochEnd:        s.clock.start(epoch + 1),
		Rotation:        epoch / s.clock.RotationEpochs,
		RotationEpochs:  s.clock.RotationEpochs,
		Role:            role,
		Layer:           layer,
		RefreshInterval: s.cfg.DescriptorTTL / 3,
	}
	if _, ok := d.SphinxKeyFor(reg.Rotation); !ok {
		reg.Warnings = append(reg.Warnings, fmt.Sprintf("no sphinx key for the current rotation %d: the node gets no role until it announces one", reg.Rotation))
	}
	reg.Warnings = append(reg.Warnings, s.admissionWarningsLocked(d.Identity)...)
	nextRotation := (epoch + 1) / s.clock.RotationEpochs
	if nextRotation != reg.Rotation {
		if _, ok := d.SphinxKeyFor(nextRotation); !ok {
			reg.Warnings = append(reg.Warnings, fmt.Sprintf("epoch %d starts rotation %d at %s: announce its sphinx key before then or lose the role",
				epoch+1, nextRotation, reg.EpochEnd.Format(time.RFC3339)))
		}
	}
	return reg
}

// handleTopology serves the current signed topology.
func (s *Server) handleTopology(w http.ResponseWriter, r *http.Request) {
	if s.cons != nil {
		s.handleConsensus(w, r) // a network's authority serves the consensus
		return
	}
	s.mu.Lock()
	body := s.signedJSON
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Write(body)
}

// handleIdentity serves the directory's public key. It is informational:
// a client must pin the key it trusts, not learn it from here.
func (s *Server) handleIdentity(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, directory.IdentityResponse{Key: s.pub})
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	resp := directory.HealthResponse{Status: "ok", Epoch: s.current.Epoch, Nodes: len(s.nodes)}
	if err := s.topo.Routable(); err != nil {
		resp.Routable = err.Error()
	}
	s.mu.Unlock()
	if s.cons != nil {
		resp.Epoch, resp.Routable = s.cons.health(s.clock.epochAt(s.cfg.Now())) // what clients get: the consensus
	}
	writeJSON(w, http.StatusOK, resp)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := jsonMarshal(v)
	if err != nil {
		http.Error(w, "encoding response failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, directory.ErrorResponse{Error: err.Error()})
}

// jsonMarshal encodes v followed by a newline, as curl users expect.
func jsonMarshal(v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(body, '\n'), nil
}
