package acme

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
)

// JWS and JWK handling (RFC 7515, 7517, 7518, 7638, 8037), restricted to
// what RFC 8555 section 6.2 allows: the flattened JSON serialization with
// a protected header only, asymmetric algorithms only.

// algorithms lists the JWS "alg" values accepted, in the order given in
// badSignatureAlgorithm problems.
func algorithms() []string {
	return []string{"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"}
}

// RSA moduli outside these bounds, in bits, are refused.
const (
	minRSABits = 2048
	maxRSABits = 8192
)

// flatJWS is a JWS in the flattened JSON serialization.
type flatJWS struct {
	Protected string `json:"protected"`
	Payload   string `json:"payload"`
	Signature string `json:"signature"`
}

// jwsHeader is the part of a protected header that ACME uses.
type jwsHeader struct {
	Alg   string          `json:"alg"`
	Nonce string          `json:"nonce"`
	URL   string          `json:"url"`
	KID   string          `json:"kid"`
	JWK   json.RawMessage `json:"jwk"`
}

// parsedJWS is a JWS whose parts have been decoded but whose signature
// has not been checked.
type parsedJWS struct {
	header       jwsHeader
	hasNonce     bool
	payload      []byte // decoded; empty for POST-as-GET
	signingInput []byte // ASCII(protected || '.' || payload)
	signature    []byte
}

// parseJWS decodes a flattened JSON JWS. It refuses the general
// serialization, unprotected headers and anything else RFC 8555 rules out.
func parseJWS(body []byte) (*parsedJWS, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		return nil, fmt.Errorf("request body is not a JSON object: %w", err)
	}
	for k := range fields {
		switch k {
		case "protected", "payload", "signature":
		case "signatures":
			return nil, errors.New("JWS general serialization is not allowed; use the flattened serialization")
		case "header":
			return nil, errors.New("JWS unprotected header is not allowed")
		default:
			return nil, fmt.Errorf("unexpected JWS member %q", k)
		}
	}
	var j flatJWS
	if err := json.Unmarshal(body, &j); err != nil {
		return nil, fmt.Errorf("decoding JWS: %w", err)
	}
	if _, ok := fields["payload"]; !ok {
		return nil, errors.New("JWS has no payload member")
	}
	if j.Protected == "" || j.Signature == "" {
		return nil, errors.New("JWS needs protected and signature members")
	}
	hdrJSON, err := b64dec(j.Protected)
	if err != nil {
		return nil, fmt.Errorf("JWS protected header: %w", err)
	}
	var hdrFields map[string]json.RawMessage
	if err := json.Unmarshal(hdrJSON, &hdrFields); err != nil {
		return nil, fmt.Errorf("JWS protected header is not a JSON object: %w", err)
	}
	if _, ok := hdrFields["crit"]; ok {
		return nil, errors.New(`JWS "crit" header parameter is not supported`)
	}
	var p parsedJWS
	if err := json.Unmarshal(hdrJSON, &p.header); err != nil {
		return nil, fmt.Errorf("JWS protected header: %w", err)
	}
	_, p.hasNonce = hdrFields["nonce"]
	if p.payload, err = b64dec(j.Payload); err != nil {
		return nil, fmt.Errorf("JWS payload: %w", err)
	}
	if p.signature, err = b64dec(j.Signature); err != nil {
		return nil, fmt.Errorf("JWS signature: %w", err)
	}
	p.signingInput = []byte(j.Protected + "." + j.Payload)
	return &p, nil
}

// b64dec decodes unpadded base64url, as JOSE requires.
func b64dec(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("invalid base64url: %w", err)
	}
	return b, nil
}

func b64enc(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// supportedAlg reports whether alg is one of algorithms.
func supportedAlg(alg string) bool { return slices.Contains(algorithms(), alg) }

// verifyJWS checks sig over input with key under alg. It fails when the
// key's type does not fit alg.
func verifyJWS(alg string, key crypto.PublicKey, input, sig []byte) error {
	switch alg {
	case "ES256", "ES384", "ES512":
		pub, ok := key.(*ecdsa.PublicKey)
		if !ok {
			return fmt.Errorf("alg %s needs an EC key", alg)
		}
		curve, h := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[alg],
			map[string]crypto.Hash{"ES256": crypto.SHA256, "ES384": crypto.SHA384, "ES512": crypto.SHA512}[alg]
		if pub.Curve != curve {
			return fmt.Errorf("alg %s does not match curve %s", alg, pub.Curve.Params().Name)
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return fmt.Errorf("%s signature is %d bytes, want %d", alg, len(sig), 2*size)
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		if !ecdsa.Verify(pub, digest(h, input), r, s) {
			return errors.New("signature does not verify")
		}
		return nil
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		pub, ok := key.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("alg %s needs an RSA key", alg)
		}
		h := map[byte]crypto.Hash{'2': crypto.SHA256, '3': crypto.SHA384, '5': crypto.SHA512}[alg[2]]
		var err error
		if alg[0] == 'R' {
			err = rsa.VerifyPKCS1v15(pub, h, digest(h, input), sig)
		} else {
			err = rsa.VerifyPSS(pub, h, digest(h, input), sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h})
		}
		if err != nil {
			return fmt.Errorf("signature does not verify: %w", err)
		}
		return nil
	case "EdDSA":
		pub, ok := key.(ed25519.PublicKey)
		if !ok {
			return errors.New("alg EdDSA needs an Ed25519 key")
		}
		if !ed25519.Verify(pub, input, sig) {
			return errors.New("signature does not verify")
		}
		return nil
	}
	return fmt.Errorf("unsupported alg %q", alg)
}

func digest(h crypto.Hash, b []byte) []byte {
	switch h {
	case crypto.SHA384:
		d := sha512.Sum384(b)
		return d[:]
	case crypto.SHA512:
		d := sha512.Sum512(b)
		return d[:]
	default:
		d := sha256.Sum256(b)
		return d[:]
	}
}

// jwkJSON is the union of the JWK members used for EC, RSA and OKP keys.
type jwkJSON struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	D   string `json:"d,omitempty"`
}

// parseJWK decodes a public JWK into an *ecdsa.PublicKey, *rsa.PublicKey or
// ed25519.PublicKey, refusing private keys, weak RSA keys and points off
// the curve.
func parseJWK(raw []byte) (crypto.PublicKey, error) {
	var k jwkJSON
	if err := json.Unmarshal(raw, &k); err != nil {
		return nil, fmt.Errorf("JWK: %w", err)
	}
	if k.D != "" {
		return nil, errors.New("JWK holds a private key")
	}
	switch k.Kty {
	case "EC":
		var curve elliptic.Curve
		switch k.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf("JWK: unsupported curve %q", k.Crv)
		}
		size := (curve.Params().BitSize + 7) / 8
		x, err := b64dec(k.X)
		if err != nil {
			return nil, fmt.Errorf("JWK x: %w", err)
		}
		y, err := b64dec(k.Y)
		if err != nil {
			return nil, fmt.Errorf("JWK y: %w", err)
		}
		if len(x) != size || len(y) != size {
			return nil, fmt.Errorf("JWK: %s coordinates must be %d bytes", k.Crv, size)
		}
		pt := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, pt)
		if err != nil {
			return nil, fmt.Errorf("JWK: %w", err)
		}
		return pub, nil
	case "RSA":
		n, err := b64dec(k.N)
		if err != nil {
			return nil, fmt.Errorf("JWK n: %w", err)
		}
		e, err := b64dec(k.E)
		if err != nil {
			return nil, fmt.Errorf("JWK e: %w", err)
		}
		n = bytes.TrimLeft(n, "\x00")
		e = bytes.TrimLeft(e, "\x00")
		if len(e) == 0 || len(e) > 4 {
			return nil, errors.New("JWK: bad RSA exponent")
		}
		var ev int
		for _, b := range e {
			ev = ev<<8 | int(b)
		}
		if ev < 3 || ev%2 == 0 {
			return nil, errors.New("JWK: bad RSA exponent")
		}
		N := new(big.Int).SetBytes(n)
		if bits := N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return nil, fmt.Errorf("JWK: RSA key of %d bits; want %d to %d", bits, minRSABits, maxRSABits)
		}
		return &rsa.PublicKey{N: N, E: ev}, nil
	case "OKP":
		if k.Crv != "Ed25519" {
			return nil, fmt.Errorf("JWK: unsupported OKP curve %q", k.Crv)
		}
		x, err := b64dec(k.X)
		if err != nil {
			return nil, fmt.Errorf("JWK x: %w", err)
		}
		if len(x) != ed25519.PublicKeySize {
			return nil, errors.New("JWK: Ed25519 key must be 32 bytes")
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, fmt.Errorf("JWK: unsupported key type %q", k.Kty)
}

// encodeJWK returns the canonical JWK of pub: its RFC 7638 thumbprint
// input, which is also a valid JWK.
func encodeJWK(pub crypto.PublicKey) ([]byte, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		b, err := k.Bytes()
		if err != nil {
			return nil, fmt.Errorf("encoding EC key: %w", err)
		}
		size := (len(b) - 1) / 2
		// Members in lexicographic order, no white space (RFC 7638 section 3).
		return fmt.Appendf(nil, `{"crv":%q,"kty":"EC","x":%q,"y":%q}`,
			k.Curve.Params().Name, b64enc(b[1:1+size]), b64enc(b[1+size:])), nil
	case *rsa.PublicKey:
		e := big.NewInt(int64(k.E)).Bytes()
		return fmt.Appendf(nil, `{"e":%q,"kty":"RSA","n":%q}`, b64enc(e), b64enc(k.N.Bytes())), nil
	case ed25519.PublicKey:
		return fmt.Appendf(nil, `{"crv":"Ed25519","kty":"OKP","x":%q}`, b64enc(k)), nil
	}
	return nil, fmt.Errorf("unsupported key type %T", pub)
}

// thumbprint is the base64url RFC 7638 SHA-256 thumbprint of pub.
func thumbprint(pub crypto.PublicKey) (string, error) {
	j, err := encodeJWK(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(j)
	return b64enc(sum[:]), nil
}
