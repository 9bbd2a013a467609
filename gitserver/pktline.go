package gitserver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
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
	b = fmt.Appendf(b, "%04x", len(payload)+4)
	return append(b, payload...)
}

// pkt is one pkt-line read from a client: raw holds the whole frame
// including the length, so a request can be replayed to git byte for byte.
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
	n, err := strconv.ParseUint(string(pr.hdr[:]), 16, 16)
	if err != nil {
		return pkt{}, fmt.Errorf("%w: length %q", errBadPkt, pr.hdr[:])
	}
	switch {
	case n == 0 || n == 1 || n == 2:
		return pkt{raw: append([]byte(nil), pr.hdr[:]...)}, nil
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
