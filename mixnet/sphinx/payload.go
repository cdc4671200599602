package sphinx

import "fmt"

// OpenPayload checks and unpads the payload of a forward packet after its last
// layer is removed, and returns the message (a sub-slice of payload).
// Any change made to the packet on its way fails here: Lioness turns it into
// noise, and noise does not start with 16 zero bytes.
func OpenPayload(payload []byte) ([]byte, error) {
	if len(payload) < PayloadOverhead {
		return nil, fmt.Errorf("%w: payload is %d bytes", ErrBadSize, len(payload))
	}
	var acc byte
	for _, c := range payload[:integritySize] {
		acc |= c
	}
	if acc != 0 {
		return nil, ErrBadPayload
	}
	body := payload[integritySize:]
	end := len(body) - 1
	for end >= 0 && body[end] == 0 {
		end--
	}
	if end < 0 || body[end] != 0x01 {
		return nil, fmt.Errorf("%w: no padding marker", ErrBadPayload)
	}
	return body[:end], nil
}
