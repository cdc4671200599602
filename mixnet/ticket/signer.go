package ticket

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"

	"github.com/cloudflare/circl/blindsign/blindrsa"
)

// IssuerKeyBits is the size of the RSA keys authorities make for tickets.
const IssuerKeyBits = 2048

// GenerateIssuerKey makes an issuer's RSA key.
func GenerateIssuerKey() (*rsa.PrivateKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, IssuerKeyBits)
	if err != nil {
		return nil, fmt.Errorf("generate issuer key: %w", err)
	}
	return k, nil
}

// MarshalPublicKey encodes an issuer's public key as issuer keys travel
// (PKIX DER).
func MarshalPublicKey(pub *rsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode issuer key: %w", err)
	}
	return der, nil
}

// BlindSign is the issuer's half of RFC 9474: it signs one blinded message
// with priv. It never sees the message, the ticket key or the signature the
// client will unblind. The signature is deterministic: the same blinded
// message gets the same answer, which makes retries idempotent.
func BlindSign(priv *rsa.PrivateKey, blinded []byte) ([]byte, error) {
	if len(blinded) != priv.Size() {
		return nil, fmt.Errorf("%w: blinded message of %d bytes, key of %d", ErrMalformed, len(blinded), priv.Size())
	}
	sig, err := blindrsa.NewSigner(priv).BlindSign(blinded)
	if err != nil {
		return nil, fmt.Errorf("blind sign: %w", err)
	}
	return sig, nil
}
