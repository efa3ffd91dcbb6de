package tests

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"cheshire/plan9"
)

// An errString is an error text the tree can produce, as written in its
// source: the literal of an errors.New, a plan9.Error, or the format of
// an fmt.Errorf with its verbs rendered.
type errString struct {
	text string // rendered
	pos  string // file:line
	wrap bool   // it wraps a cause (%w, or %v of an error) that decides its errno
}

// verbRE matches an fmt verb with its flags, width and precision.
var verbRE = regexp.MustCompile(`%[-+# 0]*[0-9*]*(\.[0-9*]+)?[a-zA-Z%]`)

// renderFormat renders an fmt.Errorf format the way it reads at run
// time: each verb becomes a plain word, "%w" (and a %v of an error)
// the cause, which is unknown text that alone would map to EIO.
func renderFormat(format string, args []ast.Expr) (string, bool) {
	wrap := false
	i := 0
	s := verbRE.ReplaceAllStringFunc(format, func(v string) string {
		if v == "%%" {
			return "%"
		}
		var arg ast.Expr
		if i < len(args) {
			arg = args[i]
		}
		i++
		switch v[len(v)-1] {
		case 'w':
			wrap = true
			return "zzcause"
		case 'v', 's':
			if isErrorExpr(arg) {
				wrap = true
				return "zzcause"
			}
			return "x1"
		case 'q':
			return `"x1"`
		default:
			return "7"
		}
	})
	return s, wrap
}

// isErrorExpr reports whether e looks like an error value: a name
// ending in err or Err, or a call of .Error().
func isErrorExpr(e ast.Expr) bool {
	switch x := e.(type) {
	case *ast.Ident:
		n := strings.ToLower(x.Name)
		return n == "err" || strings.HasSuffix(n, "err") || strings.HasPrefix(n, "err")
	case *ast.SelectorExpr:
		n := strings.ToLower(x.Sel.Name)
		return n == "err" || strings.HasSuffix(n, "err")
	case *ast.CallExpr:
		if sel, ok := x.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Error" {
			return true
		}
		for _, a := range x.Args { // text made of an error: oneLine(plan9.Errstr(err))
			if isErrorExpr(a) {
				return true
			}
		}
	}
	return false
}

// collectErrStrings parses every non-test Go file of the module under
// root and returns the error texts it can produce.
func collectErrStrings(t *testing.T, root string) []errString {
	t.Helper()
	var out []errString
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "tests", "testdata", ".git", ".ci":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		inPlan9 := f.Name.Name == "plan9"
		lit := func(e ast.Expr) (string, bool) {
			b, ok := e.(*ast.BasicLit)
			if !ok || b.Kind != token.STRING {
				return "", false
			}
			s, err := strconv.Unquote(b.Value)
			return s, err == nil
		}
		add := func(n ast.Node, text string, wrap bool) {
			p := fset.Position(n.Pos())
			out = append(out, errString{text: text, pos: rel + ":" + strconv.Itoa(p.Line), wrap: wrap})
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.ValueSpec: // const ErrX Error = "…"
				if isPlan9ErrorType(x.Type, inPlan9) {
					for _, v := range x.Values {
						if s, ok := lit(v); ok {
							add(v, s, false)
						}
					}
				}
			case *ast.CallExpr:
				if len(x.Args) == 0 {
					return true
				}
				switch fn := x.Fun.(type) {
				case *ast.SelectorExpr:
					pkg, _ := fn.X.(*ast.Ident)
					switch {
					case pkg != nil && pkg.Name == "errors" && fn.Sel.Name == "New",
						pkg != nil && pkg.Name == "plan9" && fn.Sel.Name == "Error":
						if s, ok := lit(x.Args[0]); ok {
							add(x, s, false)
						}
					case pkg != nil && pkg.Name == "fmt" && fn.Sel.Name == "Errorf":
						if s, ok := lit(x.Args[0]); ok {
							r, wrap := renderFormat(s, x.Args[1:])
							add(x, r, wrap)
						}
					case fn.Sel.Name == "Errorf" && pkg != nil && pkg.Name == "e": // module.ConfigEntry.Errorf
						if s, ok := lit(x.Args[0]); ok {
							r, wrap := renderFormat(s, x.Args[1:])
							add(x, "config line 7 (key): "+r, wrap)
						}
					}
				case *ast.Ident:
					if inPlan9 && fn.Name == "Error" {
						if s, ok := lit(x.Args[0]); ok {
							add(x, s, false)
						}
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func isPlan9ErrorType(e ast.Expr, inPlan9 bool) bool {
	switch x := e.(type) {
	case *ast.Ident:
		return inPlan9 && x.Name == "Error"
	case *ast.SelectorExpr:
		pkg, _ := x.X.(*ast.Ident)
		return pkg != nil && pkg.Name == "plan9" && x.Sel.Name == "Error"
	}
	return false
}

// ioErrors are the texts that truly are I/O errors, or failures inside
// the node or a module that no errno describes better; each maps to EIO
// on purpose.
var ioErrors = map[string]string{
	"i/o error":                      "the standard text",
	"event overflow":                 "a log reader fell behind and lost lines",
	"panic: x1":                      "a module's code panicked",
	"module x1 trapped: exit code 7": "a wasm module crashed",
	"synth: add of nil node":         "a provider's programming error",
	"synth: clone made no session":   "a provider's programming error",
	"x1 x1: x1":                      "dns rrError: the detail decides (a Sprintf of the caller's format)",
}

// Directories whose texts never reach a 9P client: what cmd prints on a
// terminal, ACME's problem documents over HTTP, and the test and bench
// harnesses. cmd/cheshire/host.go serves the host export over 9P, so it
// is judged.
var notNinep = []string{"cmd/", "providers/ca/acme/", "synth/synthtest/"}

func judged(pos string) bool {
	if strings.HasPrefix(pos, "cmd/cheshire/host.go:") {
		return true
	}
	for _, d := range notNinep {
		if strings.HasPrefix(pos, d) {
			return false
		}
	}
	return true
}

// TestErrorStringsMapToErrno checks, for every error text the tree can
// produce, that plan9.Errno (what a FUSE or v9fs user sees) maps it to a
// sensible errno: none falls to EIO unless it truly is an I/O error,
// listed in ioErrors. Texts that wrap a cause take the cause's errno
// when their own words carry none, so they are judged with an unknown
// cause only when their words do name one.
func TestErrorStringsMapToErrno(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	all := collectErrStrings(t, root)
	if len(all) < 300 {
		t.Fatalf("collected only %d error strings from %s: the collector is broken", len(all), root)
	}
	var bad []string
	seen := map[string]bool{}
	usedIO := map[string]bool{}
	counts := map[syscall.Errno]int{}
	for _, e := range all {
		if len(e.text) > plan9.ErrMax-1 && !e.wrap {
			t.Errorf("%s: %q is longer than ERRMAX", e.pos, e.text)
		}
		errno := plan9.Errno(e.text)
		counts[errno]++
		if errno != syscall.EIO {
			continue
		}
		if e.wrap || !judged(e.pos) {
			continue // the cause decides, or no 9P client sees it
		}
		if _, ok := ioErrors[e.text]; ok {
			usedIO[e.text] = true
			continue
		}
		if !seen[e.text] {
			seen[e.text] = true
			bad = append(bad, e.pos+": "+strconv.Quote(e.text))
		}
	}
	for text, why := range ioErrors {
		if !usedIO[text] {
			t.Errorf("ioErrors lists %q (%s), which the tree no longer produces or which no longer maps to EIO", text, why)
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Errorf("%d error strings map to EIO (Input/output error) through plan9.Errno; give each a known text or wrap a sentinel:\n%s",
			len(bad), strings.Join(bad, "\n"))
	}
	if os.Getenv("ERRSTRINGS_VERBOSE") != "" {
		for e, n := range counts {
			t.Logf("%-30s %d", e.Error(), n)
		}
	}
}
