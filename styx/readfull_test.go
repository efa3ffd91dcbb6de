package styx

import (
	"bufio"
	"bytes"
	"io"
	"testing"
	"testing/iotest"
)

// recordReader gives at most 16 KiB a Read, as a TLS connection gives a
// record, and counts the bytes it hands to reads of the buffer's size.
type recordReader struct {
	r        io.Reader
	buffered int // bytes read into a bufio buffer (a Read of exactly bufSize)
}

const bufSize = 64 << 10

func (rr *recordReader) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p[:min(len(p), 16<<10)])
	if len(p) == bufSize {
		rr.buffered += n
	}
	return n, err
}

// TestReadFull: frames of 256 KiB read through a buffered reader arrive
// whole and in order, the bytes after each stay for the next, and only
// the frames' first bytes pass through the buffer.
func TestReadFull(t *testing.T) {
	t.Parallel()
	const frame, frames = 256 << 10, 8
	var stream bytes.Buffer
	for i := range frames {
		stream.Write([]byte{byte(i), byte(i), byte(i)}) // a header
		stream.Write(bytes.Repeat([]byte{byte(i + 100)}, frame))
	}
	rr := &recordReader{r: bytes.NewReader(stream.Bytes())}
	br := bufio.NewReaderSize(rr, bufSize)
	body := make([]byte, frame)
	for i := range frames {
		var hdr [3]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			t.Fatal(err)
		}
		if hdr != [3]byte{byte(i), byte(i), byte(i)} {
			t.Fatalf("frame %d: header %v", i, hdr)
		}
		if err := readFull(br, rr, body); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(body, bytes.Repeat([]byte{byte(i + 100)}, frame)) {
			t.Fatalf("frame %d: body differs", i)
		}
	}
	// A header's read fills the buffer with a record, and so may a
	// frame's tail under 16 KiB; the rest goes straight into the frame.
	// io.ReadFull through bufio passes the last 64 KiB of each frame
	// through the buffer as well.
	if max := frames * 2 * (16 << 10); rr.buffered > max {
		t.Errorf("%d bytes passed through the buffer, want at most %d", rr.buffered, max)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the last frame: %v, want EOF", err)
	}
}

// TestReadFullShort: a stream that ends inside p is an unexpected EOF,
// and a reader's error comes back.
func TestReadFullShort(t *testing.T) {
	t.Parallel()
	rr := &recordReader{r: bytes.NewReader(make([]byte, 40<<10))}
	br := bufio.NewReaderSize(rr, bufSize)
	if err := readFull(br, rr, make([]byte, 100<<10)); err != io.ErrUnexpectedEOF {
		t.Errorf("short stream: %v, want %v", err, io.ErrUnexpectedEOF)
	}
	bad := iotest.ErrReader(io.ErrClosedPipe)
	if err := readFull(bufio.NewReader(bad), bad, make([]byte, 100<<10)); err != io.ErrClosedPipe {
		t.Errorf("failing reader: %v, want %v", err, io.ErrClosedPipe)
	}
}
