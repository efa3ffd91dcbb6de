// Ref names a push may not set.

package smarthttp

import "strings"

// whyFunny is the reason a command naming a bad ref is refused, as
// git's receive-pack gives it.
const whyFunny = "funny refname"

// funnyRef reports whether name may not be pushed: it must be under
// refs/ and what follows must pass git's check-ref-format (without
// --allow-onelevel), as receive-pack requires. So no component is empty
// or starts with '.' or ends with ".lock"; there is no "..", "@{",
// control character, space, ~ ^ : ? * [ or \; the name does not end
// with '.' or '/' and is not "@".
func funnyRef(name string) bool {
	rest, ok := strings.CutPrefix(name, "refs/")
	if !ok || rest == "@" || strings.HasSuffix(rest, ".") ||
		strings.Contains(rest, "..") || strings.Contains(rest, "@{") {
		return true
	}
	parts := strings.Split(rest, "/")
	if len(parts) < 2 {
		return true
	}
	for _, p := range parts {
		if p == "" || p[0] == '.' || strings.HasSuffix(p, ".lock") {
			return true
		}
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; c < 0x20 || c == 0x7f || strings.IndexByte(" ~^:?*[\\", c) >= 0 {
			return true
		}
	}
	return false
}
