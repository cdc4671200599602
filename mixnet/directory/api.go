package directory

import (
	"fmt"
	"time"
)

// HTTP paths served by the directory.
const (
	PathNodes    = "/api/v1/nodes"
	PathTopology = "/api/v1/topology"
	PathIdentity = "/api/v1/identity"
	// PathVotes serves an authority's signed vote: GET ?epoch=N; with
	// &authority=KEY, the vote of that authority it received.
	PathVotes = "/api/v1/votes"
	// PathConsensus serves the consensus with every signature the authority
	// gathered: the current epoch's, or with ?epoch=N that epoch's.
	PathConsensus = "/api/v1/consensus"
	// PathHealth is served by every node and by the authority; the authority
	// probes the nodes' to judge their liveness.
	PathHealth = "/api/v1/health"

	// Bandwidth tickets (package mixnet/ticket), served by every authority.
	// PathTicketIssue: POST an issuance request (a voucher and blinded
	// messages), get the blind signatures.
	PathTicketIssue = "/api/v1/tickets/issue"
	// PathTicketReport: POST a gateway's signed report of the serials it
	// accepted.
	PathTicketReport = "/api/v1/tickets/report"
	// PathTicketSpent: GET ?since=N, the serials reported spent after
	// cursor N.
	PathTicketSpent = "/api/v1/tickets/spent"
)

// Registration is the directory's answer to a registration: where the
// network is in time, what the node should do next, and what is wrong with
// its descriptor if anything keeps it out of the topology.
type Registration struct {
	Identity       Key       `json:"identity"`
	Epoch          uint64    `json:"epoch"`
	EpochEnd       time.Time `json:"epoch_end"`
	Rotation       uint64    `json:"rotation"`
	RotationEpochs uint64    `json:"rotation_epochs"`
	// Role and Layer are the node's role in the current epoch's topology.
	Role  Role `json:"role"`
	Layer int  `json:"layer,omitempty"`
	// RefreshInterval is how often the node should re-register; a node that
	// has not refreshed within three intervals loses its role.
	RefreshInterval time.Duration `json:"refresh_interval_ns"`
	// Warnings explain what will keep the node out of the next topology.
	Warnings []string `json:"warnings,omitempty"`
}

// IdentityResponse is the body of GET /api/v1/identity.
type IdentityResponse struct {
	Key Key `json:"key"`
}

// HealthResponse is the body of GET /api/v1/health.
type HealthResponse struct {
	Status string `json:"status"`
	Epoch  uint64 `json:"epoch"`
	Nodes  int    `json:"nodes"`
	// Routable is empty when the current topology has every role filled, and
	// otherwise says what is missing.
	Routable string `json:"routable,omitempty"`
}

// ErrorResponse is the body of every error the directory returns.
type ErrorResponse struct {
	Error string `json:"error"`
}

// MarshalText implements encoding.TextMarshaler.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Role) UnmarshalText(text []byte) error {
	for _, c := range []Role{RoleNone, RoleEntry, RoleExit, RoleMix, RoleStandby} {
		if c.String() == string(text) {
			*r = c
			return nil
		}
	}
	return fmt.Errorf("unknown role %q", truncate(string(text), 20))
}
