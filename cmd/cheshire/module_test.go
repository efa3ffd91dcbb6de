package main

import (
	"archive/zip"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"cheshire/modules/pkg"
	"cheshire/nodekey"
)

// A guest that needs no SDK: one export, built as a reactor.
const (
	guestMod  = "module guest\n\ngo 1.26\n"
	guestMain = `package main

//go:wasmexport answer
func answer() int32 { return 42 }

func main() {}
`
	guestManifest = `# a test module
name hello
version 0.1
description 'says 42'
mount /hello
`
)

// runModuleT runs cheshire module with args and returns its output.
func runModuleT(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := runModule(args, &out, &errb)
	if errb.Len() > 0 {
		t.Logf("module %s: stderr:\n%s", strings.Join(args, " "), errb.String())
	}
	return out.String(), err
}

func mustModule(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runModuleT(t, args...)
	if err != nil {
		t.Fatalf("module %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0755); err != nil {
		t.Fatal(err)
	}
	for name, s := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0644); err != nil {
			t.Fatal(err)
		}
	}
}

// repack rewrites a package with f applied to its entries.
func repack(t *testing.T, data []byte, f func(name string, b []byte) []byte) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range zr.File {
		rc, err := e.Open()
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		b.ReadFrom(rc)
		rc.Close()
		w, err := zw.Create(e.Name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(f(e.Name, b.Bytes()))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestModuleCommands(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	if err := os.Mkdir(data, 0700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CHESHIRE_DIR", data)
	src := filepath.Join(tmp, "hello")
	writeFiles(t, src, map[string]string{"go.mod": guestMod, "main.go": guestMain, "manifest": guestManifest})

	// build: a real wasip1 reactor in an unsigned package.
	out := mustModule(t, "build", src)
	pkgFile := filepath.Join(src, "hello.pkg")
	if !strings.HasPrefix(out, pkgFile+" ") || !strings.HasSuffix(out, " bytes\n") {
		t.Errorf("build printed %q", out)
	}
	raw, err := os.ReadFile(pkgFile)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pkg.Read(raw)
	if err != nil {
		t.Fatal(err)
	}
	if p.Manifest.Name != "hello" || p.Signature != nil || p.CheckWasm() != nil {
		t.Errorf("built package: %+v, signature %x, wasm %v", p.Manifest, p.Signature, p.CheckWasm())
	}
	for _, export := range []string{"answer", "_initialize"} {
		if !bytes.Contains(p.Wasm, []byte(export)) {
			t.Errorf("module.wasm has no %s export", export)
		}
	}

	// inspect an unsigned package: fine, unless trust is asked for.
	out = mustModule(t, "inspect", pkgFile)
	for _, want := range []string{"\tname hello\n", "\twasm " + p.WasmHash + "\n", "matches the manifest", "signed: no\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect unsigned: no %q in\n%s", want, out)
		}
	}

	// key and id.
	keyFile := filepath.Join(tmp, "author.pem")
	author := strings.TrimSpace(mustModule(t, "key", "-o", keyFile))
	if _, err := nodekey.Decode(author); err != nil {
		t.Fatalf("key printed %q: %v", author, err)
	}
	if fi, err := os.Stat(keyFile); err != nil || fi.Mode().Perm() != 0600 {
		t.Errorf("key file: %v, %v", fi.Mode(), err)
	}
	if _, err := runModuleT(t, "key", "-o", keyFile); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("key over an existing file: %v", err)
	}
	if id := strings.TrimSpace(mustModule(t, "id", "-key", keyFile)); id != author {
		t.Errorf("id = %q, key printed %q", id, author)
	}
	if _, err := runModuleT(t, "inspect", "-trust", author, pkgFile); !errors.Is(err, pkg.ErrUnsigned) {
		t.Errorf("inspect -trust unsigned: %v", err)
	}

	// sign in place with the author key; it verifies and is trusted.
	out = mustModule(t, "sign", "-key", keyFile, pkgFile)
	if out != pkgFile+" signed by "+author+"\n" {
		t.Errorf("sign printed %q", out)
	}
	out = mustModule(t, "inspect", "-trust", author, pkgFile)
	for _, want := range []string{"\tauthor " + author + "\n", "signed: by " + author + "\n", "signature: verifies\n", "trusted: yes\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect signed: no %q in\n%s", want, out)
		}
	}

	// sign with the node identity (the default) into another file.
	id, err := nodekey.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(mustModule(t, "id")); got != id.ID() {
		t.Errorf("id = %q, node is %q", got, id.ID())
	}
	nodeSigned := filepath.Join(tmp, "node.pkg")
	mustModule(t, "sign", "-o", nodeSigned, pkgFile)
	mustModule(t, "inspect", "-trust", id.ID(), nodeSigned)
	// ... and with -key naming an identity.pem.
	mustModule(t, "sign", "-key", filepath.Join(data, nodekey.IdentityFile), "-o", nodeSigned, pkgFile)
	mustModule(t, "inspect", "-trust", author, "-trust", id.ID(), nodeSigned)
	if _, err := runModuleT(t, "inspect", "-trust", author, nodeSigned); !errors.Is(err, pkg.ErrUntrusted) ||
		!strings.Contains(err.Error(), "author "+id.ID()+" is not trusted by this node") {
		t.Errorf("inspect signed by an untrusted key: %v", err)
	}

	// Tampered copies are refused, with or without -trust.
	raw, err = os.ReadFile(pkgFile)
	if err != nil {
		t.Fatal(err)
	}
	evilWasm := filepath.Join(tmp, "evil-wasm.pkg")
	os.WriteFile(evilWasm, repack(t, raw, func(name string, b []byte) []byte {
		if name == "module.wasm" {
			// A custom section: still valid WebAssembly.
			return append(bytes.Clone(b), 0, 5, 4, 'e', 'v', 'i', 'l')
		}
		return b
	}), 0644)
	evilManifest := filepath.Join(tmp, "evil-manifest.pkg")
	os.WriteFile(evilManifest, repack(t, raw, func(name string, b []byte) []byte {
		if name == "manifest" {
			return bytes.Replace(b, []byte("mount /hello"), []byte("mount /node"), 1)
		}
		return b
	}), 0644)
	for _, tc := range []struct {
		file string
		want error
	}{
		{evilWasm, pkg.ErrWasmMismatch},
		{evilManifest, pkg.ErrBadSignature},
	} {
		if _, err := runModuleT(t, "inspect", "-trust", author, tc.file); !errors.Is(err, tc.want) {
			t.Errorf("inspect -trust %s: %v, want %v", filepath.Base(tc.file), err, tc.want)
		}
		out, err := runModuleT(t, "inspect", tc.file)
		if !errors.Is(err, tc.want) || (!strings.Contains(out, "DOES NOT MATCH") && !strings.Contains(out, "signature: BAD: ")) {
			t.Errorf("inspect %s: %v, output\n%s", filepath.Base(tc.file), err, out)
		}
	}
	if _, err := runModuleT(t, "sign", "-key", keyFile, evilWasm); !errors.Is(err, pkg.ErrWasmMismatch) {
		t.Errorf("sign tampered: %v", err)
	}
}

func TestModuleErrors(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("CHESHIRE_DIR", filepath.Join(tmp, "nodata"))
	looseKey := filepath.Join(tmp, "loose.pem")
	mustModule(t, "key", "-o", looseKey)
	os.Chmod(looseKey, 0644)
	notKey := filepath.Join(tmp, "notkey.pem")
	os.WriteFile(notKey, []byte("hello\n"), 0600)
	bad := filepath.Join(tmp, "bad")
	writeFiles(t, bad, map[string]string{"manifest": "name hello\nversion 1\nfrob\n"})
	notPkg := filepath.Join(tmp, "not.pkg")
	os.WriteFile(notPkg, []byte("hello"), 0644)

	if _, err := runModuleT(t, "sign", "-h"); err != nil {
		t.Errorf("sign -h: %v", err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "missing command"},
		{[]string{"frob"}, `unknown command "frob"`},
		{[]string{"build"}, "build: want one directory, have 0"},
		{[]string{"build", "a", "b"}, "build: want one directory, have 2"},
		{[]string{"build", "-x", "a"}, "build: flag provided but not defined: -x"},
		{[]string{"build", filepath.Join(tmp, "nowhere")}, "build: open " + filepath.Join(tmp, "nowhere", "manifest")},
		{[]string{"build", bad}, "build: " + filepath.Join(bad, "manifest") + `: manifest line 3: unknown key "frob"`},
		{[]string{"sign"}, "sign: want one package, have 0"},
		{[]string{"sign", notPkg}, "sign: node identity: stat " + filepath.Join(tmp, "nodata", "identity.pem")},
		{[]string{"sign", "-key", looseKey, notPkg}, "sign: key: " + looseKey + " is readable by others"},
		{[]string{"sign", "-key", notKey, notPkg}, "sign: key: " + notKey + ": no PRIVATE KEY block"},
		{[]string{"sign", "-key", filepath.Join(tmp, "nokey"), notPkg}, "sign: key: open"},
		{[]string{"key", "x"}, `key: unexpected arguments ["x"]`},
		{[]string{"id", "x"}, `id: unexpected arguments ["x"]`},
		{[]string{"id"}, "id: node identity: stat"},
		{[]string{"inspect"}, "inspect: want one package, have 0"},
		{[]string{"inspect", "-trust", "nope", notPkg}, `inspect: -trust: key "nope"`},
		{[]string{"inspect", notPkg}, "inspect: " + notPkg + ": not a package: not a zip archive"},
	} {
		_, err := runModuleT(t, tc.args...)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("module %q: %v, want %q", tc.args, err, tc.want)
		}
	}
}
