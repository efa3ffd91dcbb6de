package plan9

import "testing"

func TestPermString(t *testing.T) {
	tests := []struct {
		mode uint32
		want string
	}{
		{0, "-----------"},
		{0o644, "--rw-r--r--"},
		{0o664, "--rw-rw-r--"},
		{DMDIR | 0o755, "d-rwxr-xr-x"},
		{DMAPPEND | 0o644, "a-rw-r--r--"},
		{DMEXCL | 0o600, "-lrw-------"},
		{DMAPPEND | DMEXCL | 0o622, "alrw--w--w-"},
		{DMAUTH | 0o600, "A-rw-------"},
		{DMDIR | DMAPPEND | 0o777, "d-rwxrwxrwx"},
		{DMTMP | DMMOUNT | 0o444, "--r--r--r--"},
		{0o111, "----x--x--x"},
	}
	for _, tt := range tests {
		got := PermString(tt.mode)
		if got != tt.want {
			t.Errorf("PermString(%#o) = %q, want %q", tt.mode, got, tt.want)
		}
		if len(got) != 11 {
			t.Errorf("PermString(%#o) has %d characters", tt.mode, len(got))
		}
	}
}

func TestConstants(t *testing.T) {
	// The qid type is the top byte of the mode.
	pairs := [][2]uint32{
		{DMDIR, QTDIR}, {DMAPPEND, QTAPPEND}, {DMEXCL, QTEXCL},
		{DMMOUNT, QTMOUNT}, {DMAUTH, QTAUTH}, {DMTMP, QTTMP},
	}
	for _, p := range pairs {
		if p[0]>>24 != p[1] {
			t.Errorf("%#x>>24 = %#x, want %#x", p[0], p[0]>>24, p[1])
		}
	}
}

func TestAllowed(t *testing.T) {
	member := func(user, group string) bool { return user == "glenda" && group == "sys" }
	tests := []struct {
		mode               uint32
		owner, group, user string
		nilMember          bool
		want               uint8
		ok                 bool
	}{
		// Other bits apply to everyone.
		{0o004, "bootes", "sys", "none", false, OREAD, true},
		{0o004, "bootes", "sys", "none", false, OWRITE, false},
		{0o006, "bootes", "sys", "none", false, ORDWR, true},
		{0o001, "bootes", "sys", "none", false, OEXEC, true},
		{0o004, "bootes", "sys", "none", false, OEXEC, false},
		{0o000, "bootes", "sys", "bootes", false, OREAD, false},

		// Owner bits.
		{0o600, "glenda", "sys", "glenda", false, ORDWR, true},
		{0o600, "glenda", "sys", "other", false, OREAD, false},
		{0o400, "glenda", "sys", "glenda", false, OWRITE, false},
		{0o400, "glenda", "sys", "glenda", false, OREAD | OTRUNC, false},
		{0o600, "glenda", "sys", "glenda", false, OREAD | OTRUNC, true},
		{0o700, "glenda", "sys", "glenda", false, OEXEC, true},
		{0o600, "glenda", "sys", "glenda", false, OREAD | ORCLOSE, true},

		// Group bits, by membership or by user == group.
		{0o060, "bootes", "sys", "glenda", false, ORDWR, true},
		{0o060, "bootes", "sys", "glenda", true, ORDWR, false},
		{0o060, "bootes", "sys", "sys", true, ORDWR, true},
		{0o040, "bootes", "sys", "glenda", false, OWRITE, false},
		{0o060, "bootes", "adm", "glenda", false, OREAD, false},

		// Classes combine: read from owner, write from other.
		{0o402, "glenda", "sys", "glenda", false, ORDWR, true},
		{0o042, "bootes", "sys", "glenda", false, ORDWR, true},
		{0o402, "bootes", "sys", "glenda", true, ORDWR, false},

		// Mode bits above the permissions do not matter.
		{DMDIR | 0o755, "glenda", "sys", "none", false, OREAD, true},
		{DMDIR | 0o755, "glenda", "sys", "none", false, OEXEC, true},
	}
	for _, tt := range tests {
		m := member
		if tt.nilMember {
			m = nil
		}
		if got := Allowed(tt.mode, tt.owner, tt.group, tt.user, m, tt.want); got != tt.ok {
			t.Errorf("Allowed(%#o, %q, %q, %q, nilMember=%v, %#x) = %v, want %v",
				tt.mode, tt.owner, tt.group, tt.user, tt.nilMember, tt.want, got, tt.ok)
		}
	}
}
