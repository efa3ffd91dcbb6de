package abi

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func sampleRequests() []Request {
	return []Request{
		{},
		{Op: OpStat, Path: "/", User: "glenda"},
		{Op: OpOpen, Path: "/keys/a", Mode: OREAD | OTRUNC, User: "u"},
		{Op: OpCreate, Path: "/keys/new", Mode: 0644 | DMDIR, Count: ORDWR},
		{Op: OpRead, Handle: 7, Offset: 1<<63 + 5, Count: 8192},
		{Op: OpWrite, Handle: 0xffffffff, Offset: 3, Data: []byte("hello\x00world")},
		{Op: OpHTTP, Path: "https://example.com:443/x?y=1", User: "POST", Data: bytes.Repeat([]byte{0xff}, 1000)},
	}
}

func sampleResponses() []Response {
	return []Response{
		{},
		{Err: "file not found"},
		{Handle: 3},
		{Count: 5, Data: []byte("abcde")},
		{Infos: []Info{{Name: "a", Mode: 0644, Size: 10, Mtime: 1700000000, Version: 3}}},
		{Handle: 1, Infos: []Info{{Name: "d", Mode: DMDIR | 0755}, {Name: "", Size: 1<<64 - 1}, {Name: "ünï"}}},
	}
}

// normalize maps empty slices to nil, as decoding does.
func normReq(r Request) Request {
	if len(r.Data) == 0 {
		r.Data = nil
	}
	return r
}

func normResp(r Response) Response {
	if len(r.Data) == 0 {
		r.Data = nil
	}
	if len(r.Infos) == 0 {
		r.Infos = nil
	}
	return r
}

func TestRequestRoundTrip(t *testing.T) {
	for _, r := range sampleRequests() {
		b := r.Append(nil)
		if len(b) != r.Size() {
			t.Errorf("%+v: size %d, encoded %d", r, r.Size(), len(b))
		}
		var got Request
		if err := got.Unmarshal(b); err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		if !reflect.DeepEqual(got, normReq(r)) {
			t.Errorf("round trip: got %+v, want %+v", got, r)
		}
		// Every proper prefix is short; a byte more is trailing.
		for i := range len(b) {
			if err := got.Unmarshal(b[:i]); !errors.Is(err, ErrShort) {
				t.Fatalf("%+v prefix %d: err %v, want ErrShort", r, i, err)
			}
		}
		if err := got.Unmarshal(append(b, 0)); !errors.Is(err, ErrTrailing) {
			t.Errorf("trailing: err %v", err)
		}
	}
}

func TestResponseRoundTrip(t *testing.T) {
	for _, r := range sampleResponses() {
		b := r.Append(nil)
		if len(b) != r.Size() {
			t.Errorf("%+v: size %d, encoded %d", r, r.Size(), len(b))
		}
		var got Response
		if err := got.Unmarshal(b); err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		if !reflect.DeepEqual(got, normResp(r)) {
			t.Errorf("round trip: got %+v, want %+v", got, r)
		}
		for i := range len(b) {
			if err := got.Unmarshal(b[:i]); !errors.Is(err, ErrShort) {
				t.Fatalf("%+v prefix %d: err %v, want ErrShort", r, i, err)
			}
		}
		if err := got.Unmarshal(append(b, 1)); !errors.Is(err, ErrTrailing) {
			t.Errorf("trailing: err %v", err)
		}
	}
}

func TestHugeCounts(t *testing.T) {
	// A response claiming 2^32-1 infos, or a string of 4 GiB, must fail
	// without allocating for them.
	b := (&Response{}).Append(nil)
	b[len(b)-4], b[len(b)-3], b[len(b)-2], b[len(b)-1] = 0xff, 0xff, 0xff, 0xff
	var r Response
	if err := r.Unmarshal(b); !errors.Is(err, ErrShort) {
		t.Errorf("huge info count: %v", err)
	}
	q := (&Request{Path: "x"}).Append(nil)
	q[requestFixed-12] = 0xff
	q[requestFixed-11] = 0xff
	q[requestFixed-10] = 0xff
	q[requestFixed-9] = 0xff
	var rq Request
	if err := rq.Unmarshal(q); !errors.Is(err, ErrShort) {
		t.Errorf("huge string: %v", err)
	}
	if allocs := testing.AllocsPerRun(10, func() { _ = r.Unmarshal(b) }); allocs > 0 {
		t.Errorf("decoding a huge count allocates %v times", allocs)
	}
}

func TestFailedDecodeKeepsValue(t *testing.T) {
	r := Request{Op: OpRead, Path: "/x"}
	if err := r.Unmarshal([]byte{1, 2}); err == nil {
		t.Fatal("short message decoded")
	}
	if r.Op != OpRead || r.Path != "/x" {
		t.Errorf("failed decode changed the request: %+v", r)
	}
}

func TestStrings(t *testing.T) {
	var s Strings
	r := Request{Op: OpStat, Path: "/a/b", User: "glenda"}
	b := r.Append(nil)
	var x, y Request
	if err := x.UnmarshalWith(b, &s); err != nil || x.Path != r.Path || x.User != r.User {
		t.Fatalf("decoded %+v, %v", x, err)
	}
	if allocs := testing.AllocsPerRun(100, func() { y.UnmarshalWith(b, &s) }); allocs != 0 {
		t.Errorf("decoding known strings allocates %v times", allocs)
	}
	for i := range MaxStrings + 10 {
		s.String([]byte{byte(i), byte(i >> 8)})
	}
	if len(s.m) > MaxStrings {
		t.Errorf("holds %d strings", len(s.m))
	}
	long := make([]byte, 300)
	if s.String(long) != string(long) || s.String(nil) != "" {
		t.Error("long or empty string")
	}
}

func TestOpName(t *testing.T) {
	for op, want := range map[uint8]string{OpStat: "stat", OpRemove: "remove", OpNSRead: "nsread", OpHTTP: "http", 0: "unknown", 200: "unknown"} {
		if got := OpName(op); got != want {
			t.Errorf("OpName(%d) = %q, want %q", op, got, want)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, r := range sampleRequests() {
		f.Add(r.Append(nil))
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Request
		if err := r.Unmarshal(b); err != nil {
			return
		}
		if r.Size() != len(b) {
			t.Fatalf("decoded %d bytes, size %d", len(b), r.Size())
		}
		enc := r.Append(nil)
		if !bytes.Equal(enc, b) {
			t.Fatalf("re-encoding differs:\n% x\n% x", enc, b)
		}
	})
}

func FuzzDecodeResponse(f *testing.F) {
	for _, r := range sampleResponses() {
		f.Add(r.Append(nil))
	}
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, 24))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Response
		if err := r.Unmarshal(b); err != nil {
			return
		}
		if r.Size() != len(b) {
			t.Fatalf("decoded %d bytes, size %d", len(b), r.Size())
		}
		enc := r.Append(nil)
		if !bytes.Equal(enc, b) {
			t.Fatalf("re-encoding differs:\n% x\n% x", enc, b)
		}
	})
}
