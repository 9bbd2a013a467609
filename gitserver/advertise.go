package gitserver

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

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
		cmd := exec.CommandContext(ctx, git, args...)
		cmd.Env = append(storage.GitEnv(), "GIT_PROTOCOL="+proto)
		cmd.WaitDelay = 5 * time.Second
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

// advertiser renders v0 ref advertisements, caching the bytes per snapshot:
// the snapshot is immutable, so the same pointer always renders the same.
type advertiser struct {
	caps capabilities

	mu    sync.Mutex
	cache map[string]renderedAd // by repo
}

type renderedAd struct {
	refs *storage.Refs
	ad   []byte
}

// v0 returns the protocol v0 ref advertisement of a snapshot, flush
// included, exactly as git upload-pack would write it.
func (a *advertiser) v0(repo string, refs *storage.Refs) []byte {
	a.mu.Lock()
	c, ok := a.cache[repo]
	a.mu.Unlock()
	if ok && c.refs == refs {
		return c.ad
	}
	ad := renderV0(a.caps.v0, refs)
	a.mu.Lock()
	if a.cache == nil {
		a.cache = make(map[string]renderedAd)
	}
	a.cache[repo] = renderedAd{refs: refs, ad: ad}
	a.mu.Unlock()
	return ad
}

func renderV0(caps string, refs *storage.Refs) []byte {
	if refs.Head != "" && refs.HeadHash != "" {
		caps = "symref=HEAD:" + refs.Head + " " + caps
	}
	var b []byte
	first := true
	line := func(oid, name string) {
		if first {
			b = appendPkt(b, oid+" "+name+"\x00"+caps+"\n")
			first = false
			return
		}
		b = appendPkt(b, oid+" "+name+"\n")
	}
	if refs.HeadHash != "" {
		line(refs.HeadHash, "HEAD")
	}
	for _, r := range refs.Refs {
		line(r.Hash, r.Name)
		if r.Peeled != "" {
			line(r.Peeled, r.Name+"^{}")
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
		switch {
		case refs.HeadHash != "":
			l := refs.HeadHash + " HEAD"
			if args.symrefs && refs.Head != "" {
				l += " symref-target:" + refs.Head
			}
			b = appendPkt(b, l+"\n")
		case args.unborn && refs.Head != "":
			l := "unborn HEAD"
			if args.symrefs {
				l += " symref-target:" + refs.Head
			}
			b = appendPkt(b, l+"\n")
		}
	}
	for _, r := range refs.Refs {
		if !args.match(r.Name) {
			continue
		}
		l := r.Hash + " " + r.Name
		if args.peel && r.Peeled != "" {
			l += " peeled:" + r.Peeled
		}
		b = appendPkt(b, l+"\n")
	}
	return append(b, pktFlush...)
}
