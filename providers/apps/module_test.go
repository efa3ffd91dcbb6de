package apps

import (
	"strings"
	"testing"

	"cheshire/module"
)

func TestModuleConfig(t *testing.T) {
	t.Parallel()
	m := NewModule(nil, "test")
	for _, c := range []struct{ text, want string }{
		{"", ""},
		{"ice-servers stun:stun.example.net:3478 stun:[::1]:3478\nturn turn:turn.example.net:3478?transport=udp alice s3cret\n", ""},
		{"ice-servers turn:x:1\n", "bad stun server"},
		{"turn turn:x:1 alice\n", "want turn URL USER CREDENTIAL"},
		{"turn stun:x:1 alice pw\n", "bad turn server"},
		{"fps 30\n", ""},
		{"fps 61\n", "want fps N"},
		{"fps\n", "want fps N"},
		{"playout-delay 0 0\n", ""},
		{"playout-delay 0 100\n", ""},
		{"playout-delay off\n", ""},
		{"playout-delay 20 10\n", "want playout-delay MIN MAX"},
		{"playout-delay 5 10\n", "want playout-delay MIN MAX"},
		{"playout-delay 0 50000\n", "want playout-delay MIN MAX"},
		{"playout-delay 0\n", "want playout-delay MIN MAX"},
		{"playout-delay on\n", "want playout-delay MIN MAX"},
		{"frames 60\n", "unknown setting"},
	} {
		cfg, err := module.ParseConfig(c.text)
		if err != nil {
			t.Fatal(err)
		}
		err = m.CheckConfig(cfg)
		if (c.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.text, err, c.want)
		}
	}
}
