package styx

import (
	"bufio"
	"io"
)

// directRead is the least a read must still want to skip the buffer
// and go to the connection itself.
const directRead = 16 << 10

// readFull fills p from br, the buffered reader of under, reading under
// directly into p whenever br holds nothing and p still wants at least
// directRead bytes. bufio does that only while p wants more than its
// whole buffer, so a frame's last 64 KiB were copied twice (a TLS
// connection gives a record a Read: 16 KiB into the buffer, then out).
// Nothing past p is read, so br stays at the next frame's start.
func readFull(br *bufio.Reader, under io.Reader, p []byte) error {
	for len(p) > 0 {
		var n int
		var err error
		if br.Buffered() == 0 && len(p) >= directRead {
			n, err = under.Read(p)
		} else {
			n, err = br.Read(p)
		}
		p = p[n:]
		if err != nil && len(p) > 0 {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}
