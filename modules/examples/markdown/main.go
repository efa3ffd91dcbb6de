// Markdown is a cheshire module rendering Markdown as HTML:
//
//	/render        open, write Markdown, read the HTML back on the same open
//	/ns/PATH.html  the namespace file /PATH.md rendered, read at each open
//
// /ns mirrors the namespace directories the module may read (its
// manifest asks for /tmp; the owner grants it with "allow read /tmp"):
// it lists their subdirectories and their .md files, as .html.
package main

import (
	"bytes"
	"context"
	"strings"

	"cheshire/modules/sdk"

	"github.com/yuin/goldmark"
)

func main() {}

func init() {
	md := goldmark.New()
	render := func(ctx context.Context, in []byte) ([]byte, error) {
		var out bytes.Buffer
		if err := md.Convert(in, &out); err != nil {
			return nil, err
		}
		return out.Bytes(), nil
	}
	sdk.Serve(sdk.NewDir("/", 0o555,
		sdk.Filter("render", 0o666, render),
		nsDir("ns", "/", render),
	))
}

// nsDir is the directory mirroring the namespace directory nspath.
func nsDir(name, nspath string, render func(context.Context, []byte) ([]byte, error)) *sdk.Dir {
	d := sdk.NewDir(name, 0o555)
	child := func(name string) string {
		if nspath == "/" {
			return "/" + name
		}
		return nspath + "/" + name
	}
	page := func(name string, src sdk.Info) sdk.Node {
		path := child(strings.TrimSuffix(name, ".html") + ".md")
		f := sdk.Gen(name, 0o444, func(ctx context.Context) ([]byte, error) {
			in, err := sdk.ReadFile(path)
			if err != nil {
				return nil, err
			}
			return render(ctx, in)
		})
		// The page changes when its source does.
		f.SetMtime(src.Mtime)
		f.SetVersion(src.Version)
		return f
	}
	d.SetLookup(func(ctx context.Context, name string) (sdk.Node, error) {
		if base, ok := strings.CutSuffix(name, ".html"); ok && base != "" {
			src, err := sdk.Stat(child(base + ".md"))
			if err != nil {
				return nil, err
			}
			if src.IsDir() {
				return nil, sdk.ErrNotFound
			}
			return page(name, src), nil
		}
		info, err := sdk.Stat(child(name))
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			return nil, sdk.ErrNotFound
		}
		return nsDir(name, child(name), render), nil
	})
	d.SetGen(func(ctx context.Context) ([]sdk.Node, error) {
		infos, err := sdk.ReadDir(nspath)
		if err != nil {
			if strings.HasPrefix(err.Error(), string(sdk.ErrPerm)) {
				// Above what the module may read (/ns itself, when it
				// may read /tmp): nothing to list, though walks to the
				// readable directories below work.
				return nil, nil
			}
			return nil, err
		}
		var nodes []sdk.Node
		for _, in := range infos {
			switch {
			case in.IsDir():
				nodes = append(nodes, nsDir(in.Name, child(in.Name), render))
			case strings.HasSuffix(in.Name, ".md") && in.Name != ".md":
				nodes = append(nodes, page(strings.TrimSuffix(in.Name, ".md")+".html", in))
			}
		}
		return nodes, nil
	})
	return d
}
