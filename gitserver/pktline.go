package gitserver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Git's pkt-line framing (gitprotocol-common(5)): four hex digits of length
// (including themselves) then the payload. "0000" is a flush, "0001" a
// delimiter and "0002" a response-end in protocol v2.
const (
	pktFlush = "0000"
	pktDelim = "0001"
	// maxPktPayload is the largest payload git allows in one pkt-line.
	maxPktPayload = 65516
)

var errBadPkt = errors.New("malformed pkt-line")

// appendPkt appends payload as one pkt-line to b.
func appendPkt(b []byte, payload string) []byte {
	return appendPktParts(b, payload)
}

// appendPktParts appends one pkt-line whose payload is parts, one after
// the other, without joining them into a string first.
func appendPktParts(b []byte, parts ...string) []byte {
	start := len(b)
	b = append(b, pktFlush...) // the length, patched below
	for _, p := range parts {
		b = append(b, p...)
	}
	const hex = "0123456789abcdef"
	n := len(b) - start
	b[start], b[start+1], b[start+2], b[start+3] = hex[n>>12&0xf], hex[n>>8&0xf], hex[n>>4&0xf], hex[n&0xf]
	return b
}

// pktLen decodes the four hex digits of a pkt-line length.
func pktLen(hdr [4]byte) (int, bool) {
	n := 0
	for _, c := range hdr {
		switch {
		case '0' <= c && c <= '9':
			n = n<<4 | int(c-'0')
		case 'a' <= c && c <= 'f':
			n = n<<4 | int(c-'a'+10)
		case 'A' <= c && c <= 'F':
			n = n<<4 | int(c-'A'+10)
		default:
			return 0, false
		}
	}
	return n, true
}

// The special packets, shared by every read: a pkt's raw bytes are never
// written to.
var specialPkts = [3][]byte{[]byte(pktFlush), []byte(pktDelim), []byte("0002")}

// pkt is one pkt-line read from a client: raw holds the whole frame
// including the length, so a request can be replayed to git byte for byte.
// raw is read-only: flush and delimiter packets share one slice.
type pkt struct {
	raw     []byte
	payload []byte
}

func (p pkt) isFlush() bool { return string(p.raw) == pktFlush }
func (p pkt) isDelim() bool { return string(p.raw) == pktDelim }

// text returns the payload without its trailing newline.
func (p pkt) text() string { return string(bytes.TrimSuffix(p.payload, []byte{'\n'})) }

// pktReader reads pkt-lines from a client stream.
type pktReader struct {
	r   io.Reader
	hdr [4]byte
}

// next reads one pkt-line. io.EOF means the client closed the stream at a
// frame boundary.
func (pr *pktReader) next() (pkt, error) {
	if _, err := io.ReadFull(pr.r, pr.hdr[:]); err != nil {
		return pkt{}, err
	}
	n, ok := pktLen(pr.hdr)
	if !ok {
		return pkt{}, fmt.Errorf("%w: length %q", errBadPkt, pr.hdr[:])
	}
	switch {
	case n <= 2:
		return pkt{raw: specialPkts[n]}, nil
	case n < 4 || n-4 > maxPktPayload:
		return pkt{}, fmt.Errorf("%w: length %d", errBadPkt, n)
	}
	raw := make([]byte, n)
	copy(raw, pr.hdr[:])
	if _, err := io.ReadFull(pr.r, raw[4:]); err != nil {
		return pkt{}, fmt.Errorf("%w: truncated: %v", errBadPkt, err)
	}
	return pkt{raw: raw, payload: raw[4:]}, nil
}

// skipAdvertisement reads and discards pkt-lines from git up to and
// including the first flush: the ref advertisement of a stateful
// upload-pack that fjord has already answered from its snapshot.
func skipAdvertisement(r io.Reader) error {
	pr := pktReader{r: r}
	for {
		p, err := pr.next()
		if err != nil {
			return fmt.Errorf("read git's advertisement: %w", err)
		}
		if p.isFlush() {
			return nil
		}
	}
}
