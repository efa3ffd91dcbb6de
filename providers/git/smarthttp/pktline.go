package smarthttp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// The pkt-line framing of git's wire protocol (gitprotocol-common(5)):
// four hex digits give the length of the line including themselves,
// "0000" is a flush-pkt, and a payload holds at most maxPayload bytes.
const (
	maxPkt     = 65520
	maxPayload = maxPkt - 4
)

var (
	errPktLength    = errors.New("git: bad pkt-line length")
	errPktTruncated = errors.New("git: truncated request")
)

// pktReader reads pkt-lines from a buffered stream. After the last
// pkt-line it leaves r at the first byte that follows, so a pack that
// comes after the commands of a push can be read from r.
type pktReader struct {
	r     *bufio.Reader
	delim bool // the last special packet was a delim-pkt ("0001")
	buf   [maxPayload]byte
}

func newPktReader(r io.Reader) *pktReader {
	return &pktReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the payload of the next pkt-line, which is valid until
// the following call, and flush true for a flush-pkt ("0000") or any
// other special packet ("0001", "0002"), whose payload is nil. At the
// end of the stream before any byte of a pkt-line it returns io.EOF; a
// stream that ends inside one gives errPktTruncated.
func (p *pktReader) next() (line []byte, flush bool, err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(p.r, hdr[:]); err != nil {
		if err == io.EOF {
			return nil, false, io.EOF
		}
		return nil, false, truncated(err)
	}
	n := 0
	for _, c := range hdr {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return nil, false, errPktLength
		}
		n = n<<4 | int(d)
	}
	switch {
	case n < 4:
		p.delim = n == 1
		return nil, true, nil
	case n == 4 || n > maxPkt:
		return nil, false, errPktLength
	}
	line = p.buf[:n-4]
	if _, err := io.ReadFull(p.r, line); err != nil {
		return nil, false, truncated(err)
	}
	return line, false, nil
}

// truncated maps the end of a stream inside a pkt-line to
// errPktTruncated and passes other read errors (a body over its limit,
// a broken gzip stream) through.
func truncated(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errPktTruncated
	}
	return err
}

// trimLF drops the line feed that ends most text pkt-lines.
func trimLF(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		return b[:n-1]
	}
	return b
}

// pktAppend appends to b the pkt-line holding s.
func pktAppend(b []byte, s string) []byte {
	return append(fmt.Appendf(b, "%04x", len(s)+4), s...)
}

// pktf writes one pkt-line holding the formatted text.
func pktf(w io.Writer, format string, args ...any) error {
	_, err := w.Write(pktAppend(nil, fmt.Sprintf(format, args...)))
	return err
}

// delimPkt writes a delim-pkt, which separates the sections of a
// version 2 message.
func delimPkt(w io.Writer) error {
	_, err := io.WriteString(w, "0001")
	return err
}

// flushPkt writes a flush-pkt.
func flushPkt(w io.Writer) error {
	_, err := io.WriteString(w, "0000")
	return err
}
