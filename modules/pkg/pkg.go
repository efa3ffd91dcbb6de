// Package pkg reads, builds and signs module packages: WebAssembly
// modules in one file, ready to copy to a node.
//
// A package is a zip archive with exactly these entries, each at most
// once and nothing else:
//
//	manifest     the module's manifest, text (at most 64 KiB)
//	module.wasm  the module's code (at most 64 MiB)
//	signature    64 bytes, a raw ed25519 signature; absent when unsigned
//
// The manifest has one entry a line, words in rc(1) quoting
// (plan9.Tokenize); blank lines and lines starting with # are ignored:
//
//	name NAME            required; [a-z0-9][a-z0-9._-]*, at most 64 bytes
//	version V            required
//	description TEXT     the words are joined with single spaces
//	author KEY           the signer's ed25519 public key in z-base-32
//	wasm sha256:HEX      the SHA-256 of module.wasm, lower-case hex
//	dep NAME             a module that must run for this one to run (repeatable)
//	mount /PATH          where namespaces mount it by default
//	lazy on|off          start at the first walk into its files
//	requires KIND ARG    a permission: read PATH, write PATH or http HOST:PORT (repeatable)
//
// An unknown key, or a second line of any key but dep and requires, is
// an error naming the line. Build writes the wasm line and drops any
// author line and signature; Sign writes the author line and the
// signature.
//
// The signature is ed25519, by the author key, over the domain-separated
// message
//
//	"cheshire-package-v1\n" + the manifest entry's bytes
//
// The manifest names the hash of module.wasm, so the signature covers
// the code as well: Verify refuses a package whose manifest or code was
// changed after signing, and one whose author the node does not trust.
package pkg

import (
	"archive/zip"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"cheshire/module"
	"cheshire/nodekey"
)

// Entry names and size bounds.
const (
	ManifestEntry  = "manifest"
	WasmEntry      = "module.wasm"
	SignatureEntry = "signature"

	MaxManifest = 64 << 10 // bytes of manifest
	MaxWasm     = 64 << 20 // bytes of module.wasm
)

// signContext prefixes the manifest in the signed message, so that a
// package signature is never valid as any other kind of signature.
const signContext = "cheshire-package-v1\n"

// Verification failures. Verify's errors match them with errors.Is.
var (
	ErrUnsigned     = errors.New("package unsigned")
	ErrBadSignature = errors.New("package signature does not verify (tampered, or signed by another key)")
	ErrUntrusted    = errors.New("package author is not trusted by this node")
	ErrWasmMismatch = errors.New("module.wasm does not match the manifest's sha256 (tampered)")
)

// An UntrustedError reports a good signature by a key the node does not
// trust. It matches ErrUntrusted.
type UntrustedError struct {
	Author string // z-base-32
}

func (e *UntrustedError) Error() string {
	return "author " + e.Author + " is not trusted by this node"
}

// Unwrap returns ErrUntrusted.
func (e *UntrustedError) Unwrap() error { return ErrUntrusted }

// A Package is a parsed package file.
type Package struct {
	Manifest     module.Manifest
	ManifestText []byte // the manifest entry as stored: what is signed
	Wasm         []byte
	Signature    []byte // nil when unsigned
	WasmHash     string // "sha256:HEX" from the manifest
}

// Hash returns the hash of wasm as a manifest's wasm line writes it.
func Hash(wasm []byte) string {
	h := sha256.Sum256(wasm)
	return "sha256:" + hex.EncodeToString(h[:])
}

// Read parses a package file. It checks the form of the archive and the
// manifest, not the signature or the code: see Verify.
func Read(data []byte) (*Package, error) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("not a package: not a zip archive: %w", err)
	}
	var p Package
	var haveManifest, haveWasm, haveSig bool
	for _, f := range zr.File {
		var max int64
		var have *bool
		switch f.Name {
		case ManifestEntry:
			max, have = MaxManifest, &haveManifest
		case WasmEntry:
			max, have = MaxWasm, &haveWasm
		case SignatureEntry:
			max, have = ed25519.SignatureSize, &haveSig
		default:
			return nil, fmt.Errorf("package: unexpected entry %q", f.Name)
		}
		if *have {
			return nil, fmt.Errorf("package: duplicate entry %q", f.Name)
		}
		*have = true
		b, err := readEntry(f, max)
		if err != nil {
			return nil, err
		}
		switch f.Name {
		case ManifestEntry:
			p.ManifestText = b
		case WasmEntry:
			p.Wasm = b
		case SignatureEntry:
			if len(b) != ed25519.SignatureSize {
				return nil, fmt.Errorf("package: signature is %d bytes, want %d", len(b), ed25519.SignatureSize)
			}
			p.Signature = b
		}
	}
	switch {
	case !haveManifest:
		return nil, fmt.Errorf("package: no %s entry", ManifestEntry)
	case !haveWasm:
		return nil, fmt.Errorf("package: no %s entry", WasmEntry)
	}
	p.Manifest, p.WasmHash, err = ParseManifest(p.ManifestText)
	if err != nil {
		return nil, fmt.Errorf("package: %w", err)
	}
	if p.WasmHash == "" {
		return nil, errors.New("package: manifest has no wasm line")
	}
	return &p, nil
}

// readEntry reads f, refusing more than max bytes whatever its header
// claims.
func readEntry(f *zip.File, max int64) ([]byte, error) {
	if f.UncompressedSize64 > uint64(max) {
		return nil, fmt.Errorf("package: %s is %d bytes, more than %d", f.Name, f.UncompressedSize64, max)
	}
	rc, err := f.Open()
	if err != nil {
		return nil, fmt.Errorf("package: %s: %w", f.Name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, fmt.Errorf("package: %s: %w", f.Name, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("package: %s is more than %d bytes", f.Name, max)
	}
	return b, nil
}

// VerifySignature checks that p is signed and that the signature is the
// author's, over the manifest as stored. It does not check trust or the
// code: see Verify.
func (p *Package) VerifySignature() error {
	if len(p.Signature) == 0 {
		return ErrUnsigned
	}
	if p.Manifest.Author == "" {
		return errors.New("package signed, but its manifest has no author line")
	}
	pub, err := nodekey.Decode(p.Manifest.Author)
	if err != nil {
		return fmt.Errorf("package author: %w", err)
	}
	if !ed25519.Verify(pub, signedMessage(p.ManifestText), p.Signature) {
		return ErrBadSignature
	}
	return nil
}

// CheckWasm checks that the code is the code the manifest names.
func (p *Package) CheckWasm() error {
	if p.WasmHash == "" || Hash(p.Wasm) != p.WasmHash {
		return ErrWasmMismatch
	}
	return nil
}

// Verify checks that p is signed, that the signature is its author's,
// that the author is one of trusted, and that the code is what the
// signed manifest names. Each failure is a distinct error.
func (p *Package) Verify(trusted []ed25519.PublicKey) error {
	if err := p.VerifySignature(); err != nil {
		return err
	}
	pub, _ := nodekey.Decode(p.Manifest.Author) // VerifySignature parsed it
	ok := false
	for _, k := range trusted {
		if pub.Equal(k) {
			ok = true
			break
		}
	}
	if !ok {
		return &UntrustedError{Author: p.Manifest.Author}
	}
	return p.CheckWasm()
}

// Build makes an unsigned package of a manifest and the code: it checks
// the manifest, writes its wasm line with the code's hash (in place of
// any wasm line it has) and drops any author line.
func Build(manifestText, wasm []byte) ([]byte, error) {
	if _, _, err := ParseManifest(manifestText); err != nil {
		return nil, fmt.Errorf("build package: %w", err)
	}
	if err := checkWasm(wasm); err != nil {
		return nil, fmt.Errorf("build package: %w", err)
	}
	text := setLine(manifestText, "wasm", "wasm "+Hash(wasm), "")
	text = setLine(text, "author", "", "")
	if _, _, err := ParseManifest(text); err != nil {
		return nil, fmt.Errorf("build package: %w", err)
	}
	return write(text, wasm, nil)
}

// checkWasm checks the size and the header of a WebAssembly binary.
func checkWasm(wasm []byte) error {
	if len(wasm) > MaxWasm {
		return fmt.Errorf("module.wasm is %d bytes, more than %d", len(wasm), MaxWasm)
	}
	if !bytes.HasPrefix(wasm, []byte("\x00asm\x01\x00\x00\x00")) {
		return errors.New("module.wasm is not a WebAssembly 1 binary")
	}
	return nil
}

// Sign signs the package data with key: it writes the manifest's author
// line with key's public half (in place of any author line it has) and
// returns the package with the new manifest and signature. It refuses
// a package whose code does not match its manifest.
func Sign(data []byte, key ed25519.PrivateKey) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign package: key is %d bytes, want an ed25519 private key", len(key))
	}
	p, err := Read(data)
	if err != nil {
		return nil, fmt.Errorf("sign package: %w", err)
	}
	if err := p.CheckWasm(); err != nil {
		return nil, fmt.Errorf("sign package: %w", err)
	}
	author := nodekey.Encode(key.Public().(ed25519.PublicKey))
	text := setLine(p.ManifestText, "author", "author "+author, "wasm")
	if len(text) > MaxManifest {
		return nil, fmt.Errorf("sign package: manifest with author line is more than %d bytes", MaxManifest)
	}
	if _, _, err := ParseManifest(text); err != nil {
		return nil, fmt.Errorf("sign package: %w", err)
	}
	return write(text, p.Wasm, ed25519.Sign(key, signedMessage(text)))
}

// signedMessage is what a package signature signs.
func signedMessage(manifest []byte) []byte {
	m := make([]byte, 0, len(signContext)+len(manifest))
	return append(append(m, signContext...), manifest...)
}

// write makes the package file. The archive is the same for the same
// contents: no times, a fixed order.
func write(manifest, wasm, sig []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	add := func(name string, method uint16, b []byte) error {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: method})
		if err != nil {
			return fmt.Errorf("write package: %s: %w", name, err)
		}
		if _, err := w.Write(b); err != nil {
			return fmt.Errorf("write package: %s: %w", name, err)
		}
		return nil
	}
	if err := add(ManifestEntry, zip.Deflate, manifest); err != nil {
		return nil, err
	}
	if err := add(WasmEntry, zip.Deflate, wasm); err != nil {
		return nil, err
	}
	if sig != nil {
		if err := add(SignatureEntry, zip.Store, sig); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("write package: %w", err)
	}
	return buf.Bytes(), nil
}
