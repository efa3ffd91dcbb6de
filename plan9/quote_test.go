package plan9

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestTokenize(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{"", nil, false},
		{" \t\r\n ", nil, false},
		{"a", []string{"a"}, false},
		{"  bind  -b\t/a\n/b  ", []string{"bind", "-b", "/a", "/b"}, false},
		{"a\r\nb", []string{"a", "b"}, false},
		{"'a b'", []string{"a b"}, false},
		{"a'b c'd", []string{"ab cd"}, false},
		{"''", []string{""}, false},
		{"'' ''", []string{"", ""}, false},
		{"x '' y", []string{"x", "", "y"}, false},
		{"'it''s'", []string{"it's"}, false},
		{"''''", []string{"'"}, false},
		{"a''b", []string{"ab"}, false},
		{"'#s' $x `y` a\\b", []string{"#s", "$x", "`y`", "a\\b"}, false},
		{"'multi\nline'", []string{"multi\nline"}, false},
		{"héllo 'wörld'", []string{"héllo", "wörld"}, false},
		{"'", nil, true},
		{"a 'b", nil, true},
		{"'''", nil, true},
		{"a'b''", nil, true},
	}
	for _, tt := range tests {
		got, err := Tokenize(tt.in)
		if tt.err {
			if err == nil || err.Error() != "unterminated quote" {
				t.Errorf("Tokenize(%q) = %q, %v; want error \"unterminated quote\"", tt.in, got, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("Tokenize(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestQuote(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", "''"},
		{"abc", "abc"},
		{"/usr/glenda/lib", "/usr/glenda/lib"},
		{"tcp!h!564", "tcp!h!564"},
		{"-b", "-b"},
		{"héllo", "héllo"},
		{"a b", "'a b'"},
		{"a\tb", "'a\tb'"},
		{"a\nb", "'a\nb'"},
		{"a\rb", "'a\rb'"},
		{"a\x00b", "'a\x00b'"},
		{"it's", "'it''s'"},
		{"'", "''''"},
		{"#s", "'#s'"},
		{"a\\b", "'a\\b'"},
	}
	for _, tt := range tests {
		if got := Quote(tt.in); got != tt.want {
			t.Errorf("Quote(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	for _, c := range "#;|&()<>=$`^{}*?[]" {
		s := "a" + string(c) + "b"
		if got, want := Quote(s), "'"+s+"'"; got != want {
			t.Errorf("Quote(%q) = %q, want %q", s, got, want)
		}
	}
}

func TestJoin(t *testing.T) {
	tests := []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{""}, "''"},
		{[]string{"mount", "-c", "a b", "it's"}, "mount -c 'a b' 'it''s'"},
	}
	for _, tt := range tests {
		if got := Join(tt.in); got != tt.want {
			t.Errorf("Join(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestJoinTokenize checks Tokenize(Join(w)) == w for random words
// drawn from an alphabet rich in separators and quotes.
func TestJoinTokenize(t *testing.T) {
	const alphabet = "ab '\t\n\r#;|&()<>=$`^{}*?[]!\\\x00é"
	chars := []rune(alphabet)
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		words := make([]string, r.IntN(6))
		for i := range words {
			w := make([]rune, r.IntN(6))
			for j := range w {
				w[j] = chars[r.IntN(len(chars))]
			}
			words[i] = string(w)
		}
		s := Join(words)
		got, err := Tokenize(s)
		if err != nil || !slices.Equal(got, words) {
			t.Fatalf("Tokenize(Join(%q)) = Tokenize(%q) = %q, %v", words, s, got, err)
		}
	}
}

func FuzzTokenize(f *testing.F) {
	for _, s := range []string{
		"",
		"bind -b /a /b",
		"a'b c'd",
		"''",
		"'it''s'",
		"'",
		"a 'b",
		"x\t\r\ny",
		"'#s' \\ \x00 é",
		"''''''",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		words, err := Tokenize(s)
		if err != nil {
			return
		}
		j := Join(words)
		again, err := Tokenize(j)
		if err != nil || !slices.Equal(again, words) {
			t.Fatalf("Tokenize(%q) = %q; Tokenize(Join) = Tokenize(%q) = %q, %v", s, words, j, again, err)
		}
	})
}
