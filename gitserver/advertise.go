package gitserver

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/fjordhq/fjord/internal/gitrun"
	"github.com/fjordhq/fjord/storage"
)

// capabilities are what the installed git's upload-pack advertises, read
// once at start. fjord answers ref advertisements itself, but the pack is
// always made by that same git, so the advertised capabilities must be
// exactly git's.
type capabilities struct {
	// v0 is the capability list of the first v0 advertisement line,
	// without symref (which depends on the repo).
	v0 string
	// v2 is the whole v2 capability advertisement, flush included.
	v2 []byte
}

// probeCapabilities runs git upload-pack --advertise-refs on an empty
// scratch repo, in v0 and v2, with the same -c flags used for serving.
func probeCapabilities(ctx context.Context, git string) (capabilities, error) {
	dir, err := os.MkdirTemp("", "fjord-probe-")
	if err != nil {
		return capabilities{}, fmt.Errorf("probe git capabilities: %w", err)
	}
	defer os.RemoveAll(dir)
	run := func(proto string, args ...string) ([]byte, error) {
		cmd := gitrun.Runner{Git: git, WaitDelay: 5 * time.Second}.Command(ctx, "", []string{"GIT_PROTOCOL=" + proto}, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
		}
		return out, nil
	}
	// git advertises capabilities only alongside a ref, so the scratch
	// repo gets one commit of the empty tree.
	if _, err := run("", "init", "--quiet", "--bare", dir); err != nil {
		return capabilities{}, fmt.Errorf("probe git capabilities: %w", err)
	}
	tree, err := run("", "-C", dir, "mktree")
	if err != nil {
		return capabilities{}, fmt.Errorf("probe git capabilities: %w", err)
	}
	commit, err := run("", "-C", dir, "-c", "user.name=fjord", "-c", "user.email=fjord@localhost", "commit-tree", "-m", "probe", strings.TrimSpace(string(tree)))
	if err != nil {
		return capabilities{}, fmt.Errorf("probe git capabilities: %w", err)
	}
	if _, err := run("", "-C", dir, "update-ref", "refs/heads/main", strings.TrimSpace(string(commit))); err != nil {
		return capabilities{}, fmt.Errorf("probe git capabilities: %w", err)
	}
	uploadPack := append(uploadPackFlags(), "upload-pack", "--advertise-refs", dir)
	v0, err := run("", uploadPack...)
	if err != nil {
		return capabilities{}, fmt.Errorf("probe git capabilities: %w", err)
	}
	// The first line is "<oid> HEAD\0<caps>\n"; symref is per repo.
	pr := pktReader{r: bytes.NewReader(v0)}
	first, err := pr.next()
	if err != nil {
		return capabilities{}, fmt.Errorf("probe git capabilities: v0 advertisement: %w", err)
	}
	_, rawCaps, ok := strings.Cut(first.text(), "\x00")
	if !ok {
		return capabilities{}, fmt.Errorf("probe git capabilities: no capabilities in %q", first.text())
	}
	var kept []string
	for _, c := range strings.Fields(rawCaps) {
		if !strings.HasPrefix(c, "symref=") {
			kept = append(kept, c)
		}
	}
	caps := strings.Join(kept, " ")
	v2, err := run("version=2", uploadPack...)
	if err != nil {
		return capabilities{}, fmt.Errorf("probe git capabilities: %w", err)
	}
	if !bytes.HasPrefix(v2, []byte("000eversion 2\n")) {
		return capabilities{}, fmt.Errorf("probe git capabilities: git does not speak protocol v2 (got %q); install git 2.26 or newer", firstLine(v2))
	}
	return capabilities{v0: caps, v2: v2}, nil
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	return string(line)
}

// uploadPackFlags are the -c settings every upload-pack fjord runs gets.
func uploadPackFlags() []string {
	return []string{
		// Argo CD fetches commits by SHA; allow any reachable one.
		"-c", "uploadpack.allowReachableSHA1InWant=true",
		"-c", "uploadpack.allowFilter=true",
		"-c", "uploadpack.hideRefs=" + storage.HiddenRefPrefix,
	}
}

// advertiser renders ref advertisements and ls-refs answers, caching the
// bytes per snapshot: a snapshot is immutable, so the same pointer always
// renders the same, and "anything new?" costs a map lookup and a write.
type advertiser struct {
	caps capabilities

	mu    sync.Mutex
	cache map[string]*renderedAd // by repo
}

// renderedAd is what was rendered from one snapshot of a repo.
type renderedAd struct {
	refs   *storage.Refs
	v0     []byte
	lsRefs map[string][]byte // by the request's arguments
}

// maxCachedLsRefs bounds the distinct ls-refs argument lists cached per
// snapshot; clients send a handful (git fetch, git ls-remote, Argo CD), so
// more is a client varying its prefixes, rendered each time.
const maxCachedLsRefs = 16

// entry returns the cache entry for a repo's snapshot, replacing an entry
// of an older snapshot. Call with a.mu held.
func (a *advertiser) entry(repo string, refs *storage.Refs) *renderedAd {
	c := a.cache[repo]
	if c == nil || c.refs != refs {
		if a.cache == nil {
			a.cache = make(map[string]*renderedAd)
		}
		c = &renderedAd{refs: refs}
		a.cache[repo] = c
	}
	return c
}

// v0 returns the protocol v0 ref advertisement of a snapshot, flush
// included, exactly as git upload-pack would write it. The bytes are
// shared: never write to them.
func (a *advertiser) v0(repo string, refs *storage.Refs) []byte {
	a.mu.Lock()
	c := a.entry(repo, refs)
	ad := c.v0
	a.mu.Unlock()
	if ad != nil {
		return ad
	}
	ad = renderV0(a.caps.v0, refs)
	a.mu.Lock()
	if c := a.entry(repo, refs); c.v0 == nil {
		c.v0 = ad
	}
	a.mu.Unlock()
	return ad
}

// lsRefs returns the answer to a v2 ls-refs command with args, from the
// cache when the same arguments were asked of the same snapshot before.
// The bytes are shared: never write to them.
func (a *advertiser) lsRefs(repo string, refs *storage.Refs, args lsRefsArgs) []byte {
	a.mu.Lock()
	c := a.entry(repo, refs)
	out, ok := c.lsRefs[args.key]
	a.mu.Unlock()
	if ok {
		return out
	}
	out = renderLsRefs(refs, args)
	a.mu.Lock()
	if c := a.entry(repo, refs); len(c.lsRefs) < maxCachedLsRefs {
		if c.lsRefs == nil {
			c.lsRefs = make(map[string][]byte)
		}
		c.lsRefs[args.key] = out
	}
	a.mu.Unlock()
	return out
}

func renderV0(caps string, refs *storage.Refs) []byte {
	symref := ""
	if refs.Head != "" && refs.HeadHash != "" {
		symref = "symref=HEAD:" + refs.Head + " "
	}
	var b []byte
	first := true
	line := func(oid, name, suffix string) {
		if first {
			b = appendPktParts(b, oid, " ", name, suffix, "\x00", symref, caps, "\n")
			first = false
			return
		}
		b = appendPktParts(b, oid, " ", name, suffix, "\n")
	}
	if refs.HeadHash != "" {
		line(refs.HeadHash, "HEAD", "")
	}
	for _, r := range refs.Refs {
		line(r.Hash, r.Name, "")
		if r.Peeled != "" {
			line(r.Peeled, r.Name, "^{}")
		}
	}
	// A repo without refs advertises nothing at all, as git upload-pack
	// does; the client then reports an empty repository.
	return append(b, pktFlush...)
}

// lsRefsArgs are the arguments of a protocol v2 ls-refs command.
type lsRefsArgs struct {
	symrefs  bool
	peel     bool
	unborn   bool
	prefixes []string
	key      string // the argument lines as sent, for the cache
}

func (a lsRefsArgs) match(name string) bool {
	if len(a.prefixes) == 0 {
		return true
	}
	for _, p := range a.prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// renderLsRefs answers a v2 ls-refs command from a snapshot, the way git's
// ls-refs.c does: HEAD first, then refs in name order.
func renderLsRefs(refs *storage.Refs, args lsRefsArgs) []byte {
	var b []byte
	if args.match("HEAD") {
		target := ""
		if args.symrefs && refs.Head != "" {
			target = " symref-target:" + refs.Head
		}
		switch {
		case refs.HeadHash != "":
			b = appendPktParts(b, refs.HeadHash, " HEAD", target, "\n")
		case args.unborn && refs.Head != "":
			b = appendPktParts(b, "unborn HEAD", target, "\n")
		}
	}
	for _, r := range refs.Refs {
		if !args.match(r.Name) {
			continue
		}
		peeled, peel := "", ""
		if args.peel && r.Peeled != "" {
			peeled, peel = " peeled:", r.Peeled
		}
		b = appendPktParts(b, r.Hash, " ", r.Name, peeled, peel, "\n")
	}
	return append(b, pktFlush...)
}
