package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Response handling limits.
const (
	// maxResponseRead is how much of a response body is read (and then
	// discarded) so the connection can be reused; the rest is dropped
	// with the connection.
	maxResponseRead = 64 << 10
	// maxExcerpt is how much of a response body is kept with the attempt.
	maxExcerpt = 256
)

// deliverer makes attempts to one hook.
type deliverer struct {
	hook   *HookConfig
	client *http.Client
	ua     string
	url    string
}

func newDeliverer(h *HookConfig, ua string) (*deliverer, error) {
	if h.URL == nil {
		return nil, errors.New("no url")
	}
	dialer := &net.Dialer{Timeout: min(h.Timeout, 10*time.Second), KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    min(h.Timeout, 10*time.Second),
		ResponseHeaderTimeout:  h.Timeout,
		ExpectContinueTimeout:  time.Second,
		MaxIdleConns:           h.Concurrency,
		MaxIdleConnsPerHost:    h.Concurrency,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &deliverer{
		hook: h,
		ua:   ua,
		url:  h.URL.String(),
		// No Client.Timeout: each attempt's context carries the deadline
		// (connect, request and the capped read of the response); the
		// client's own would clone every request to set another.
		client: &http.Client{
			Transport: transport,
			// Redirects are failures: following one would send a signed
			// payment event somewhere the operator did not configure.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// attemptResult is what one attempt produced.
type attemptResult struct {
	Attempt
	ok         bool
	retryAfter time.Duration // from a 429 or 503, else 0
}

// do makes one attempt of d. It never returns an error: every failure is
// described in the result.
func (dl *deliverer) do(ctx context.Context, d Delivery, now func() time.Time) attemptResult {
	start := now()
	res := attemptResult{Attempt: Attempt{N: d.Attempts + 1, At: start}}
	ctx, cancel := context.WithTimeout(ctx, dl.hook.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, dl.url, bytes.NewReader(d.Event.Body))
	if err != nil {
		res.Error = "build request: " + err.Error()
		return res
	}
	dl.sign(req, d, start)

	resp, err := dl.client.Do(req)
	if err != nil {
		res.Latency = now().Sub(start)
		res.Error = describeTransportError(err)
		return res
	}
	excerpt, readErr := readExcerpt(resp.Body)
	resp.Body.Close()
	res.Latency = now().Sub(start)
	res.Status = resp.StatusCode
	res.Excerpt = excerpt
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		res.ok = true
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		res.Error = fmt.Sprintf("redirect (%d) to %q not followed", resp.StatusCode, resp.Header.Get("Location"))
	default:
		res.Error = fmt.Sprintf("receiver answered %d", resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			res.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), start)
		}
	}
	if readErr != nil && res.ok {
		// The receiver said yes; a broken tail of its body changes nothing.
		readErr = nil
	}
	if readErr != nil && res.Error == "" {
		res.Error = "read response: " + readErr.Error()
	}
	return res
}

// sign sets the delivery headers: content type, user agent, the event id
// and timestamp, the signature, authentication and custom headers.
func (dl *deliverer) sign(req *http.Request, d Delivery, at time.Time) {
	h := req.Header
	// Forwarded first: the relay's own headers below take precedence
	// (the configuration refuses names that collide).
	for _, fh := range d.Event.Headers {
		if slices.Contains(dl.hook.ForwardHeaders, fh.Name) {
			h[fh.Name] = append(h[fh.Name], fh.Value)
		}
	}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", dl.ua)
	ts := at.Unix()
	h.Set(HeaderWebhookID, d.Event.ID)
	h.Set(HeaderWebhookTimestamp, strconv.FormatInt(ts, 10))
	switch dl.hook.Signature {
	case SignatureStandardWebhooks:
		h.Set(HeaderWebhookSignature, SignStandard(dl.hook.SigningKeys, d.Event.ID, ts, d.Event.Body))
	case SignatureHMACSHA256:
		h.Set(HeaderSignature, SignHMACSHA256(dl.hook.SigningKeys[0], d.Event.Body))
	case SignatureTilled:
		h.Set(HeaderTilledSignature, SignTimestamped(dl.hook.SigningKeys, at.UnixMilli(), d.Event.Body))
	case SignatureStripe:
		h.Set(HeaderStripeSignature, SignTimestamped(dl.hook.SigningKeys, ts, d.Event.Body))
	}
	switch dl.hook.Auth.Type {
	case AuthBasic:
		req.SetBasicAuth(dl.hook.Auth.Username, dl.hook.Auth.Password)
	case AuthBearer:
		h.Set("Authorization", "Bearer "+dl.hook.Auth.Token)
	}
	for k, v := range dl.hook.Headers {
		h.Set(k, v)
	}
}

// readExcerpt reads up to maxResponseRead bytes of body and returns the
// first maxExcerpt bytes, cut at a UTF-8 boundary.
func readExcerpt(body io.Reader) (string, error) {
	var buf [maxExcerpt]byte
	n, err := io.ReadFull(body, buf[:])
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = nil
	}
	if err == nil && n == len(buf) {
		_, err = io.CopyN(io.Discard, body, maxResponseRead-maxExcerpt)
		if err == io.EOF {
			err = nil
		}
	}
	b := buf[:n]
	for len(b) > 0 && !utf8.Valid(b) {
		b = b[:len(b)-1]
	}
	return string(b), err
}

// parseRetryAfter reads delta-seconds or an HTTP date; 0 when absent or
// invalid.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(365*24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func describeTransportError(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return "timeout: " + err.Error()
	default:
		return err.Error()
	}
}
