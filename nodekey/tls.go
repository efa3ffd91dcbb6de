package nodekey

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// 9P between nodes runs over TLS 1.3 with mutual authentication by key:
// each side presents a self-signed certificate bound to its ed25519
// identity, and each checks the key the other proved (TLS's
// CertificateVerify proves possession of the certificate's key). A
// client pins the server's key (from the DHT record, or given by the
// user); a server learns the client's key and decides what it may see.

// Certificate returns a self-signed TLS certificate for the identity's
// key, its subject the node id.
func (id *Identity) Certificate() (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: id.ID()},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, id.Public, id.Private)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: id.Private}, nil
}

// errNoKey is the refusal of a peer that presents no ed25519 key.
var errNoKey = errors.New("peer presented no ed25519 certificate")

// peerKeyOf returns the ed25519 key of a presented chain's leaf.
func peerKeyOf(rawCerts [][]byte) (ed25519.PublicKey, error) {
	if len(rawCerts) == 0 {
		return nil, errNoKey
	}
	leaf, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return nil, fmt.Errorf("peer certificate: %w", err)
	}
	k, ok := leaf.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, errNoKey
	}
	return k, nil
}

// ServerTLS is the configuration of a node's 9P-over-TLS listener: TLS
// 1.3 only, a client certificate bound to an ed25519 key required (any
// key: what the key may see is decided at attach, see Peer).
func (id *Identity) ServerTLS() (*tls.Config, error) {
	cert, err := id.Certificate()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAnyClientCert,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			_, err := peerKeyOf(raw)
			return err
		},
	}, nil
}

// ClientTLS is the configuration to dial the node whose key is peer:
// the server must prove that key, and we prove ours.
func (id *Identity) ClientTLS(peer ed25519.PublicKey) (*tls.Config, error) {
	if len(peer) != ed25519.PublicKeySize {
		return nil, errors.New("tls: no key to check the server against")
	}
	return id.clientTLS(func(k ed25519.PublicKey) error {
		if !bytes.Equal(k, peer) {
			return fmt.Errorf("node presented key %s, not the expected %s", Encode(k), Encode(peer))
		}
		return nil
	})
}

// ProbeTLS is the configuration to dial a node whose key is not known
// yet, to learn it: the server must prove some node key (Peer gives it
// after the handshake), and we prove ours.
func (id *Identity) ProbeTLS() (*tls.Config, error) {
	return id.clientTLS(func(ed25519.PublicKey) error { return nil })
}

// clientTLS is a client configuration proving id's key, taking a server
// that proves a node key that check accepts. The check is the key, not
// a CA: there is none between nodes.
func (id *Identity) clientTLS(check func(ed25519.PublicKey) error) (*tls.Config, error) {
	cert, err := id.Certificate()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		Certificates:       []tls.Certificate{cert},
		InsecureSkipVerify: true, // the check is the key below, not a CA
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			k, err := peerKeyOf(raw)
			if err != nil {
				return err
			}
			return check(k)
		},
	}, nil
}

// Peer returns the ed25519 key the other side of a TLS connection
// proved, after the handshake.
func Peer(c net.Conn) (ed25519.PublicKey, bool) {
	tc, ok := TLS(c)
	if !ok {
		return nil, false
	}
	st := tc.ConnectionState()
	if !st.HandshakeComplete || len(st.PeerCertificates) == 0 {
		return nil, false
	}
	k, ok := st.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
	return k, ok
}
