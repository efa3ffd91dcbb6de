package pkg

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"reflect"
	"strings"
	"testing"

	"cheshire/module"
	"cheshire/nodekey"
)

const testManifest = `# a clock
name clock
version 1.2.0
description 'tells the time' and more
dep tmp
dep ns
mount /clock
lazy on
requires read /node/time
requires write /tmp/clock
requires http 'example.com:443'
`

var testWasm = append([]byte("\x00asm\x01\x00\x00\x00"), bytes.Repeat([]byte("code"), 100)...)

func newKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

type entry struct {
	name string
	data []byte
}

// rezip makes an archive of entries, in order, without checking them.
func rezip(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		w, err := zw.Create(e.name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(e.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func mustRead(t testing.TB, data []byte) *Package {
	t.Helper()
	p, err := Read(data)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return p
}

func signed(t testing.TB, priv ed25519.PrivateKey) []byte {
	t.Helper()
	data, err := Build([]byte(testManifest), testWasm)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	data, err = Sign(data, priv)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return data
}

func TestRoundTrip(t *testing.T) {
	pub, priv := newKey(t)
	data, err := Build([]byte(testManifest), testWasm)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	again, err := Build([]byte(testManifest), testWasm)
	if err != nil || !bytes.Equal(again, data) {
		t.Errorf("Build is not deterministic (err %v)", err)
	}
	p := mustRead(t, data)
	if p.Signature != nil || p.Manifest.Author != "" {
		t.Errorf("built package is signed: author %q, signature %x", p.Manifest.Author, p.Signature)
	}
	if err := p.Verify([]ed25519.PublicKey{pub}); !errors.Is(err, ErrUnsigned) || err.Error() != "package unsigned" {
		t.Errorf("Verify unsigned = %v", err)
	}
	if err := p.CheckWasm(); err != nil {
		t.Errorf("CheckWasm unsigned = %v", err)
	}

	data, err = Sign(data, priv)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	p = mustRead(t, data)
	if err := p.Verify([]ed25519.PublicKey{pub}); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := module.Manifest{
		Name: "clock", Version: "1.2.0", Description: "tells the time and more",
		Author: nodekey.Encode(pub), Deps: []string{"tmp", "ns"}, Mount: "/clock", Lazy: true,
		Requires: []module.Perm{{Kind: "read", Arg: "/node/time"}, {Kind: "write", Arg: "/tmp/clock"}, {Kind: "http", Arg: "example.com:443"}},
	}
	if !reflect.DeepEqual(p.Manifest, want) {
		t.Errorf("manifest:\n got %+v\nwant %+v", p.Manifest, want)
	}
	if p.WasmHash != Hash(testWasm) || !bytes.Equal(p.Wasm, testWasm) {
		t.Errorf("wasm hash %s, want %s", p.WasmHash, Hash(testWasm))
	}
	wantText := testManifest + "author " + nodekey.Encode(pub) + "\nwasm " + Hash(testWasm) + "\n"
	if string(p.ManifestText) != wantText {
		t.Errorf("manifest text:\n%s\nwant\n%s", p.ManifestText, wantText)
	}

	// Re-signing replaces the author: only the new key verifies.
	pub2, priv2 := newKey(t)
	data2, err := Sign(data, priv2)
	if err != nil {
		t.Fatalf("Sign again: %v", err)
	}
	p2 := mustRead(t, data2)
	if strings.Count(string(p2.ManifestText), "author ") != 1 || p2.Manifest.Author != nodekey.Encode(pub2) {
		t.Errorf("re-signed manifest:\n%s", p2.ManifestText)
	}
	if err := p2.Verify([]ed25519.PublicKey{pub, pub2}); err != nil {
		t.Errorf("Verify re-signed: %v", err)
	}
	var ue *UntrustedError
	if err := p2.Verify([]ed25519.PublicKey{pub}); !errors.As(err, &ue) || ue.Author != nodekey.Encode(pub2) {
		t.Errorf("Verify re-signed with old key trusted = %v", err)
	}

	// Rebuilding a signed manifest drops the author line.
	data3, err := Build(p2.ManifestText, testWasm)
	if err != nil {
		t.Fatalf("Build from signed manifest: %v", err)
	}
	if p3 := mustRead(t, data3); p3.Manifest.Author != "" || p3.Signature != nil || !bytes.Equal(p3.ManifestText, []byte(testManifest+"wasm "+Hash(testWasm)+"\n")) {
		t.Errorf("rebuilt manifest:\n%s", p3.ManifestText)
	}
}

func TestBuildReplacesWasmLine(t *testing.T) {
	stale := "name x\nwasm sha256:" + strings.Repeat("0", 64) + "\nversion 1\n"
	data, err := Build([]byte(stale), testWasm)
	if err != nil {
		t.Fatal(err)
	}
	want := "name x\nwasm " + Hash(testWasm) + "\nversion 1\n"
	if p := mustRead(t, data); string(p.ManifestText) != want {
		t.Errorf("manifest:\n%s\nwant\n%s", p.ManifestText, want)
	}
	// No final newline: the wasm line still goes on a line of its own.
	data, err = Build([]byte("name x\nversion 1"), testWasm)
	if err != nil {
		t.Fatal(err)
	}
	if p := mustRead(t, data); string(p.ManifestText) != "name x\nversion 1\nwasm "+Hash(testWasm)+"\n" {
		t.Errorf("manifest:\n%s", p.ManifestText)
	}
}

func TestBuildRefuses(t *testing.T) {
	for _, tc := range []struct {
		manifest string
		wasm     []byte
		want     string
	}{
		{"name x\n", testWasm, "manifest: no version line"},
		{"name x\nversion 1\nbogus 1\n", testWasm, "manifest line 3: unknown key \"bogus\""},
		{"name x\nversion 1\n", []byte("not wasm"), "not a WebAssembly 1 binary"},
		{"name x\nversion 1\n", nil, "not a WebAssembly 1 binary"},
	} {
		_, err := Build([]byte(tc.manifest), tc.wasm)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Build(%q) = %v, want %q", tc.manifest, err, tc.want)
		}
	}
	if _, err := Sign(nil, make([]byte, 3)); err == nil {
		t.Errorf("Sign with a short key succeeded")
	}
}

func TestVerifyRefuses(t *testing.T) {
	pub, priv := newKey(t)
	other, otherPriv := newKey(t)
	trusted := []ed25519.PublicKey{pub}
	good := mustRead(t, signed(t, priv))
	author := nodekey.Encode(pub)

	tamperedManifest := bytes.Replace(good.ManifestText, []byte("version 1.2.0"), []byte("version 1.2.1"), 1)
	evilWasm := append(bytes.Clone(testWasm), "evil"...)
	// A package signed by another key, with its author line changed to
	// the trusted key: the signature is not the author's.
	forged := mustRead(t, signed(t, otherPriv))
	forgedText := bytes.Replace(forged.ManifestText, []byte(nodekey.Encode(other)), []byte(author), 1)

	for _, tc := range []struct {
		name    string
		data    []byte
		trusted []ed25519.PublicKey
		is      error
		msg     string
	}{
		{"unsigned", rezip(t, entry{"manifest", good.ManifestText}, entry{"module.wasm", good.Wasm}),
			trusted, ErrUnsigned, "package unsigned"},
		{"manifest tampered", rezip(t, entry{"manifest", tamperedManifest}, entry{"module.wasm", good.Wasm}, entry{"signature", good.Signature}),
			trusted, ErrBadSignature, "package signature does not verify (tampered, or signed by another key)"},
		{"signed by another key", rezip(t, entry{"manifest", forgedText}, entry{"module.wasm", forged.Wasm}, entry{"signature", forged.Signature}),
			trusted, ErrBadSignature, "package signature does not verify (tampered, or signed by another key)"},
		{"untrusted", signed(t, priv), []ed25519.PublicKey{other},
			ErrUntrusted, "author " + author + " is not trusted by this node"},
		{"nobody trusted", signed(t, priv), nil,
			ErrUntrusted, "author " + author + " is not trusted by this node"},
		{"wasm tampered", rezip(t, entry{"manifest", good.ManifestText}, entry{"module.wasm", evilWasm}, entry{"signature", good.Signature}),
			trusted, ErrWasmMismatch, "module.wasm does not match the manifest's sha256 (tampered)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustRead(t, tc.data)
			err := p.Verify(tc.trusted)
			if !errors.Is(err, tc.is) || err.Error() != tc.msg {
				t.Errorf("Verify = %v, want %q", err, tc.msg)
			}
		})
	}

	// A signature without an author line, and one with a bad key.
	p := *good
	p.Manifest.Author = ""
	if err := p.Verify(trusted); err == nil || !strings.Contains(err.Error(), "no author") {
		t.Errorf("Verify without author = %v", err)
	}
	p.Manifest.Author = "abc"
	if err := p.Verify(trusted); err == nil || !strings.Contains(err.Error(), "package author") {
		t.Errorf("Verify with bad author = %v", err)
	}
	// Sign refuses to bless code that does not match the manifest.
	if _, err := Sign(rezip(t, entry{"manifest", good.ManifestText}, entry{"module.wasm", evilWasm}), priv); !errors.Is(err, ErrWasmMismatch) {
		t.Errorf("Sign tampered = %v", err)
	}
}

func TestReadRefuses(t *testing.T) {
	_, priv := newKey(t)
	good := mustRead(t, signed(t, priv))
	m, w, s := entry{"manifest", good.ManifestText}, entry{"module.wasm", good.Wasm}, entry{"signature", good.Signature}

	// A manifest whose header claims a few bytes but that inflates to
	// more than the bound: archive/zip holds it to its header.
	var deflated bytes.Buffer
	fw, _ := flate.NewWriter(&deflated, flate.BestCompression)
	fw.Write(bytes.Repeat([]byte("#"), MaxManifest+100))
	fw.Close()
	var lying bytes.Buffer
	zw := zip.NewWriter(&lying)
	raw, err := zw.CreateRaw(&zip.FileHeader{Name: "manifest", Method: zip.Deflate,
		UncompressedSize64: 10, CompressedSize64: uint64(deflated.Len())})
	if err != nil {
		t.Fatal(err)
	}
	raw.Write(deflated.Bytes())
	zw.Close()

	// A module.wasm whose header says it is too big (reading it would
	// take long under the race detector).
	var bigWasm bytes.Buffer
	zw = zip.NewWriter(&bigWasm)
	if _, err := zw.CreateRaw(&zip.FileHeader{Name: "module.wasm", Method: zip.Store, UncompressedSize64: MaxWasm + 1}); err != nil {
		t.Fatal(err)
	}
	zw.Close()

	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "not a package: not a zip archive"},
		{"text", []byte("name x\nversion 1\n"), "not a package: not a zip archive"},
		{"no manifest", rezip(t, w, s), "package: no manifest entry"},
		{"no wasm", rezip(t, m, s), "package: no module.wasm entry"},
		{"extra entry", rezip(t, m, w, entry{"README", nil}), `package: unexpected entry "README"`},
		{"directory", rezip(t, m, w, entry{"x/", nil}), `package: unexpected entry "x/"`},
		{"duplicate", rezip(t, m, w, w), `package: duplicate entry "module.wasm"`},
		{"short signature", rezip(t, m, w, entry{"signature", []byte("sig")}), "package: signature is 3 bytes, want 64"},
		{"long signature", rezip(t, m, w, entry{"signature", make([]byte, 65)}), "package: signature is 65 bytes, more than 64"},
		{"bad manifest", rezip(t, entry{"manifest", []byte("name x\nversion 1\nmount\n")}, w), "package: manifest line 3: mount wants one value, has 0"},
		{"no wasm line", rezip(t, entry{"manifest", []byte("name x\nversion 1\n")}, w), "package: manifest has no wasm line"},
		{"big manifest", rezip(t, entry{"manifest", make([]byte, MaxManifest+1)}, w), "package: manifest is 65537 bytes, more than 65536"},
		{"lying manifest", lying.Bytes(), "package: manifest: zip: not a valid zip file"},
		{"big wasm", bigWasm.Bytes(), "package: module.wasm is 67108865 bytes, more than 67108864"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(tc.data)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("Read = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseManifest(t *testing.T) {
	pub, _ := newKey(t)
	key := nodekey.Encode(pub)
	last := strings.IndexByte("ybndrfg8ejkmcpqxot1uwisza345h769", key[len(key)-1])
	noncanon := key[:len(key)-1] + string("ybndrfg8ejkmcpqxot1uwisza345h769"[last|1])
	hash := Hash(testWasm)

	m, h, err := ParseManifest([]byte("  # comment\n\nname a.b_c-9\r\nversion '1 beta'\nauthor " + key + "\nwasm " + hash + "\nlazy off\nmount /\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "a.b_c-9" || m.Version != "1 beta" || m.Author != key || h != hash || m.Lazy || m.Mount != "/" {
		t.Errorf("ParseManifest = %+v, %q", m, h)
	}

	for _, tc := range []struct{ text, want string }{
		{"", "manifest: no name line"},
		{"name x\n", "manifest: no version line"},
		{"version 1\n", "manifest: no name line"},
		{"name x\nversion 1\nname y\n", "manifest line 3: duplicate name (first on line 1)"},
		{"name x\nversion 1\nlazy on\nlazy off\n", "manifest line 4: duplicate lazy (first on line 3)"},
		{"name x\nversion 1\nfrob 2\n", `manifest line 3: unknown key "frob"`},
		{"name X\n", `manifest line 1: name "X": want [a-z0-9][a-z0-9._-]*`},
		{"name -x\n", `manifest line 1: name "-x": want [a-z0-9][a-z0-9._-]*`},
		{"name ''\n", "manifest line 1: empty name"},
		{"name " + strings.Repeat("a", 65) + "\n", "longer than 64 bytes"},
		{"name a b\n", "manifest line 1: name wants one value, has 2"},
		{"name 'x\n", "manifest line 1: unterminated quote"},
		{"name x\x00\n", "manifest line 1: control character"},
		{"name x\nversion ''\n", "manifest line 2: empty version"},
		{"name x\nversion 1\ndescription\n", "manifest line 3: description wants a value"},
		{"name x\nversion 1\nauthor abc\n", "manifest line 3: author: key"},
		{"name x\nversion 1\nauthor " + noncanon + "\n", "not in canonical z-base-32"},
		{"name x\nversion 1\nwasm md5:00\n", "manifest line 3: wasm"},
		{"name x\nversion 1\nwasm " + strings.ToUpper(hash) + "\n", "manifest line 3: wasm"},
		{"name x\nversion 1\nwasm sha256:" + strings.Repeat("g", 64) + "\n", "manifest line 3: wasm"},
		{"name x\nversion 1\ndep y\ndep y\n", "manifest line 4: duplicate dep y (first on line 3)"},
		{"name x\nversion 1\ndep x\n", "manifest line 3: x depends on itself"},
		{"name x\nversion 1\ndep Y\n", `manifest line 3: name "Y"`},
		{"name x\nversion 1\nmount rel\n", `manifest line 3: mount "rel"`},
		{"name x\nversion 1\nmount /a/../b\n", `manifest line 3: mount "/a/../b"`},
		{"name x\nversion 1\nlazy maybe\n", `manifest line 3: lazy "maybe": want on or off`},
		{"name x\nversion 1\nrequires read\n", "manifest line 3: permission"},
		{"name x\nversion 1\nrequires exec /bin\n", "manifest line 3: permission"},
		{"name x\nversion 1\nrequires read rel\n", "manifest line 3: permission"},
		{"name x\n\xff\n", "manifest: not valid UTF-8"},
		{strings.Repeat("#", MaxManifest+1), "manifest: 65537 bytes, more than 65536"},
	} {
		_, _, err := ParseManifest([]byte(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseManifest(%.40q) = %v, want %q", tc.text, err, tc.want)
		}
	}
}

func FuzzRead(f *testing.F) {
	_, priv := newKey(f)
	good := signed(f, priv)
	f.Add(good)
	built, _ := Build([]byte(testManifest), testWasm)
	f.Add(built)
	f.Add([]byte("PK\x03\x04"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Read(data)
		if err != nil {
			return
		}
		_ = p.Verify(nil)
		_ = p.CheckWasm()
		// What Read accepts, ParseManifest accepts and Sign can re-sign
		// (or refuses for the code).
		if _, _, err := ParseManifest(p.ManifestText); err != nil {
			t.Fatalf("Read accepted a manifest ParseManifest refuses: %v", err)
		}
		if s, err := Sign(data, priv); err == nil {
			q, err := Read(s)
			if err != nil {
				t.Fatalf("Read of a signed package: %v", err)
			}
			if err := q.VerifySignature(); err != nil {
				t.Fatalf("a fresh signature does not verify: %v", err)
			}
		}
	})
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(testManifest))
	f.Add([]byte("name x\nversion 1\nwasm " + Hash(testWasm) + "\n"))
	f.Add([]byte("name 'x\n"))
	f.Add([]byte("name x\nversion 1\nrequires http *\ndep a\ndep b\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		m, _, err := ParseManifest(text)
		if err != nil {
			return
		}
		// A manifest that parses builds, and keeps what it said.
		data, err := Build(text, testWasm)
		if err != nil {
			if len(text) > MaxManifest-100 {
				return // the wasm line may not fit
			}
			t.Fatalf("Build of a good manifest: %v", err)
		}
		p, err := Read(data)
		if err != nil {
			t.Fatalf("Read of a built package: %v", err)
		}
		m.Author = ""
		if !reflect.DeepEqual(p.Manifest, m) {
			t.Fatalf("built manifest %+v, want %+v", p.Manifest, m)
		}
	})
}
