package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"cheshire/atomicfile"
)

// fileSet is a set of files to be replaced together (atomicfile's staged
// files, renamed into place by commit once every one has been written).
type fileSet struct {
	files []*atomicfile.Staged
}

// add stages one file; after an error the set must be aborted.
func (s *fileSet) add(path string, data []byte, perm os.FileMode) error {
	st, err := atomicfile.Stage(path, data, perm)
	if err != nil {
		return err
	}
	s.files = append(s.files, st)
	return nil
}

// abort removes the staged files.
func (s *fileSet) abort() {
	for _, f := range s.files {
		f.Abort()
	}
	s.files = nil
}

// commit renames every staged file into place and syncs the directories.
func (s *fileSet) commit() error {
	files := s.files
	s.files = nil
	return atomicfile.CommitAll(files)
}

// writeAtomic replaces path with data.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	return atomicfile.Write(path, data, perm)
}

// syncDir makes a rename in dir durable, as far as the system allows.
func syncDir(dir string) { atomicfile.SyncDir(dir) }

// replaceDir puts the files into dir/name as a whole: they are written in
// a new directory that then takes the place of the old one. A crash
// between the two renames leaves .NAME.old, which recoverDirs puts back.
func replaceDir(dir, name string, files map[string][]byte, perms map[string]os.FileMode) error {
	if err := os.MkdirAll(dir, 0700); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(dir, "."+name+".new*")
	if err != nil {
		return err
	}
	for fn, data := range files {
		p := filepath.Join(tmp, fn)
		if err := os.WriteFile(p, data, perms[fn]); err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("writing %s: %w", p, err)
		}
		if err := syncFile(p); err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	syncDir(tmp)
	final := filepath.Join(dir, name)
	old := filepath.Join(dir, "."+name+".old")
	os.RemoveAll(old)
	moved := false
	if _, err := os.Lstat(final); err == nil {
		if err := os.Rename(final, old); err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("replacing %s: %w", final, err)
		}
		moved = true
	}
	if err := os.Rename(tmp, final); err != nil {
		if moved {
			os.Rename(old, final)
		}
		os.RemoveAll(tmp)
		return fmt.Errorf("replacing %s: %w", final, err)
	}
	syncDir(dir)
	os.RemoveAll(old)
	return nil
}

func syncFile(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// recoverDirs finishes or undoes replaceDir calls that a crash cut short.
func recoverDirs(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, ".") {
			continue
		}
		p := filepath.Join(dir, n)
		if name, ok := strings.CutSuffix(n[1:], ".old"); ok && validName(name) {
			if _, err := os.Lstat(filepath.Join(dir, name)); errors.Is(err, os.ErrNotExist) {
				os.Rename(p, filepath.Join(dir, name))
				continue
			}
		}
		os.RemoveAll(p)
	}
}

// PEM block types.
const (
	pemCert = "CERTIFICATE"
	pemKey  = "PRIVATE KEY"
	pemCSR  = "CERTIFICATE REQUEST"
	pemCRL  = "X509 CRL"
)

func certPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: pemCert, Bytes: c.Raw})...)
	}
	return out
}

func keyPEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemKey, Bytes: der}), nil
}

// parseCertPEM returns the first certificate of data.
func parseCertPEM(data []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("ca: no CERTIFICATE block")
		}
		if b.Type == pemCert {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}

// parseKeyPEM returns the ECDSA key of data (PKCS#8 or SEC 1).
func parseKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("ca: no PRIVATE KEY block")
		}
		switch b.Type {
		case pemKey:
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, err
			}
			ek, ok := k.(*ecdsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("ca: key is %T, not ECDSA", k)
			}
			return ek, nil
		case "EC PRIVATE KEY":
			return x509.ParseECPrivateKey(b.Bytes)
		}
	}
}

// loadPair reads a certificate and its key and checks that they match.
func loadPair(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	cert, err := parseCertPEM(cb)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certPath, err)
	}
	key, err := parseKeyPEM(kb)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, fmt.Errorf("%s does not match %s", keyPath, certPath)
	}
	return cert, key, nil
}
