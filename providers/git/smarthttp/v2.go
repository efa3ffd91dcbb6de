// Protocol version 2 of upload-pack (gitprotocol-v2(5)): a capability
// advertisement, then one command per request, ls-refs or fetch.
// Pushes stay in version 0, as git's own receive-pack.

package smarthttp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// v2Caps is the capability advertisement of version 2.
var v2Caps = []string{"version 2", agent, "ls-refs=unborn", "fetch=shallow filter", "object-format=sha1"}

// wantsV2 reports whether the client asks for protocol version 2 (the
// Git-Protocol header holds "version=2" among its colon-separated
// parameters).
func wantsV2(r *http.Request) bool {
	for _, v := range r.Header.Values("Git-Protocol") {
		for _, p := range strings.Split(v, ":") {
			if p == "version=2" {
				return true
			}
		}
	}
	return false
}

// advertiseV2 writes the capability advertisement of version 2, which
// over HTTP has no "# service" header (as git http-backend's).
func advertiseV2(w http.ResponseWriter) error {
	b := bufio.NewWriter(w)
	for _, c := range v2Caps {
		pktf(b, "%s\n", c)
	}
	flushPkt(b)
	return b.Flush()
}

// v2Request is a command request: its name, capabilities, and the
// argument lines after the delimiter.
type v2Request struct {
	command string
	args    []string
}

// readV2Request reads a command request: "command=NAME", capability
// lines, a delim-pkt, argument lines, a flush-pkt. A body that ends
// before any line gives nil (a client with nothing more to ask).
func readV2Request(p *pktReader) (*v2Request, error) {
	req := &v2Request{}
	inArgs := false
	size := 0
	for first := true; ; first = false {
		line, special, err := p.next()
		switch {
		case err == io.EOF && first:
			return nil, nil
		case err != nil:
			return nil, truncated(err)
		case special && p.delim && !inArgs:
			inArgs = true
			continue
		case special:
			if req.command == "" {
				return nil, errors.New("git: no command")
			}
			return req, nil
		}
		text := string(trimLF(line))
		if size += len(text); size > 16<<20 {
			return nil, errTooBig
		}
		switch {
		case inArgs:
			req.args = append(req.args, text)
		case strings.HasPrefix(text, "command="):
			if req.command != "" {
				return nil, badLine(text)
			}
			req.command = strings.TrimPrefix(text, "command=")
		case strings.HasPrefix(text, "object-format="):
			if text != "object-format=sha1" {
				return nil, fmt.Errorf("git: %s not supported", text)
			}
		case strings.HasPrefix(text, "agent="), strings.HasPrefix(text, "server-option="):
		default:
			return nil, badLine(text)
		}
	}
}

// uploadPackV2 serves one version 2 command.
func (x *exchange) uploadPackV2() error {
	req, err := readV2Request(x.body)
	if err != nil {
		return x.uploadError(err)
	}
	if req == nil {
		x.start(svcUpload)
		return nil
	}
	switch req.command {
	case "ls-refs":
		return x.lsRefs(req.args)
	case "fetch":
		f, err := parseFetchV2(req.args)
		if err != nil {
			return x.uploadError(err)
		}
		return x.fetch(f, true)
	}
	return x.uploadError(fmt.Errorf("git: unknown command %q", req.command))
}

// lsRefs answers ls-refs: a line per ref whose name starts with one of
// the ref-prefix arguments (all if none), "OID NAME", with
// "symref-target:REF" for HEAD if asked for symrefs and
// "peeled:OID" for an annotated tag if asked to peel; and, if asked
// for unborn, "unborn HEAD symref-target:REF" when HEAD names a branch
// not yet made.
func (x *exchange) lsRefs(args []string) error {
	var prefixes []string
	symrefs, peeled, unborn := false, false, false
	for _, a := range args {
		switch {
		case a == "symrefs":
			symrefs = true
		case a == "peel":
			peeled = true
		case a == "unborn":
			unborn = true
		case strings.HasPrefix(a, "ref-prefix "):
			prefixes = append(prefixes, strings.TrimPrefix(a, "ref-prefix "))
		default:
			return x.uploadError(badLine(a))
		}
	}
	refs, head, err := listRefs(x.repo.Storer)
	if err != nil {
		return x.uploadError(err)
	}
	match := func(name string) bool {
		if len(prefixes) == 0 {
			return true
		}
		for _, p := range prefixes {
			if strings.HasPrefix(name, p) {
				return true
			}
		}
		return false
	}
	x.start(svcUpload)
	b := bufio.NewWriterSize(x.w, 64<<10)
	sawHead := false
	for _, r := range refs {
		if !match(r.name) {
			continue
		}
		line := r.hash.String() + " " + r.name
		if r.name == "HEAD" {
			sawHead = true
			if symrefs && head != "" {
				line += " symref-target:" + head
			}
		}
		if peeled && !r.peeled.IsZero() {
			line += " peeled:" + r.peeled.String()
		}
		pktf(b, "%s\n", line)
	}
	if unborn && !sawHead && head != "" && match("HEAD") {
		pktf(b, "unborn HEAD symref-target:%s\n", head)
	}
	flushPkt(b)
	return b.Flush()
}

// parseFetchV2 parses the arguments of a fetch command into the
// request the version 0 parser makes.
func parseFetchV2(args []string) (*uploadRequest, error) {
	req := &uploadRequest{caps: map[string]bool{"side-band-64k": true}}
	for _, a := range args {
		verb, arg, _ := strings.Cut(a, " ")
		switch verb {
		case "done":
			req.done = true
		case "thin-pack", "wait-for-done":
			// Whole packs are sent, and the server never says ready.
		case "no-progress", "include-tag", "ofs-delta":
			req.caps[verb] = true
		case "deepen-since", "deepen-not", "deepen-relative":
			return nil, fmt.Errorf("git: %s not supported: deepen N is", verb)
		default:
			if err := req.arg(a, verb, arg); err != nil {
				return nil, err
			}
		}
	}
	if len(req.wants) == 0 {
		return nil, errors.New("git: no wants")
	}
	return req, nil
}

// fetchV2 writes the response of a version 2 fetch whose plan is made:
// the acknowledgments while the client negotiates (never "ready": it
// sends haves until it has none left, then done); once done, the
// shallow-info section of a deepening fetch and the packfile section.
func (x *exchange) fetchV2(req *uploadRequest, plan *packPlan, refs []ref, has map[plumbing.Hash]bool, common []plumbing.Hash, full bool) error {
	x.start(svcUpload)
	bw := bufio.NewWriterSize(x.w, 64<<10)
	if !req.done {
		pktf(bw, "acknowledgments\n")
		if len(common) == 0 {
			pktf(bw, "NAK\n")
		}
		for _, h := range common {
			pktf(bw, "ACK %s\n", h)
		}
		flushPkt(bw)
		return bw.Flush()
	}
	if req.depth > 0 {
		pktf(bw, "shallow-info\n")
		for _, h := range plan.shallow {
			pktf(bw, "shallow %s\n", h)
		}
		for _, h := range plan.unshallow {
			pktf(bw, "unshallow %s\n", h)
		}
		delimPkt(bw)
	}
	if req.caps["include-tag"] {
		plan.includeTags(x.repo.Storer, refs, has)
	}
	pktf(bw, "packfile\n")
	return x.sendPack(bw, req.caps, plan.objects, full)
}
