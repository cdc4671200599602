// Package authority is the directory authority (nym-api): it takes the
// nodes' signed descriptors over HTTP, probes their liveness, assigns roles
// every epoch, and signs and serves the topology. Its state (epoch clock,
// descriptors, probe history, assignment) lives in a bbolt database beside
// its signing key in the data dir.
//
// The documents it serves, and the client that fetches them, are package
// mixnet/directory: see there for epochs, rotations and what a node does.
package authority
