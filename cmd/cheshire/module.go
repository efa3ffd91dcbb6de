package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"cheshire/atomicfile"
	"cheshire/modules"
	"cheshire/modules/pkg"
	"cheshire/nodekey"
)

const moduleUsage = `usage: cheshire module COMMAND [ARGS]
  build [-o FILE] DIR             compile DIR (a manifest and a Go main package)
                                  for wasip1 into an unsigned package, DIR/NAME.pkg;
                                  DIR may be anywhere (the SDK is built in)
  sign [-key FILE] [-o OUT] PKG   sign PKG (in place unless -o) with the key in FILE,
                                  by default the node identity, DIR/identity.pem
  key [-o FILE]                   make a new author key (default DIR/author.pem)
                                  and print its public key
  id [-key FILE]                  print the public key of FILE (default the node
                                  identity): what a node owner puts in its trusted list
  inspect [-trust KEY]... PKG     print the manifest, code hash and signature of PKG;
                                  with -trust, fail unless it verifies against a KEY
`

// authorKeyFile is the default name of the key module key makes.
const authorKeyFile = "author.pem"

func moduleCmd(args []string) error {
	return runModule(args, os.Stdout, os.Stderr)
}

// runModule runs cheshire module with args, writing results to stdout
// and usage and the compiler's messages to stderr.
func runModule(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, moduleUsage)
		return errors.New("missing command")
	}
	cmd, args := args[0], args[1:]
	var err error
	switch cmd {
	case "build":
		err = moduleBuild(args, stdout, stderr)
	case "sign":
		err = moduleSign(args, stdout, stderr)
	case "key":
		err = moduleKey(args, stdout, stderr)
	case "id":
		err = moduleID(args, stdout, stderr)
	case "inspect":
		err = moduleInspect(args, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, moduleUsage)
		return nil
	default:
		fmt.Fprint(stderr, moduleUsage)
		return fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	return nil
}

// moduleFlags is a flag set for a module command whose usage line is
// usage.
func moduleFlags(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("module "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: cheshire module %s\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

func moduleBuild(args []string, stdout, stderr io.Writer) error {
	const usage = "build [-o FILE] [-manifest FILE] DIR"
	fs := moduleFlags("build", usage, stderr)
	out := fs.String("o", "", "package file to write (default DIR/NAME.pkg)")
	manifest := fs.String("manifest", "", "manifest to package (default DIR/manifest): one code, several packagings")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("want one directory, have %d (usage: cheshire module %s)", fs.NArg(), usage)
	}
	dir := fs.Arg(0)
	mpath := filepath.Join(dir, pkg.ManifestEntry)
	if *manifest != "" {
		mpath = *manifest
	}
	text, err := os.ReadFile(mpath)
	if err != nil {
		return err
	}
	m, _, err := pkg.ParseManifest(text)
	if err != nil {
		return fmt.Errorf("%s: %w", mpath, err)
	}
	wasm, err := goBuildWasm(dir, stderr)
	if err != nil {
		return err
	}
	data, err := pkg.Build(text, wasm)
	if err != nil {
		return err
	}
	if *out == "" {
		*out = filepath.Join(dir, m.Name+".pkg")
	}
	if err := atomicfile.Write(*out, data, 0644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s %d bytes\n", *out, len(data))
	return nil
}

// goBuildWasm compiles the Go main package in dir as a WebAssembly
// reactor for wasip1 and returns the binary. A dir in a Go module (the
// repository's examples, or a module with a go.mod of its own) is built
// where it is; any other is copied below a temporary module holding the
// SDK this binary carries (modules.WriteSDK), so an edited copy of an
// example builds anywhere, offline, if it imports only the standard
// library and the SDK.
func goBuildWasm(dir string, stderr io.Writer) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "cheshire-module-")
	if err != nil {
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	wasmPath := filepath.Join(tmp, "module.wasm")
	build := dir
	if !inGoModule(dir) {
		sdk := filepath.Join(tmp, "sdk")
		build = filepath.Join(sdk, "module")
		if err := modules.WriteSDK(sdk); err != nil {
			return nil, fmt.Errorf("writing the module SDK: %w", err)
		}
		if err := os.CopyFS(build, os.DirFS(dir)); err != nil {
			return nil, fmt.Errorf("copying %s to build it: %w", dir, err)
		}
	}
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", wasmPath, ".")
	cmd.Dir = build
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go build in %s: %w", dir, err)
	}
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		return nil, fmt.Errorf("go build in %s: %w", dir, err)
	}
	return wasm, nil
}

// inGoModule reports whether the go command finds a go.mod for dir.
func inGoModule(dir string) bool {
	cmd := exec.Command("go", "env", "GOMOD")
	cmd.Dir = dir
	out, err := cmd.Output()
	gomod := strings.TrimSpace(string(out))
	return err == nil && gomod != "" && gomod != os.DevNull
}

func moduleSign(args []string, stdout, stderr io.Writer) error {
	const usage = "sign [-key FILE] [-o OUT] PKG"
	fs := moduleFlags("sign", usage, stderr)
	keyFile := fs.String("key", "", "ed25519 key file (default the node identity, DIR/identity.pem)")
	out := fs.String("o", "", "package file to write (default PKG, in place)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("want one package, have %d (usage: cheshire module %s)", fs.NArg(), usage)
	}
	in := fs.Arg(0)
	key, err := loadKey(*keyFile)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	data, err = pkg.Sign(data, key)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	if *out == "" {
		*out = in
	}
	if err := atomicfile.Write(*out, data, 0644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s signed by %s\n", *out, nodekey.Encode(key.Public().(ed25519.PublicKey)))
	return nil
}

func moduleKey(args []string, stdout, stderr io.Writer) error {
	const usage = "key [-o FILE]"
	fs := moduleFlags("key", usage, stderr)
	out := fs.String("o", "", "key file to make (default DIR/"+authorKeyFile+")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q (usage: cheshire module %s)", fs.Args(), usage)
	}
	if *out == "" {
		dir := dataDir()
		if err := os.MkdirAll(dir, 0700); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
		*out = filepath.Join(dir, authorKeyFile)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("new key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("new key: %w", err)
	}
	err = atomicfile.Create(*out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s exists; not overwriting a key", *out)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, nodekey.Encode(pub))
	return nil
}

func moduleID(args []string, stdout, stderr io.Writer) error {
	const usage = "id [-key FILE]"
	fs := moduleFlags("id", usage, stderr)
	keyFile := fs.String("key", "", "ed25519 key file (default the node identity, DIR/identity.pem)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q (usage: cheshire module %s)", fs.Args(), usage)
	}
	key, err := loadKey(*keyFile)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, nodekey.Encode(key.Public().(ed25519.PublicKey)))
	return nil
}

func moduleInspect(args []string, stdout, stderr io.Writer) error {
	const usage = "inspect [-trust KEY]... PKG"
	fs := moduleFlags("inspect", usage, stderr)
	var trust multi
	fs.Var(&trust, "trust", "an author key to trust, in z-base-32 (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("want one package, have %d (usage: cheshire module %s)", fs.NArg(), usage)
	}
	var trusted []ed25519.PublicKey
	for _, s := range trust {
		k, err := nodekey.Decode(s)
		if err != nil {
			return fmt.Errorf("-trust: %w", err)
		}
		trusted = append(trusted, k)
	}
	file := fs.Arg(0)
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	p, err := pkg.Read(data)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}

	var b bytes.Buffer
	fmt.Fprintf(&b, "package: %s, %d bytes\n", file, len(data))
	b.WriteString("manifest:\n")
	for _, l := range strings.SplitAfter(strings.TrimSuffix(string(p.ManifestText), "\n"), "\n") {
		b.WriteString("\t" + strings.TrimSuffix(l, "\n") + "\n")
	}
	wasmErr := p.CheckWasm()
	match := "matches the manifest"
	if wasmErr != nil {
		match = "DOES NOT MATCH the manifest's " + p.WasmHash
	}
	fmt.Fprintf(&b, "wasm: %d bytes, %s, %s\n", len(p.Wasm), pkg.Hash(p.Wasm), match)
	sigErr := p.VerifySignature()
	switch {
	case errors.Is(sigErr, pkg.ErrUnsigned):
		b.WriteString("signed: no\n")
	case sigErr != nil:
		fmt.Fprintf(&b, "signed: by %s\nsignature: BAD: %v\n", orNone(p.Manifest.Author), sigErr)
	default:
		fmt.Fprintf(&b, "signed: by %s\nsignature: verifies\n", p.Manifest.Author)
	}
	var err2 error
	if len(trusted) > 0 {
		err2 = p.Verify(trusted)
		if err2 == nil {
			b.WriteString("trusted: yes\n")
		} else {
			fmt.Fprintf(&b, "trusted: no: %v\n", err2)
		}
	}
	if _, err := stdout.Write(b.Bytes()); err != nil {
		return err
	}
	// Without -trust an unsigned package is fine; a tampered one is not.
	switch {
	case err2 != nil:
		return fmt.Errorf("%s: %w", file, err2)
	case sigErr != nil && !errors.Is(sigErr, pkg.ErrUnsigned):
		return fmt.Errorf("%s: %w", file, sigErr)
	case wasmErr != nil:
		return fmt.Errorf("%s: %w", file, wasmErr)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "no one (no author line)"
	}
	return s
}

// loadKey reads an ed25519 private key from file, a PKCS8 PEM file like
// identity.pem. With file "", it loads the node identity, which must
// exist.
func loadKey(file string) (ed25519.PrivateKey, error) {
	if file == "" {
		dir := dataDir()
		p := filepath.Join(dir, nodekey.IdentityFile)
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("node identity: %w (run cheshire serve once, or give -key FILE)", err)
		}
		id, err := nodekey.Load(dir)
		if err != nil {
			return nil, err
		}
		return id.Private, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("key: %w", err)
	}
	if fi, err := os.Stat(file); err == nil && fi.Mode().Perm()&0077 != 0 {
		return nil, fmt.Errorf("key: %s is readable by others (mode %v); chmod 600 it", file, fi.Mode().Perm())
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("key: %s: no PRIVATE KEY block", file)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("key: %s: %w", file, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key: %s: not an ed25519 key", file)
	}
	return priv, nil
}
