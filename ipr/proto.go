package ipr

import (
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"
)

// ProtocolVersion is the first byte of every message this package writes and
// the only one it reads.
const ProtocolVersion = 1

// msgType is a message's second byte. Responses have the high bit set.
type msgType uint8

const (
	typeConnect    msgType = 0x01
	typeDisconnect msgType = 0x02
	typePing       msgType = 0x03
	typeDataUp     msgType = 0x04

	typeConnectOK             msgType = 0x81
	typeConnectFail           msgType = 0x82
	typePong                  msgType = 0x83
	typeDataDown              msgType = 0x84
	typeInfo                  msgType = 0x85
	typeUnrequestedDisconnect msgType = 0x86
)

// headerLen is the version and type bytes that open every message.
const headerLen = 2

// DataUpOverhead and DataDownOverhead are what a Data message adds to its
// bundle in each direction.
const (
	DataUpOverhead   = headerLen + 8     // seq
	DataDownOverhead = headerLen + 8 + 2 // seq, backlog
)

// MaxInfoText bounds the text of an Info response, in bytes.
const MaxInfoText = 256

// NonceSize is the length of a session nonce.
const NonceSize = 16

var (
	// ErrMalformed is wrapped by every decoding error but a version mismatch.
	ErrMalformed = errors.New("ipr: malformed message")
	// ErrVersion is returned, wrapped, for a message of another protocol
	// version, so that the router can say which version it speaks.
	ErrVersion = errors.New("ipr: unsupported protocol version")
)

// Request is a message from a VPN client to the router: *Connect,
// *Disconnect, *Ping or *DataUp.
type Request interface {
	encoding.BinaryAppender
	isRequest()
}

// Response is a message from the router to a VPN client: *ConnectOK,
// *ConnectFail, *Pong, *DataDown, *Info or *UnrequestedDisconnect.
type Response interface {
	encoding.BinaryAppender
	isResponse()
}

// Connect asks for a session and its addresses.
type Connect struct {
	RequestID uint64 // echoed in the answer, so retries can be told apart
	// Nonce is a random secret that names the session: reconnecting with
	// it, even under a new sender tag, gets the same session back. It must
	// not be zero.
	Nonce [NonceSize]byte
	// Want holds addresses the client would like (say, from an earlier
	// session); either may be zero. The router grants them when free.
	Want AddrPair
	// ReplyInterval is the pace at which the client's downstream takes
	// the session's replies: a client whose gateway shapes its downstream
	// to one slot per interval, some of them taken by its own cover and
	// acks, announces the mean interval left for replies. The router then
	// sends the session's Data no faster, so that under load each reply
	// leaves packed with what the interval gathered and the queue stands
	// at the router, under its CoDel, rather than at the gateway. Zero:
	// not announced (older clients, unshaped profiles): every reply goes
	// as soon as a SURB is in hand. On the wire it is whole microseconds,
	// 1 to 2^32-1, after the wanted addresses, present when flag
	// connectReplyInterval is set.
	ReplyInterval time.Duration
}

// Disconnect ends the session. The router does not answer it.
type Disconnect struct{}

// Ping asks for a Pong with the same ID. It needs no session.
type Ping struct{ ID uint64 }

// DataUp carries IP packets from the client to the internet.
type DataUp struct {
	Seq    uint64 // counts the session's upstream Data messages from 0
	Bundle []byte
}

// ConnectOK grants a session.
type ConnectOK struct {
	RequestID uint64
	Addrs     AddrPair // both always set
	// MTU is the largest IP packet the router can bundle into one reply
	// payload; the client sets its TUN to the smaller of this and what fits
	// its own forward payloads.
	MTU uint16
}

// ConnectFailReason says why a Connect was refused.
type ConnectFailReason uint8

// Reasons for ConnectFail.
const (
	FailOther            ConnectFailReason = 0
	FailNoFreeAddress    ConnectFailReason = 1
	FailAlreadyConnected ConnectFailReason = 2 // this sender tag holds a session with another nonce
)

func (r ConnectFailReason) String() string {
	switch r {
	case FailOther:
		return "other"
	case FailNoFreeAddress:
		return "no free address"
	case FailAlreadyConnected:
		return "already connected"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// ConnectFail refuses a Connect.
type ConnectFail struct {
	RequestID uint64
	Reason    ConnectFailReason
}

// Pong answers a Ping.
type Pong struct{ ID uint64 }

// DataDown carries IP packets from the internet to the client.
type DataDown struct {
	Seq uint64 // counts the session's downstream Data messages from 0
	// Backlog is how many more bundles were ready to send when this one
	// left: a hint for how many SURBs the client should supply.
	Backlog uint16
	Bundle  []byte
}

// InfoCode classifies an Info response.
type InfoCode uint8

// Info codes.
const (
	InfoOther           InfoCode = 0
	InfoPolicyRefused   InfoCode = 1 // Dest and Proto say what the exit policy refused
	InfoLowSURBs        InfoCode = 2 // the router is running out of reply SURBs for the client
	InfoVersionMismatch InfoCode = 3 // the router speaks another ProtocolVersion
)

func (c InfoCode) String() string {
	switch c {
	case InfoOther:
		return "other"
	case InfoPolicyRefused:
		return "policy refused"
	case InfoLowSURBs:
		return "low on SURBs"
	case InfoVersionMismatch:
		return "version mismatch"
	}
	return fmt.Sprintf("info(%d)", uint8(c))
}

// Info tells the client something it did not ask about.
type Info struct {
	Code  InfoCode
	Dest  netip.AddrPort // zero when the message is not about a destination
	Proto uint8          // IP protocol number, with Dest
	Text  string         // at most MaxInfoText bytes of UTF-8; longer is cut
}

// DisconnectReason says why the router ended a session.
type DisconnectReason uint8

// Reasons for UnrequestedDisconnect.
const (
	ReasonOther        DisconnectReason = 0
	ReasonIdle         DisconnectReason = 1 // no request for the idle timeout
	ReasonNotConnected DisconnectReason = 2 // the sender has no session (it expired, or never was)
	ReasonShutdown     DisconnectReason = 3 // the router is stopping
)

func (r DisconnectReason) String() string {
	switch r {
	case ReasonOther:
		return "other"
	case ReasonIdle:
		return "idle"
	case ReasonNotConnected:
		return "not connected"
	case ReasonShutdown:
		return "shutdown"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// UnrequestedDisconnect tells the client its session is gone.
type UnrequestedDisconnect struct{ Reason DisconnectReason }

func (*Connect) isRequest()    {}
func (*Disconnect) isRequest() {}
func (*Ping) isRequest()       {}
func (*DataUp) isRequest()     {}

func (*ConnectOK) isResponse()             {}
func (*ConnectFail) isResponse()           {}
func (*Pong) isResponse()                  {}
func (*DataDown) isResponse()              {}
func (*Info) isResponse()                  {}
func (*UnrequestedDisconnect) isResponse() {}

// Connect flag bits.
const (
	connectWantV4         = 1 << 0
	connectWantV6         = 1 << 1
	connectReplyInterval  = 1 << 2
	connectFlags          = connectWantV4 | connectWantV6 | connectReplyInterval
	replyIntervalUnit     = time.Microsecond
	maxReplyIntervalUnits = 1<<32 - 1
)

func appendHeader(b []byte, t msgType) []byte { return append(b, ProtocolVersion, byte(t)) }

// AppendBinary appends the wire form of m.
func (m *Connect) AppendBinary(b []byte) ([]byte, error) {
	var flags byte
	if m.Want.V4.IsValid() {
		if !m.Want.V4.Is4() {
			return b, fmt.Errorf("ipr: connect: wanted IPv4 address %v is not IPv4", m.Want.V4)
		}
		flags |= connectWantV4
	}
	if m.Want.V6.IsValid() {
		if !m.Want.V6.Is6() || m.Want.V6.Is4In6() || m.Want.V6.Zone() != "" {
			return b, fmt.Errorf("ipr: connect: wanted IPv6 address %v is not plain IPv6", m.Want.V6)
		}
		flags |= connectWantV6
	}
	var pace uint32
	if m.ReplyInterval != 0 {
		units := m.ReplyInterval / replyIntervalUnit
		if units < 1 || units > maxReplyIntervalUnits {
			return b, fmt.Errorf("ipr: connect: reply interval %v is not 1 µs to %v", m.ReplyInterval, maxReplyIntervalUnits*replyIntervalUnit)
		}
		pace = uint32(units)
		flags |= connectReplyInterval
	}
	b = appendHeader(b, typeConnect)
	b = binary.BigEndian.AppendUint64(b, m.RequestID)
	b = append(b, m.Nonce[:]...)
	b = append(b, flags)
	if flags&connectWantV4 != 0 {
		a := m.Want.V4.As4()
		b = append(b, a[:]...)
	}
	if flags&connectWantV6 != 0 {
		a := m.Want.V6.As16()
		b = append(b, a[:]...)
	}
	if flags&connectReplyInterval != 0 {
		b = binary.BigEndian.AppendUint32(b, pace)
	}
	return b, nil
}

// AppendBinary appends the wire form of m.
func (m *Disconnect) AppendBinary(b []byte) ([]byte, error) {
	return appendHeader(b, typeDisconnect), nil
}

// AppendBinary appends the wire form of m.
func (m *Ping) AppendBinary(b []byte) ([]byte, error) {
	return binary.BigEndian.AppendUint64(appendHeader(b, typePing), m.ID), nil
}

// AppendBinary appends the wire form of m.
func (m *DataUp) AppendBinary(b []byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint64(appendHeader(b, typeDataUp), m.Seq)
	return append(b, m.Bundle...), nil
}

// AppendBinary appends the wire form of m.
func (m *ConnectOK) AppendBinary(b []byte) ([]byte, error) {
	if !m.Addrs.V4.Is4() || !m.Addrs.V6.Is6() || m.Addrs.V6.Is4In6() {
		return b, fmt.Errorf("ipr: connect ok: addresses %v, %v are not one IPv4 and one IPv6", m.Addrs.V4, m.Addrs.V6)
	}
	b = binary.BigEndian.AppendUint64(appendHeader(b, typeConnectOK), m.RequestID)
	v4, v6 := m.Addrs.V4.As4(), m.Addrs.V6.As16()
	b = append(b, v4[:]...)
	b = append(b, v6[:]...)
	return binary.BigEndian.AppendUint16(b, m.MTU), nil
}

// AppendBinary appends the wire form of m.
func (m *ConnectFail) AppendBinary(b []byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint64(appendHeader(b, typeConnectFail), m.RequestID)
	return append(b, byte(m.Reason)), nil
}

// AppendBinary appends the wire form of m.
func (m *Pong) AppendBinary(b []byte) ([]byte, error) {
	return binary.BigEndian.AppendUint64(appendHeader(b, typePong), m.ID), nil
}

// AppendBinary appends the wire form of m.
func (m *DataDown) AppendBinary(b []byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint64(appendHeader(b, typeDataDown), m.Seq)
	b = binary.BigEndian.AppendUint16(b, m.Backlog)
	return append(b, m.Bundle...), nil
}

// PutDataDownHeader writes a DataDown header into b[:DataDownOverhead], so
// a bundle can be packed behind it before its backlog is known.
func PutDataDownHeader(b []byte, seq uint64, backlog uint16) {
	b[0], b[1] = ProtocolVersion, byte(typeDataDown)
	binary.BigEndian.PutUint64(b[2:], seq)
	binary.BigEndian.PutUint16(b[10:], backlog)
}

// AppendBinary appends the wire form of m; text beyond MaxInfoText is cut
// at a rune boundary and invalid UTF-8 is replaced.
func (m *Info) AppendBinary(b []byte) ([]byte, error) {
	b = appendHeader(b, typeInfo)
	b = append(b, byte(m.Code), m.Proto)
	switch addr := m.Dest.Addr().Unmap(); {
	case !m.Dest.IsValid():
		b = append(b, 0)
	case addr.Is4():
		a := addr.As4()
		b = append(append(b, 4), a[:]...)
		b = binary.BigEndian.AppendUint16(b, m.Dest.Port())
	default:
		a := addr.As16()
		b = append(append(b, 6), a[:]...)
		b = binary.BigEndian.AppendUint16(b, m.Dest.Port())
	}
	return append(b, clampText(m.Text)...), nil
}

// clampText makes s valid UTF-8 of at most MaxInfoText bytes.
func clampText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	for len(s) > MaxInfoText {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// AppendBinary appends the wire form of m.
func (m *UnrequestedDisconnect) AppendBinary(b []byte) ([]byte, error) {
	return append(appendHeader(b, typeUnrequestedDisconnect), byte(m.Reason)), nil
}

// MarshalRequest returns the wire form of r.
func MarshalRequest(r Request) ([]byte, error) { return r.AppendBinary(nil) }

// MarshalResponse returns the wire form of r.
func MarshalResponse(r Response) ([]byte, error) { return r.AppendBinary(nil) }

// splitHeader checks the version and returns the type and the body.
func splitHeader(b []byte) (msgType, []byte, error) {
	if len(b) < headerLen {
		return 0, nil, fmt.Errorf("%w: %d bytes is shorter than a header", ErrMalformed, len(b))
	}
	if b[0] != ProtocolVersion {
		return 0, nil, fmt.Errorf("%w: got %d, speak %d", ErrVersion, b[0], ProtocolVersion)
	}
	return msgType(b[1]), b[headerLen:], nil
}

func wantLen(what string, body []byte, n int) error {
	if len(body) != n {
		return fmt.Errorf("%w: %s body is %d bytes, want %d", ErrMalformed, what, len(body), n)
	}
	return nil
}

// ParseRequest decodes a request. Byte slices in the result alias b.
func ParseRequest(b []byte) (Request, error) {
	t, body, err := splitHeader(b)
	if err != nil {
		return nil, err
	}
	switch t {
	case typeConnect:
		const fixed = 8 + NonceSize + 1
		if len(body) < fixed {
			return nil, fmt.Errorf("%w: connect body is %d bytes, want at least %d", ErrMalformed, len(body), fixed)
		}
		m := &Connect{RequestID: binary.BigEndian.Uint64(body)}
		copy(m.Nonce[:], body[8:])
		flags := body[8+NonceSize]
		if flags&^connectFlags != 0 {
			return nil, fmt.Errorf("%w: connect flags %#x", ErrMalformed, flags)
		}
		n := fixed
		if flags&connectWantV4 != 0 {
			n += 4
		}
		if flags&connectWantV6 != 0 {
			n += 16
		}
		if flags&connectReplyInterval != 0 {
			n += 4
		}
		if err := wantLen("connect", body, n); err != nil {
			return nil, err
		}
		rest := body[fixed:]
		if flags&connectWantV4 != 0 {
			m.Want.V4 = netip.AddrFrom4([4]byte(rest))
			rest = rest[4:]
		}
		if flags&connectWantV6 != 0 {
			m.Want.V6 = netip.AddrFrom16([16]byte(rest))
			if m.Want.V6.Is4In6() {
				return nil, fmt.Errorf("%w: connect: wanted IPv6 address is IPv4-mapped", ErrMalformed)
			}
			rest = rest[16:]
		}
		if flags&connectReplyInterval != 0 {
			units := binary.BigEndian.Uint32(rest)
			if units == 0 {
				return nil, fmt.Errorf("%w: connect: zero reply interval", ErrMalformed)
			}
			m.ReplyInterval = time.Duration(units) * replyIntervalUnit
		}
		return m, nil
	case typeDisconnect:
		if err := wantLen("disconnect", body, 0); err != nil {
			return nil, err
		}
		return &Disconnect{}, nil
	case typePing:
		if err := wantLen("ping", body, 8); err != nil {
			return nil, err
		}
		return &Ping{ID: binary.BigEndian.Uint64(body)}, nil
	case typeDataUp:
		if len(body) < 8 {
			return nil, fmt.Errorf("%w: data body is %d bytes, want at least 8", ErrMalformed, len(body))
		}
		return &DataUp{Seq: binary.BigEndian.Uint64(body), Bundle: body[8:]}, nil
	}
	return nil, fmt.Errorf("%w: request type %#x", ErrMalformed, uint8(t))
}

// ParseResponse decodes a response. Byte slices in the result alias b.
func ParseResponse(b []byte) (Response, error) {
	t, body, err := splitHeader(b)
	if err != nil {
		return nil, err
	}
	switch t {
	case typeConnectOK:
		if err := wantLen("connect ok", body, 8+4+16+2); err != nil {
			return nil, err
		}
		m := &ConnectOK{RequestID: binary.BigEndian.Uint64(body)}
		m.Addrs.V4 = netip.AddrFrom4([4]byte(body[8:]))
		m.Addrs.V6 = netip.AddrFrom16([16]byte(body[12:]))
		if m.Addrs.V6.Is4In6() {
			return nil, fmt.Errorf("%w: connect ok: IPv6 address is IPv4-mapped", ErrMalformed)
		}
		m.MTU = binary.BigEndian.Uint16(body[28:])
		return m, nil
	case typeConnectFail:
		if err := wantLen("connect fail", body, 9); err != nil {
			return nil, err
		}
		return &ConnectFail{RequestID: binary.BigEndian.Uint64(body), Reason: ConnectFailReason(body[8])}, nil
	case typePong:
		if err := wantLen("pong", body, 8); err != nil {
			return nil, err
		}
		return &Pong{ID: binary.BigEndian.Uint64(body)}, nil
	case typeDataDown:
		if len(body) < 10 {
			return nil, fmt.Errorf("%w: data body is %d bytes, want at least 10", ErrMalformed, len(body))
		}
		return &DataDown{
			Seq:     binary.BigEndian.Uint64(body),
			Backlog: binary.BigEndian.Uint16(body[8:]),
			Bundle:  body[10:],
		}, nil
	case typeInfo:
		return parseInfo(body)
	case typeUnrequestedDisconnect:
		if err := wantLen("unrequested disconnect", body, 1); err != nil {
			return nil, err
		}
		return &UnrequestedDisconnect{Reason: DisconnectReason(body[0])}, nil
	}
	return nil, fmt.Errorf("%w: response type %#x", ErrMalformed, uint8(t))
}

func parseInfo(body []byte) (*Info, error) {
	if len(body) < 3 {
		return nil, fmt.Errorf("%w: info body is %d bytes, want at least 3", ErrMalformed, len(body))
	}
	m := &Info{Code: InfoCode(body[0]), Proto: body[1]}
	family, rest := body[2], body[3:]
	var addr netip.Addr
	switch family {
	case 0:
	case 4:
		if len(rest) < 4+2 {
			return nil, fmt.Errorf("%w: info destination cut short", ErrMalformed)
		}
		addr, rest = netip.AddrFrom4([4]byte(rest)), rest[4:]
	case 6:
		if len(rest) < 16+2 {
			return nil, fmt.Errorf("%w: info destination cut short", ErrMalformed)
		}
		addr, rest = netip.AddrFrom16([16]byte(rest)), rest[16:]
		if addr.Is4In6() {
			return nil, fmt.Errorf("%w: info destination is IPv4-mapped", ErrMalformed)
		}
	default:
		return nil, fmt.Errorf("%w: info address family %d", ErrMalformed, family)
	}
	if addr.IsValid() {
		m.Dest = netip.AddrPortFrom(addr, binary.BigEndian.Uint16(rest))
		rest = rest[2:]
	}
	if len(rest) > MaxInfoText || !utf8.Valid(rest) {
		return nil, fmt.Errorf("%w: info text is not UTF-8 of at most %d bytes", ErrMalformed, MaxInfoText)
	}
	m.Text = string(rest)
	return m, nil
}
