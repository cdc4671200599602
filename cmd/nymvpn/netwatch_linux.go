package main

// notUplinks are the links never taken for the uplink: the tunnel's own.
var notUplinks = []string{tunName}
