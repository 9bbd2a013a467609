package gitserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/fjordhq/fjord/storage"
	gossh "golang.org/x/crypto/ssh"
)

// uploadPack serves a fetch or clone. The advertisement and ls-refs come
// from the snapshot; git runs only for pack negotiation.
func (s *Server) uploadPack(ctx context.Context, ch gossh.Channel, user *storage.User, repo, gitProtocol string) (string, error) {
	if protocolVersion(gitProtocol) == 2 {
		return s.uploadPackV2(ctx, ch, user, repo, gitProtocol)
	}
	return s.uploadPackV0(ctx, ch, user, repo, gitProtocol)
}

// uploadPackV0 writes the v0 (or v1) advertisement from the snapshot. A
// client that wants nothing answers with a flush and is done without git
// ever starting. Otherwise a stateful git upload-pack takes over: its own
// advertisement is discarded and the client's first packet replayed to it.
func (s *Server) uploadPackV0(ctx context.Context, ch gossh.Channel, user *storage.User, repo, gitProtocol string) (string, error) {
	refs, ok := s.store.Refs(repo)
	if !ok {
		return "advert", s.notFound(user, repo)
	}
	out := s.ad.v0(repo, refs)
	if protocolVersion(gitProtocol) == 1 {
		out = append(appendPkt(nil, "version 1\n"), out...)
	}
	if _, err := ch.Write(out); err != nil {
		return "advert", fmt.Errorf("write advertisement: %w", err)
	}
	pr := pktReader{r: ch}
	first, err := pr.next()
	if errors.Is(err, io.EOF) || (err == nil && first.isFlush()) {
		return "advert", nil
	}
	if errors.Is(err, errBadPkt) {
		return "advert", refusal("protocol", "malformed request: %v", err)
	}
	if err != nil {
		return "advert", fmt.Errorf("read request: %w", err)
	}

	cmd := s.command(ctx, ch, gitProtocol, append(uploadPackFlags(), "upload-pack", "--strict", s.store.RepoPath(repo))...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "pack", err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "pack", err
	}
	if err := cmd.Start(); err != nil {
		return "pack", fmt.Errorf("start git upload-pack for %s: %w", repo, err)
	}
	deprioritize(cmd.Process)
	if err := skipAdvertisement(stdout); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return "pack", err
	}
	go feed(stdin, first.raw, ch)
	_, copyErr := io.Copy(ch, stdout)
	if err := cmd.Wait(); err != nil {
		return "pack", fmt.Errorf("git upload-pack %s: %w", repo, err)
	}
	if copyErr != nil {
		return "pack", fmt.Errorf("send pack: %w", copyErr)
	}
	return "pack", nil
}

// uploadPackV2 writes the v2 capability advertisement and then serves
// commands until the client is done: ls-refs from the snapshot, anything
// else (fetch, object-info) by one stateless git upload-pack per command.
func (s *Server) uploadPackV2(ctx context.Context, ch gossh.Channel, user *storage.User, repo, gitProtocol string) (string, error) {
	if _, err := ch.Write(s.ad.caps.v2); err != nil {
		return "advert", fmt.Errorf("write capabilities: %w", err)
	}
	path := "advert"
	pr := pktReader{r: ch}
	for {
		req, err := readRequest(&pr)
		if errors.Is(err, io.EOF) {
			return path, nil
		}
		if errors.Is(err, errBadPkt) || errors.Is(err, io.ErrUnexpectedEOF) {
			return path, refusal("protocol", "malformed protocol v2 request: %v", err)
		}
		if err != nil {
			return path, err
		}
		if req.command == "" {
			return path, nil // a lone flush: the client is done
		}
		if req.command == "ls-refs" {
			refs, ok := s.store.Refs(repo)
			if !ok {
				return path, s.notFound(user, repo)
			}
			if _, err := ch.Write(s.ad.lsRefs(repo, refs, req.lsRefs())); err != nil {
				return path, fmt.Errorf("write ls-refs: %w", err)
			}
			continue
		}
		path = "pack"
		if err := s.statelessUploadPack(ctx, ch, repo, gitProtocol, req.raw); err != nil {
			return path, err
		}
	}
}

// statelessUploadPack runs one v2 command through git upload-pack
// --stateless-rpc, which reads one request, answers it and exits.
func (s *Server) statelessUploadPack(ctx context.Context, ch gossh.Channel, repo, gitProtocol string, request []byte) error {
	cmd := s.command(ctx, ch, gitProtocol, append(uploadPackFlags(), "upload-pack", "--stateless-rpc", "--strict", s.store.RepoPath(repo))...)
	cmd.Stdin = bytes.NewReader(request)
	cmd.Stdout = ch
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start git upload-pack --stateless-rpc for %s: %w", repo, err)
	}
	deprioritize(cmd.Process)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git upload-pack --stateless-rpc %s: %w", repo, err)
	}
	return nil
}

// v2Request is one protocol v2 command as the client sent it.
type v2Request struct {
	command string
	args    []string // the lines after the delimiter
	raw     []byte   // every packet, for replay to git
}

// maxRequestBytes bounds one v2 request held in memory; a fetch of a repo
// with very many refs sends one "want" and "have" line per object, well
// under this.
const maxRequestBytes = 64 << 20

func readRequest(pr *pktReader) (v2Request, error) {
	var req v2Request
	inArgs := false
	for {
		p, err := pr.next()
		if err != nil {
			if errors.Is(err, io.EOF) && len(req.raw) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return req, err
		}
		req.raw = append(req.raw, p.raw...)
		if len(req.raw) > maxRequestBytes {
			return req, refusal("request-size", "request larger than %d bytes", maxRequestBytes)
		}
		switch {
		case p.isFlush():
			return req, nil
		case p.isDelim():
			inArgs = true
		case inArgs:
			req.args = append(req.args, p.text())
		default:
			if c, ok := strings.CutPrefix(p.text(), "command="); ok {
				if req.command != "" { // git's serve.c dies here too
					return req, refusal("protocol", "command %q requested after already requesting command %q", c, req.command)
				}
				req.command = c
			}
		}
	}
}

func (r v2Request) lsRefs() lsRefsArgs {
	a := lsRefsArgs{key: strings.Join(r.args, "\n")}
	for _, arg := range r.args {
		switch {
		case arg == "symrefs":
			a.symrefs = true
		case arg == "peel":
			a.peel = true
		case arg == "unborn":
			a.unborn = true
		case strings.HasPrefix(arg, "ref-prefix "):
			a.prefixes = append(a.prefixes, strings.TrimPrefix(arg, "ref-prefix "))
		}
	}
	return a
}
