package dns

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"cheshire/module"

	"github.com/miekg/dns"
)

func TestModuleConfig(t *testing.T) {
	m := NewModule(nil, "test")
	if mf := m.Manifest(); mf.Name != "dns" || mf.Mount != "/dns" {
		t.Errorf("manifest %+v", mf)
	}
	for _, c := range []struct {
		text string
		ok   bool
	}{
		{"", true},
		{"listen 127.0.0.1:5353", true},
		{"listen udp!127.0.0.1!5353\nlisten tcp!127.0.0.1!5353", true},
		{"listen tcp!*!5353", true},
		{"listen unix!/tmp/x", false},
		{"listen 127.0.0.1", false},
		{"listen", false},
		{"port 53", false},
		{"rrl off", true},
		{"rrl 5", true},
		{"rrl 5 slip 0 window 30", true},
		{"rrl 5 slip", false},
		{"rrl 0", false},
		{"rrl fast", false},
		{"rrl 5 burst 3", false},
		{"rrl", false},
	} {
		cfg, err := module.ParseConfig(c.text)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.CheckConfig(cfg); (err == nil) != c.ok {
			t.Errorf("%q: %v", c.text, err)
		}
	}
	cfg, _ := module.ParseConfig("")
	st, _ := parseConfig(cfg, nil)
	if len(st.listen) != 2 || st.listen[0].addr != "127.0.0.1:5353" {
		t.Errorf("default %v", st.listen)
	}
	if st.rrl != (RRL{Rate: DefaultRRLRate, Slip: DefaultRRLSlip, Window: DefaultRRLWindow}) {
		t.Errorf("default rrl %+v", st.rrl)
	}
	cfg, _ = module.ParseConfig("rrl 7 window 3")
	if st, _ := parseConfig(cfg, nil); st.rrl != (RRL{Rate: 7, Slip: DefaultRRLSlip, Window: 3}) {
		t.Errorf("rrl 7 window 3: %+v", st.rrl)
	}
}

// TestModuleStartStop starts the module on free ports, queries it, stops
// it and checks that the ports are free again.
func TestModuleStartStop(t *testing.T) {
	s, err := New(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddZone("example.test"); err != nil {
		t.Fatal(err)
	}
	m := NewModule(s, "test")
	cfg, _ := module.ParseConfig("listen udp!127.0.0.1!0\nlisten tcp!127.0.0.1!0\n")
	ctx := context.Background()
	inst, err := m.Start(ctx, module.Env{Name: "dns", Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	addrs := inst.(*instance).addrs
	if len(addrs) != 2 {
		t.Fatalf("addrs %v", addrs)
	}
	for _, a := range addrs {
		network, addr, _ := strings.Cut(a, "!")
		q := new(dns.Msg)
		q.SetQuestion("example.test.", dns.TypeSOA)
		r, _, err := (&dns.Client{Net: network, Timeout: 2 * time.Second}).Exchange(q, addr)
		if err != nil || len(r.Answer) != 1 {
			t.Errorf("%s: %v %v", a, r, err)
		}
	}
	if f, err := inst.Attach(ctx, "glenda", "", nil); err != nil {
		t.Error(err)
	} else {
		f.Clunk()
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := inst.Stop(sctx); err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		network, addr, _ := strings.Cut(a, "!")
		if network == "udp" {
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				t.Errorf("after stop: %v", err)
			} else {
				pc.Close()
			}
			continue
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("after stop: %v", err)
		} else {
			l.Close()
		}
	}
}

func TestListenAndServe(t *testing.T) {
	s, err := New(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe(ctx, "127.0.0.1:0", "127.0.0.1:0") }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ListenAndServe: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ListenAndServe did not return")
	}
	if err := s.ListenAndServe(context.Background(), "256.0.0.1:1", ""); err == nil {
		t.Error("bad address accepted")
	}
}

// TestParseErrorWords: a zone's bad field reads in words.
func TestParseErrorWords(t *testing.T) {
	t.Parallel()
	for text, want := range map[string]string{
		"www 60 IN A notanip\n":    `dns: line 1: bad A record: "notanip" is not an IPv4 address`,
		"www 60 IN AAAA 1.2.3.4\n": `dns: line 1: bad AAAA record: "1.2.3.4" is not an IPv6 address`,
	} {
		_, err := parseZone("example.org.", text)
		if err == nil || err.Error() != want {
			t.Errorf("parseZone(%q) = %v, want %s", text, err, want)
		}
	}
}
