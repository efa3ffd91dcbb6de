package nodekey_test

import (
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"cheshire/nodekey"
)

func identity(t *testing.T) *nodekey.Identity {
	t.Helper()
	id, err := nodekey.Load(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestMutualTLS: a client that pins the server's key gets through, and
// the server learns the client's key; a client pinning another key, a
// client without a certificate, and plaintext garbage are refused, and
// the listener keeps serving.
func TestMutualTLS(t *testing.T) {
	srvID, cliID, other := identity(t), identity(t), identity(t)
	scfg, err := srvID.ServerTLS()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	keys := make(chan string, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if err := c.(*tls.Conn).Handshake(); err != nil {
					keys <- "refused: " + err.Error()
					return
				}
				k, ok := nodekey.Peer(c)
				if !ok {
					keys <- "no key"
					return
				}
				keys <- nodekey.Encode(k)
				c.Write([]byte("hi"))
			}()
		}
	}()
	dial := func(cfg *tls.Config) error {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 2)
		_, err = io.ReadFull(c, b)
		return err
	}
	good, _ := cliID.ClientTLS(srvID.Public)
	if err := dial(good); err != nil {
		t.Fatalf("pinned dial: %v", err)
	}
	if got := <-keys; got != cliID.ID() {
		t.Errorf("server saw client key %q, want %s", got, cliID.ID())
	}
	wrong, _ := cliID.ClientTLS(other.Public)
	if err := dial(wrong); err == nil || !strings.Contains(err.Error(), "not the expected") {
		t.Errorf("dial pinning another key: %v", err)
	}
	<-keys
	anon := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
	if err := dial(anon); err == nil {
		t.Error("a client without a certificate got through")
	}
	if got := <-keys; !strings.HasPrefix(got, "refused") {
		t.Errorf("server on a client without a certificate: %q", got)
	}
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	raw.Write([]byte("Tversion garbage\r\n\r\n"))
	raw.Close()
	if got := <-keys; !strings.HasPrefix(got, "refused") {
		t.Errorf("garbage: %q", got)
	}
	if err := dial(good); err != nil {
		t.Errorf("after garbage: %v", err)
	}
	<-keys
}
