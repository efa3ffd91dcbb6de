package smarthttp

import (
	"bytes"
	"compress/flate"
	"compress/zlib"
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// objHeader is a pack object's header: type and inflated size.
func objHeader(typ int, size int64) []byte {
	b := []byte{byte(typ<<4) | byte(size&0x0f)}
	for size >>= 4; size > 0; size >>= 7 {
		b[len(b)-1] |= 0x80
		b = append(b, byte(size&0x7f))
	}
	return b
}

// packFile is a pack of count objects with body, and its checksum.
func packFile(count uint32, body ...[]byte) []byte {
	p := []byte("PACK\x00\x00\x00\x02")
	p = binary.BigEndian.AppendUint32(p, count)
	for _, b := range body {
		p = append(p, b...)
	}
	sum := sha1.Sum(p)
	return append(p, sum[:]...)
}

// zeros returns a zlib stream inflating to n MiB of zeros, made without
// compressing them all: a deflate segment of 1 MiB of zeros that ends
// byte-aligned (a sync flush) and refers only to zeros before it is
// repeated n times.
func zeros(n int) []byte {
	var pre, seg bytes.Buffer
	w, _ := flate.NewWriter(&pre, flate.BestCompression)
	w.Write(make([]byte, 32<<10))
	w.Flush()
	w.Reset(&seg)
	w.Write(make([]byte, 32<<10)) // so the segment's window holds zeros
	w.Flush()
	seg.Reset()
	w.Write(make([]byte, 1<<20))
	w.Flush()
	var b bytes.Buffer
	b.Write([]byte{0x78, 0xda})
	b.Write(pre.Bytes())
	for range n {
		b.Write(seg.Bytes())
	}
	b.Write([]byte{0x01, 0x00, 0x00, 0xff, 0xff}) // the final block, stored and empty
	size := int64(32<<10) + int64(n)<<20
	return binary.BigEndian.AppendUint32(b.Bytes(), uint32(size%65521)<<16|1) // adler32 of zeros
}

func TestZeros(t *testing.T) {
	z, err := zlib.NewReader(bytes.NewReader(zeros(3)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(z)
	if err != nil || len(b) != 32<<10+3<<20 || bytes.Count(b, []byte{0}) != len(b) {
		t.Fatalf("zeros(3) inflates to %d bytes, %v", len(b), err)
	}
	if n := len(zeros(1024)); n > 2<<20 {
		t.Fatalf("zeros(1024) is %d bytes", n)
	}
}

// TestPackBombs pushes small packs of objects that inflate (or declare
// they inflate) beyond the limits: each is refused from the headers
// before anything is inflated, the refs stay, and the memory allocated
// serving them stays far below what they would inflate to.
func TestPackBombs(t *testing.T) {
	e := newEnv(t, nil)
	bare := e.bare("r")
	work := filepath.Join(t.TempDir(), "work")
	e.ok("", "init", "-q", work)
	c1 := e.commit(work, "a", "one\n")
	e.ok(work, "push", "-q", e.url("", "r"), "main")
	before, objects := e.refs("r"), listObjects(t, bare)

	gib := zeros(1024) // 1 GiB and 32 KiB of zeros, in about 1 MiB
	cmds := pkts(zero+" "+c1+" refs/heads/x\x00report-status", "")
	delta := append(objHeader(objREFDelta, 8), make([]byte, 20)...) // a delta turning 1 byte into 2 GiB
	var dz bytes.Buffer
	zw := zlib.NewWriter(&dz)
	zw.Write([]byte{0x01, 0x80, 0x80, 0x80, 0x80, 0x08, 0x00, 0x00})
	zw.Close()
	delta = append(delta, dz.Bytes()...)
	for _, tc := range []struct {
		name string
		pack []byte
		want string
	}{
		{"1 GiB of zeros", packFile(1, objHeader(objBlob, 32<<10+1<<30), gib), "unpack git: pack object too large: 1073774592 bytes, limit 536870912\n"},
		{"a 2 GiB object", packFile(1, objHeader(objBlob, 2<<30), gib[:1000]), "unpack git: pack object too large: 2147483648 bytes, limit 536870912\n"},
		{"a lying header", packFile(1, objHeader(objBlob, 100), gib), "unpack git: bad pack: object 0 inflates to other than its 100 bytes\n"},
		{"a delta bomb", packFile(1, delta), "unpack git: pack object too large: 2147483648 bytes, limit 536870912\n"},
		{"a size overflowing", packFile(1, []byte{0xb0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), "unpack git: bad pack: bad object size\n"},
	} {
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		code, resp := e.post("r", svcReceive, append(bytes.Clone(cmds), tc.pack...))
		runtime.ReadMemStats(&m1)
		if code != 200 || !strings.Contains(resp, tc.want) || !strings.Contains(resp, "ng refs/heads/x unpacker error") {
			t.Errorf("%s: %d %q", tc.name, code, resp)
		}
		if got := e.refs("r"); got != before {
			t.Fatalf("%s changed the refs:\n%s", tc.name, got)
		}
		if grew := m1.TotalAlloc - m0.TotalAlloc; grew > 256<<20 {
			t.Errorf("%s: %d MiB allocated", tc.name, grew>>20)
		}
		if got := listObjects(t, bare); got != objects {
			t.Errorf("%s: objects are\n%s\nwere\n%s", tc.name, got, objects)
		}
	}
}

// listObjects lists the files of the object store of the bare
// repository dir.
func listObjects(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(filepath.Join(dir, "objects"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b.WriteString(p + "\n")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestPackLimits lowers the limits: a push by the git command of a file
// over MaxObject fails with the reason in git's output, and a pack of
// objects each within MaxObject but over MaxInflated together is
// refused.
func TestPackLimits(t *testing.T) {
	e := newEnv(t, nil, func(o *Options) { o.MaxObject = 64 << 10; o.MaxInflated = 256 << 10 })
	e.bare("r")
	work := filepath.Join(t.TempDir(), "work")
	e.ok("", "init", "-q", work)
	e.commit(work, "a", "one\n")
	e.ok(work, "push", "-q", e.url("", "r"), "main")
	before := e.refs("r")

	big := make([]byte, 100<<10)
	rand.Read(big)
	if err := os.WriteFile(filepath.Join(work, "big"), big, 0644); err != nil {
		t.Fatal(err)
	}
	e.ok(work, "add", "big")
	e.ok(work, "commit", "-q", "-m", "big")
	e.fails("pack object too large: 102400 bytes, limit 65536", work, "push", e.url("", "r"), "main")
	if got := e.refs("r"); got != before {
		t.Fatalf("refused push changed the refs:\n%s", got)
	}

	z := zeros(0) // 32 KiB
	obj := append(objHeader(objBlob, 32<<10), z...)
	var objs [][]byte
	for range 9 {
		objs = append(objs, obj)
	}
	code, resp := e.post("r", svcReceive, append(pkts(zero+" "+zero[:39]+"1 refs/heads/x\x00report-status", ""), packFile(9, objs...)...))
	if code != 200 || !strings.Contains(resp, "unpack git: pack too large: inflates to over 262144 bytes\n") {
		t.Errorf("9 objects of 32 KiB: %d %q", code, resp)
	}
	if got := e.refs("r"); got != before {
		t.Fatalf("refused push changed the refs:\n%s", got)
	}
}
