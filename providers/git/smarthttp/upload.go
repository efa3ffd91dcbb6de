package smarthttp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// exchange is one POST to a service: its request, the repository and
// the response, which is under way once wrote is set.
type exchange struct {
	ctx   context.Context
	h     *handler
	w     http.ResponseWriter
	body  *pktReader
	repo  *gogit.Repository
	name  string
	user  string
	wrote bool
}

// start writes the header of a successful response of service svc.
func (x *exchange) start(svc string) {
	x.w.Header().Set("Content-Type", "application/x-"+svc+"-result")
	x.w.WriteHeader(http.StatusOK)
	x.wrote = true
}

// uploadRequest is a fetch request: a want section, then, unless the
// body ends there, one round of haves ending in a flush or "done".
type uploadRequest struct {
	wants    []plumbing.Hash
	shallows []plumbing.Hash // commits the client has without their parents
	depth    int             // deepen N; 0 for none
	filter   *filter         // a partial clone's filter, or nil
	caps     map[string]bool
	haves    []plumbing.Hash
	done     bool
	eof      bool // no have section: the client wants only the shallow list
}

// readUploadRequest parses a fetch request. A body that is only a
// flush-pkt, the probe git sends before a large request, gives nil.
func readUploadRequest(p *pktReader) (*uploadRequest, error) {
	req := &uploadRequest{caps: map[string]bool{}}
	for first := true; ; first = false {
		line, flush, err := p.next()
		if err != nil {
			return nil, truncated(err)
		}
		if flush {
			if first {
				return nil, nil
			}
			break
		}
		text := string(trimLF(line))
		verb, arg, _ := strings.Cut(text, " ")
		switch verb {
		case "want":
			hex, caps, _ := strings.Cut(arg, " ")
			h, ok := parseHash(hex)
			if !ok {
				return nil, badLine(text)
			}
			if len(req.wants) == 0 {
				for _, c := range strings.Fields(caps) {
					req.caps[c] = true
				}
			}
			req.wants = append(req.wants, h)
		default:
			if err := req.arg(text, verb, arg); err != nil {
				return nil, err
			}
		}
	}
	if len(req.wants) == 0 {
		return nil, errors.New("git: no wants")
	}
	for n := 0; ; n++ {
		line, flush, err := p.next()
		switch {
		case err == io.EOF && n == 0:
			req.eof = true
			return req, nil
		case err != nil:
			return nil, truncated(err)
		case flush:
			return req, nil
		}
		text := string(trimLF(line))
		if text == "done" {
			req.done = true
			return req, nil
		}
		hex, ok := strings.CutPrefix(text, "have ")
		h, ok2 := parseHash(hex)
		if !ok || !ok2 {
			return nil, badLine(text)
		}
		req.haves = append(req.haves, h)
	}
}

// arg parses a line of a fetch request that both protocol versions
// have: want, have, shallow, deepen, filter. text is the whole line,
// for the error.
func (req *uploadRequest) arg(text, verb, arg string) error {
	switch verb {
	case "want", "have", "shallow":
		h, ok := parseHash(arg)
		if !ok {
			return badLine(text)
		}
		switch verb {
		case "want":
			req.wants = append(req.wants, h)
		case "have":
			req.haves = append(req.haves, h)
		default:
			req.shallows = append(req.shallows, h)
		}
	case "deepen":
		n, err := strconv.Atoi(arg)
		if err != nil || n <= 0 {
			return badLine(text)
		}
		req.depth = n
	case "filter":
		f, err := parseFilter(arg)
		if err != nil {
			return err
		}
		req.filter = f
	default:
		return badLine(text)
	}
	return nil
}

func parseHash(s string) (plumbing.Hash, bool) {
	if len(s) != 40 || !plumbing.IsHash(s) {
		return plumbing.ZeroHash, false
	}
	return plumbing.NewHash(s), true
}

func badLine(text string) error {
	if len(text) > 48 {
		text = text[:48]
	}
	return fmt.Errorf("git: unexpected line %q", text)
}

// uploadPack answers a fetch request (git-upload-pack), in the manner
// of git's upload-pack --stateless-rpc: each request carries the wants
// and the haves found common so far, and is answered on its own.
// Haves the repository lacks are dropped. The server never says
// "ready"; the client sends haves until it has none left, then "done".
func (x *exchange) uploadPack() error {
	req, err := readUploadRequest(x.body)
	if err != nil {
		return x.uploadError(err)
	}
	if req == nil {
		x.start(svcUpload)
		return nil
	}
	return x.fetch(req, false)
}

// fetch answers a fetch request, framed for protocol v0/v1 or, if v2
// is set, as v2's fetch command (gitprotocol-v2(5)): an acknowledgments
// section alone while negotiating; once the client is done, a
// shallow-info section if it is shallow, then the packfile section,
// always on the side band.
func (x *exchange) fetch(req *uploadRequest, v2 bool) error {
	s := x.repo.Storer
	refs, _, err := listRefs(s)
	if err != nil {
		return x.uploadError(err)
	}
	if err := checkWants(s, refs, req.wants); err != nil {
		return x.uploadError(err)
	}

	full := len(req.haves) == 0 && req.depth == 0 && len(req.shallows) == 0 && req.filter == nil
	if req.done && full && req.caps["ofs-delta"] {
		// A full clone of a one-pack repository: that pack as it is,
		// without walking the history to list the objects.
		if f := wholePack(x.repo); f != nil {
			defer f.Close()
			x.start(svcUpload)
			bw := bufio.NewWriterSize(x.w, 64<<10)
			if v2 {
				pktf(bw, "packfile\n")
			} else {
				pktf(bw, "NAK\n")
			}
			return x.sendPackWith(bw, req.caps, packCount(f), func(out io.Writer) error {
				_, err := io.Copy(out, f)
				return err
			})
		}
	}
	var resp bytes.Buffer
	multiAck := req.caps["multi_ack_detailed"]
	var common []plumbing.Hash
	isCommon := map[plumbing.Hash]bool{}
	var acks bytes.Buffer
	for _, h := range req.haves {
		if isCommon[h] || s.HasEncodedObject(h) != nil {
			continue
		}
		isCommon[h] = true
		common = append(common, h)
		if multiAck {
			pktf(&acks, "ACK %s common\n", h)
		} else if len(common) == 1 {
			pktf(&acks, "ACK %s\n", h)
		}
	}
	clientShallow := map[plumbing.Hash]bool{}
	for _, h := range req.shallows {
		if s.HasEncodedObject(h) == nil {
			clientShallow[h] = true
		}
	}
	var has map[plumbing.Hash]bool
	if req.done {
		tips := append(append([]plumbing.Hash(nil), common...), req.shallows...)
		if has, err = reachable(s, tips, clientShallow); err != nil {
			return x.uploadError(err)
		}
	}
	plan, err := planPack(s, req.wants, req.depth, clientShallow, has, req.done, req.filter)
	if err != nil {
		return x.uploadError(err)
	}
	if v2 {
		return x.fetchV2(req, plan, refs, has, common, full)
	}
	if req.depth > 0 {
		for _, h := range plan.shallow {
			pktf(&resp, "shallow %s\n", h)
		}
		for _, h := range plan.unshallow {
			pktf(&resp, "unshallow %s\n", h)
		}
		flushPkt(&resp)
	}
	if !req.eof {
		resp.Write(acks.Bytes())
	}
	switch {
	case req.eof:
	case !req.done:
		if len(common) == 0 || multiAck {
			pktf(&resp, "NAK\n")
		}
	case len(common) == 0:
		pktf(&resp, "NAK\n")
	case multiAck:
		pktf(&resp, "ACK %s\n", common[len(common)-1])
	}
	if req.done && req.caps["include-tag"] {
		plan.includeTags(s, refs, has)
	}
	x.start(svcUpload)
	bw := bufio.NewWriterSize(x.w, 64<<10)
	bw.Write(resp.Bytes())
	if !req.done {
		return bw.Flush()
	}
	return x.sendPack(bw, req.caps, plan.objects, full)
}

// checkWants checks that each of wants is a ref's tip, or reachable
// from one (allow-reachable-sha1-in-want: a partial clone fetches the
// blobs it lacks by their hashes). Objects no ref reaches any more are
// not served.
func checkWants(s storer.EncodedObjectStorer, refs []ref, wants []plumbing.Hash) error {
	tips := map[plumbing.Hash]bool{}
	var all []plumbing.Hash
	for _, r := range refs {
		tips[r.hash] = true
		all = append(all, r.hash)
	}
	var others []plumbing.Hash
	for _, w := range wants {
		if !tips[w] {
			others = append(others, w)
		}
	}
	if len(others) == 0 {
		return nil
	}
	seen, err := reachable(s, all, nil)
	if err != nil {
		return err
	}
	for _, w := range others {
		if !seen[w] {
			return fmt.Errorf("git: not our ref %s", w)
		}
	}
	return nil
}

// uploadError answers a fetch that cannot be served with an ERR
// packet, which git prints as "remote error", if no response has begun.
func (x *exchange) uploadError(err error) error {
	if !x.wrote {
		x.start(svcUpload)
		pktf(x.w, "ERR %s\n", errText(err))
	}
	return err
}

// sendPack writes the pack of objects, on the side band if the client
// asked for one, with a line of progress unless it asked for none.
// A full fetch (no haves, not shallow) may be answered with the
// repository's pack file as it is (see packs.go).
func (x *exchange) sendPack(bw *bufio.Writer, caps map[string]bool, objects []plumbing.Hash, full bool) error {
	return x.sendPackWith(bw, caps, len(objects), func(out io.Writer) error {
		return x.writePack(out, objects, !caps["ofs-delta"], full)
	})
}

// sendPackWith writes the pack that write writes (of count objects), on
// the side band if the client asked for one, with a line of progress
// unless it asked for none.
func (x *exchange) sendPackWith(bw *bufio.Writer, caps map[string]bool, count int, write func(io.Writer) error) error {
	var out io.Writer = bw
	var mux *sideband.Muxer
	switch {
	case caps["side-band-64k"]:
		mux = sideband.NewMuxer(sideband.Sideband64k, bw)
	case caps["side-band"]:
		mux = sideband.NewMuxer(sideband.Sideband, bw)
	}
	if mux != nil {
		out = mux
		if !caps["no-progress"] {
			fmt.Fprintf(progress{mux}, "Counting objects: %d, done.\n", count)
		}
	}
	if err := write(out); err != nil {
		if mux != nil {
			mux.WriteChannel(sideband.ErrorMessage, []byte(errText(err)+"\n"))
			bw.Flush()
		}
		return err
	}
	if mux != nil {
		flushPkt(bw)
	}
	return bw.Flush()
}

// writePack writes the pack of objects to out: the repository's own
// pack file for a full fetch when it holds everything (with ofs-delta),
// else a cached or newly built one.
func (x *exchange) writePack(out io.Writer, objects []plumbing.Hash, refDeltas, full bool) error {
	var f *os.File
	if full && !refDeltas {
		f = wholePack(x.repo)
	}
	if f == nil {
		key := packKey(x.name, objects, refDeltas)
		if f = x.h.packs.get(key); f == nil {
			// Made and sent at once: the client reads the pack while
			// the cache file is written.
			return x.h.packs.build(x.repo, key, objects, refDeltas, x.h.window(), chunked{out})
		}
	}
	defer f.Close()
	_, err := io.Copy(out, f)
	return err
}

// chunked passes writes on in pieces of at most 32 KiB, as io.Copy
// does: a side band's packet holds less than 64 KiB, and its muxer
// refuses a longer write.
type chunked struct{ w io.Writer }

func (c chunked) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k, err := c.w.Write(p[:min(len(p), 32<<10)])
		n += k
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}

// progress writes on the progress channel of a side band.
type progress struct{ m *sideband.Muxer }

func (p progress) Write(b []byte) (int, error) { return p.m.WriteChannel(sideband.ProgressMessage, b) }
