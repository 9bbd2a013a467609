package gitserver

// Fuzz targets for what a client controls before any git process runs: the
// pkt-line framing, the protocol v2 request, the exec line, the env
// request and the repo path. `make fuzz` runs each for FUZZTIME; the seeds
// under testdata/fuzz run in every `go test`.

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anmitsu/go-shlex"

	"github.com/fjordhq/fjord/storage"
)

// FuzzPktReader reads pkt-lines from arbitrary bytes: the reader never
// panics, consumes the stream frame by frame (each frame's raw bytes are
// the next bytes of the input), bounds every frame, and fails only with a
// malformed-pkt error or the end of the stream.
func FuzzPktReader(f *testing.F) {
	f.Add([]byte("0014command=ls-refs\n0001000csymrefs0000"))
	f.Add([]byte("0000"))
	f.Add([]byte("0003"))
	f.Add([]byte("zzzz"))
	f.Add([]byte("fff0abc"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pr := pktReader{r: bytes.NewReader(data)}
		off := 0
		for {
			p, err := pr.next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, errBadPkt) {
					t.Fatalf("unexpected error kind: %v", err)
				}
				return
			}
			if !bytes.HasPrefix(data[off:], p.raw) || len(p.raw) < 4 || len(p.raw) > maxPktPayload+4 {
				t.Fatalf("frame %q at offset %d is not the input's next bytes, or is out of bounds", p.raw, off)
			}
			if n, _ := pktLen([4]byte(p.raw[:4])); n <= 2 {
				if p.payload != nil {
					t.Fatalf("special packet %q has a payload", p.raw)
				}
			} else if !bytes.Equal(p.payload, p.raw[4:]) {
				t.Fatalf("payload %q is not the frame %q without its length", p.payload, p.raw)
			}
			off += len(p.raw)
		}
	})
}

// FuzzPktRoundTrip writes a payload as a pkt-line and reads it back.
func FuzzPktRoundTrip(f *testing.F) {
	f.Add("command=fetch\n")
	f.Add("")
	f.Add(strings.Repeat("x", maxPktPayload))
	f.Fuzz(func(t *testing.T, payload string) {
		if len(payload) > maxPktPayload || len(payload) == 0 {
			return // not a data packet git would send
		}
		b := appendPkt(nil, payload)
		pr := pktReader{r: bytes.NewReader(b)}
		p, err := pr.next()
		if err != nil || string(p.payload) != payload || !bytes.Equal(p.raw, b) {
			t.Fatalf("round trip of %q: %q, %v", payload, p.payload, err)
		}
	})
}

// FuzzReadRequest parses a protocol v2 request: never a panic, the raw
// bytes kept for replay are exactly the frames read, and a parsed
// command's arguments turn into ls-refs options without trouble.
func FuzzReadRequest(f *testing.F) {
	f.Add([]byte("0014command=ls-refs\n0001000csymrefs0009peel\n001bref-prefix refs/heads/\n0000"))
	f.Add([]byte("0012command=fetch\n0001000dthin-pack\n0032want 0123456789012345678901234567890123456789\n0009done\n0000"))
	f.Add([]byte("0000"))
	f.Add([]byte("0001"))
	f.Add([]byte("0014command=ls-refs\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := readRequest(&pktReader{r: bytes.NewReader(data)})
		if !bytes.HasPrefix(data, req.raw) {
			t.Fatalf("request raw %q is not a prefix of the input", req.raw)
		}
		if err != nil {
			return
		}
		// fjord answers ls-refs itself: only when git, reading the same
		// packets (chomping one trailing newline), would see ls-refs too.
		if req.command == "ls-refs" {
			rr := pktReader{r: bytes.NewReader(req.raw)}
			for {
				p, err := rr.next()
				if err != nil {
					t.Fatalf("no command packet in %q: %v", req.raw, err)
				}
				if c, ok := bytes.CutPrefix(p.payload, []byte("command=")); ok {
					if string(c) != "ls-refs" && string(c) != "ls-refs\n" {
						t.Fatalf("answered %q as ls-refs", p.payload)
					}
					break
				}
			}
		}
		a := req.lsRefs()
		if a.key != strings.Join(req.args, "\n") {
			t.Fatalf("ls-refs cache key %q does not follow the arguments %q", a.key, req.args)
		}
		for _, p := range a.prefixes {
			if !a.match(p + "x") {
				t.Fatalf("ref-prefix %q does not match a ref under it", p)
			}
		}
	})
}

// FuzzParseCommand parses exec lines as a client sends them. A command is
// accepted only for the three git services with one argument; the fast
// path without the shell-word lexer gives exactly what the lexer gives;
// and the repo path, once normalized, names a directory inside the repos
// root.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"git-upload-pack '/team/app.git'", "git-receive-pack 'app.git'", "git upload-pack /app.git",
		"git-upload-archive app", "git-upload-pack '../../etc/passwd'", "sh -c id", "git-upload-pack 'a' 'b'",
		`git-upload-pack "a b"`, "git-upload-pack 'it''s'", "git-upload-pack",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cmdline string) {
		svc, path, err := parseCommand(cmdline)
		if err != nil {
			return
		}
		if len(cmdline) > maxCommandLen {
			t.Fatalf("a command line of %d bytes was parsed: the lexer's cost grows with its square", len(cmdline))
		}
		switch svc {
		case serviceUploadPack, serviceReceivePack, serviceUploadArchive:
		default:
			t.Fatalf("%q accepted as service %q", cmdline, svc)
		}
		if psvc, ppath, ok := parsePlainCommand(cmdline); ok {
			args, lexErr := shlex.Split(cmdline, true)
			if lexErr != nil || len(args) != 2 || args[0] != string(psvc) || args[1] != ppath {
				t.Fatalf("fast path gives %q %q for %q, the lexer %q (%v)", psvc, ppath, cmdline, args, lexErr)
			}
		}
		name, err := storage.NormalizeRepoName(path)
		if err != nil {
			return
		}
		const root = "/data/repos"
		if full := filepath.Join(root, name+".git"); !strings.HasPrefix(full, root+"/") {
			t.Fatalf("exec line %q names %q, outside %s", cmdline, full, root)
		}
	})
}

// FuzzEnvPayload decodes SSH env requests: an accepted payload is exactly
// two SSH strings, so encoding the result gives the input back.
func FuzzEnvPayload(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x0cGIT_PROTOCOL\x00\x00\x00\x09version=2"))
	f.Add([]byte("\x00\x00\x00\x01"))
	f.Add([]byte("\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		name, value, ok := envPayload(b)
		if !ok {
			return
		}
		enc := func(s string) []byte {
			n := len(s)
			return append([]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}, s...)
		}
		if again := append(enc(name), enc(value)...); !bytes.Equal(again, b) {
			t.Fatalf("env %q=%q re-encodes to %q, not %q", name, value, again, b)
		}
	})
}
