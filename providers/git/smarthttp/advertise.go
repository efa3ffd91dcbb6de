package smarthttp

import (
	"bufio"
	"net/http"
	"sort"
	"strings"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

const agent = "agent=cheshire-git"

// The capabilities advertised by each service in version 0. Upload-pack
// offers no thin-pack (go-git's encoder makes no thin packs), no
// deepen-since or deepen-not; its filters are blob:none and
// blob:limit (filter.go). Receive-pack asks for whole packs (no-thin),
// which go-git's parser can check without the repository.
var (
	uploadCaps  = "multi_ack_detailed side-band-64k side-band ofs-delta shallow no-progress include-tag filter allow-tip-sha1-in-want allow-reachable-sha1-in-want " + agent
	receiveCaps = "report-status delete-refs side-band-64k quiet atomic ofs-delta no-thin " + agent
)

// ref is an advertised reference: its name, hash, and for an annotated
// tag the object it peels to.
type ref struct {
	name   string
	hash   plumbing.Hash
	peeled plumbing.Hash
}

// listRefs returns the references of s, sorted by name, with HEAD first
// if it resolves, and the branch HEAD names ("" if HEAD is detached or
// missing). Symbolic references other than HEAD are left out.
func listRefs(s storer.Storer) (refs []ref, head string, err error) {
	iter, err := s.IterReferences()
	if err != nil {
		return nil, "", err
	}
	err = iter.ForEach(func(r *plumbing.Reference) error {
		if r.Type() != plumbing.HashReference || !strings.HasPrefix(r.Name().String(), "refs/") {
			return nil
		}
		refs = append(refs, ref{name: r.Name().String(), hash: r.Hash(), peeled: peel(s, r.Hash())})
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].name < refs[j].name })
	if r, err := s.Reference(plumbing.HEAD); err == nil {
		if r.Type() == plumbing.SymbolicReference {
			head = r.Target().String()
		}
		if r, err := storer.ResolveReference(s, plumbing.HEAD); err == nil {
			refs = append([]ref{{name: "HEAD", hash: r.Hash()}}, refs...)
		}
	}
	return refs, head, nil
}

// peel returns the object the annotated tag h points to, following
// tags of tags, or the zero hash if h is not a tag.
func peel(s storer.EncodedObjectStorer, h plumbing.Hash) plumbing.Hash {
	var p plumbing.Hash
	for range 16 {
		t, err := object.GetTag(s, h)
		if err != nil {
			return p
		}
		h, p = t.Target, t.Target
	}
	return p
}

// advertise writes the reference advertisement of service svc.
func advertise(w http.ResponseWriter, repo *gogit.Repository, svc string) error {
	refs, head, err := listRefs(repo.Storer)
	if err != nil {
		httpError(w, http.StatusInternalServerError, errText(err))
		return err
	}
	caps := receiveCaps
	if svc == svcUpload {
		caps = uploadCaps
		if head != "" {
			caps += " symref=HEAD:" + head
		}
	}
	b := bufio.NewWriter(w)
	pktf(b, "# service=%s\n", svc)
	flushPkt(b)
	if svc == svcReceive && len(refs) > 0 && refs[0].name == "HEAD" {
		refs = refs[1:] // as git's receive-pack, which never updates HEAD
	}
	if len(refs) == 0 {
		pktf(b, "%s capabilities^{}\x00%s\n", plumbing.ZeroHash, caps)
	}
	for i, r := range refs {
		if i == 0 {
			pktf(b, "%s %s\x00%s\n", r.hash, r.name, caps)
		} else {
			pktf(b, "%s %s\n", r.hash, r.name)
		}
		if !r.peeled.IsZero() && svc == svcUpload {
			pktf(b, "%s %s^{}\n", r.peeled, r.name)
		}
	}
	flushPkt(b)
	return b.Flush()
}
