package codel

import (
	"encoding/binary"
	"hash/maphash"
)

// flowSeed keys IPFlow, so that nobody outside the process can pick
// packets that land in the flow queue of someone else's flow.
var flowSeed = maphash.MakeSeed()

// IPFlow hashes an IP packet's flow: protocol, addresses and, for TCP, UDP
// and SCTP packets that are not later fragments, ports. Anything that does
// not parse as IPv4 or IPv6 hashes to flow 0. IPv6 extension headers are
// not walked: such packets are a flow per address pair and next header.
func IPFlow(pkt []byte) uint64 {
	var key [1 + 16 + 16 + 4]byte
	var n int
	var transport []byte
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4:
		ihl := int(pkt[0]&0x0f) * 4
		key[0] = pkt[9]
		n = 1 + copy(key[1:], pkt[12:20])
		fragOffset := binary.BigEndian.Uint16(pkt[6:8]) & 0x1fff
		if ihl >= 20 && fragOffset == 0 && len(pkt) >= ihl {
			transport = pkt[ihl:]
		}
	case len(pkt) >= 40 && pkt[0]>>4 == 6:
		key[0] = pkt[6]
		n = 1 + copy(key[1:], pkt[8:40])
		transport = pkt[40:]
	default:
		return 0
	}
	switch key[0] {
	case 6, 17, 132: // TCP, UDP, SCTP: the ports come first
		if len(transport) >= 4 {
			n += copy(key[n:], transport[:4])
		}
	}
	return maphash.Bytes(flowSeed, key[:n])
}
