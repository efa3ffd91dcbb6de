package plan9

import "strings"

// errUnterminatedQuote is returned by Tokenize for an unclosed quote.
const errUnterminatedQuote = Error("unterminated quote")

// isSpace reports whether c separates words for Tokenize.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

// Tokenize splits s into words the way rc(1) and tokenize(2) do.
// Words are separated by spaces, tabs, newlines and carriage returns.
// Any part of a word may be enclosed in single quotes, which protect
// separators and other quotes; inside quotes, two quotes in a row
// stand for one. Quoted and unquoted text may abut, so a'b c'd is the
// single word "ab cd", and a pair of quotes with nothing between them
// is an empty word. There are no other escapes. An unclosed quote is
// an error.
func Tokenize(s string) ([]string, error) {
	var (
		words  []string
		w      strings.Builder
		inWord bool
	)
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case isSpace(c):
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
			i++
		case c == '\'':
			inWord = true
			i++
			for {
				if i >= len(s) {
					return nil, errUnterminatedQuote
				}
				if s[i] == '\'' {
					if i+1 < len(s) && s[i+1] == '\'' {
						w.WriteByte('\'')
						i += 2
						continue
					}
					i++
					break
				}
				w.WriteByte(s[i])
				i++
			}
		default:
			inWord = true
			w.WriteByte(c)
			i++
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// needsQuote reports whether c must be quoted for rc(1). It follows
// Plan 9's needsrcquote: control characters, space and
// `^#*[]=|\?${}()'<>&;.
func needsQuote(c byte) bool {
	return c <= ' ' || c == 0x7f || strings.IndexByte("`^#*[]=|\\?${}()'<>&;", c) >= 0
}

func hasQuotable(s string) bool {
	for i := 0; i < len(s); i++ {
		if needsQuote(s[i]) {
			return true
		}
	}
	return false
}

// Quote returns s quoted so that rc(1) and Tokenize read it back as
// one word. s is returned unchanged when it is not empty and has no
// character that needs quoting; otherwise it is enclosed in single
// quotes with each quote inside doubled. The empty string becomes a
// pair of quotes.
func Quote(s string) string {
	if s != "" && !hasQuotable(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// Join quotes each word with Quote and joins them with single spaces,
// so that Tokenize(Join(words)) gives words back.
func Join(words []string) string {
	var b strings.Builder
	for i, w := range words {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(Quote(w))
	}
	return b.String()
}
