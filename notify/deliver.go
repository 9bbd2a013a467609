package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/fjordhq/fjord/storage"
)

// Headers of every POST.
const (
	// HeaderSignature is "sha256=" and the hex HMAC-SHA256 of the body
	// with the notifier's secret; absent without a secret. Receivers
	// compare it in constant time (hmac.Equal), as for GitHub's webhooks.
	HeaderSignature = "X-Fjord-Signature-256"
	// HeaderEvent is the event type.
	HeaderEvent = "X-Fjord-Event"
	// HeaderDelivery is the delivery's ID, the same on every retry.
	HeaderDelivery = "X-Fjord-Delivery"
)

// Sign returns the HeaderSignature value of body under secret.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// body encodes ev in the notifier's format.
func body(format string, ev Event) ([]byte, error) {
	switch format {
	case FormatSlack:
		icon := map[EventType]string{SyncFailed: ":x:", HealthDegraded: ":warning:", Deployed: ":rocket:", DriftReverted: ":leftwards_arrow_with_hook:", MirrorFailed: ":x:"}[ev.Type]
		return json.Marshal(map[string]string{"text": icon + " " + ev.Message})
	default:
		return json.Marshal(ev)
	}
}

// send makes one attempt: a POST of d's body to n. The attempt records the
// answer's code, or why there was none; a 2xx answer is success.
func (m *Manager) send(ctx context.Context, n storage.Notifier, d storage.Delivery) storage.Attempt {
	at := storage.Attempt{Time: time.Now().UTC()}
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.URL, bytes.NewReader(d.Body))
	if err != nil {
		at.Error = "build the request: " + redactURLError(err)
		return at
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "fjord-notify")
	req.Header.Set(HeaderEvent, d.Event)
	req.Header.Set(HeaderDelivery, d.ID)
	if n.Secret != "" {
		req.Header.Set(HeaderSignature, Sign([]byte(n.Secret), d.Body))
	}
	resp, err := m.client.Do(req)
	if err != nil {
		at.Error = redactURLError(err)
		return at
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	at.Code = resp.StatusCode
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		at.Error = fmt.Sprintf("the receiver answered %s", resp.Status)
	}
	return at
}

// redactURLError drops the URL from an HTTP client error: webhook URLs
// (Slack's, for one) carry their token in the path.
func redactURLError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + " (url hidden): " + ue.Err.Error()
	}
	return err.Error()
}

// RedactURL returns the URL as `notify list` shows it: scheme and host,
// the path (which may hold a token) elided.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid)"
	}
	out := u.Scheme + "://" + u.Host
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		out += "/…"
	}
	return out
}

// deliver sends d until it succeeds or its attempts are spent, recording
// every attempt. It returns early, the delivery still pending, when ctx
// ends: the next start resumes it.
func (m *Manager) deliver(ctx context.Context, d storage.Delivery) {
	for {
		n, err := m.store.Notifier(d.Notifier)
		if err != nil {
			return // deleted meanwhile: its deliveries went with it
		}
		at := m.send(ctx, n, d)
		if ctx.Err() != nil {
			return
		}
		// Counted only once recorded: a POST cut short by the stop is
		// not the receiver's failure, and the next start sends it again.
		d.Attempts = append(d.Attempts, at)
		m.metrics.attempt(d.Notifier, at)
		switch {
		case at.Error == "":
			d.State = storage.DeliveryDelivered
		case len(d.Attempts) >= m.attempts:
			d.State = storage.DeliveryFailed
			m.log.Warn("notification not delivered; attempts spent", "notifier", d.Notifier, "delivery", d.ID, "event", d.Event, "attempts", len(d.Attempts), "err", at.Error)
		}
		if d.State != storage.DeliveryPending {
			m.metrics.finished(d, time.Now())
		}
		if err := m.store.UpdateDelivery(d); err != nil {
			m.log.Error("record notification attempt", "notifier", d.Notifier, "delivery", d.ID, "err", err)
		}
		if d.State != storage.DeliveryPending {
			return
		}
		wait := m.backoff(len(d.Attempts))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// backoff is the wait after the n-th failed attempt: RetryBase doubled
// each time, at most RetryMax.
func (m *Manager) backoff(n int) time.Duration {
	d := m.retryBase
	for i := 1; i < n && d < m.retryMax; i++ {
		d *= 2
	}
	return min(d, m.retryMax)
}
