// Package platform integrates nymvpn and the exit gateway with the host:
// policy routing by firewall mark through the TUN (netlink), the kill switch
// and the exit's NAT and exit policy (nftables), the resolver configuration
// (resolv.conf) and the forwarding sysctls. Linux is the first platform; elsewhere every entry
// point returns ErrUnsupported so the module still builds.
//
// Every change is written to a small state file before it is made, so that
// Restore can undo what a crashed run left behind. Restore is idempotent. A
// state file is read only if nobody but this user (root) could have written
// it, and only with records this package makes (statecheck.go).
//
// Network namespaces: each constructor binds itself to the network namespace
// of the calling OS thread (so a caller may lock a thread into a namespace,
// call the constructor, and use the result from any goroutine afterwards).
// Restore acts on the calling thread's namespace and refuses to touch a
// namespace other than the one the changes were recorded in.
package platform
