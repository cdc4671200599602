//go:build !linux

package main

// notUplinks are the links never taken for the uplink: none yet, as
// nymvpn makes no TUN on this OS.
var notUplinks []string
