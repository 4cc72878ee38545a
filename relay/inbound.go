package relay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Log attribute keys of the inbound path.
const (
	logKeySource = "source"
	logKeyRemote = "remote"
	logKeyStatus = "status"
	logKeyReason = "reason"
)

// refusal is why an inbound request is refused, with its HTTP status.
type refusal struct {
	status int
	msg    string
}

// source is a configured [[source]] ready to verify requests.
type source struct {
	cfg         *SourceConfig
	origin      string // Event.Source: "source:<name>"
	dedupPrefix string // "in:<name>:", apart from publishers' keys
	// allow is the peers accepted; empty means any.
	allow []netip.Prefix
}

// loopback is what a "none" source without allow_ips accepts: the
// configuration only allows it on a loopback listener, and a listener
// added later (a public HTTPS one) must not open it to the world.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

func newSources(cfgs []SourceConfig) map[string]*source {
	m := make(map[string]*source, len(cfgs))
	for i := range cfgs {
		c := &cfgs[i]
		s := &source{cfg: c, origin: sourcePrefix + c.Name, dedupPrefix: "in:" + c.Name + ":", allow: c.AllowIPs}
		if c.Provider == ProviderNone && len(c.AllowIPs) == 0 {
			s.allow = loopback
		}
		m[c.Name] = s
	}
	return m
}

// allowed reports whether the peer at remoteAddr ("ip:port") may post to
// s. Addresses are those of the TCP peer: behind a reverse proxy that is
// the proxy.
func (s *source) allowed(remoteAddr string) bool {
	if len(s.allow) == 0 {
		return true
	}
	var addr netip.Addr
	if ap, err := netip.ParseAddrPort(remoteAddr); err == nil {
		addr = ap.Addr()
	} else if a, err := netip.ParseAddr(remoteAddr); err == nil {
		addr = a
	} else {
		return false
	}
	addr = addr.Unmap().WithZone("")
	for _, p := range s.allow {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// verify checks a request's headers and body against the source's scheme
// and returns the events it carries. A failed check is a 401; a verified
// request whose body cannot be read as the provider's events is a 400.
func (s *source) verify(h http.Header, body []byte, now time.Time) ([]inboundEvent, *refusal) {
	c := s.cfg
	var err error
	switch c.Provider {
	case ProviderTilled:
		err = verifyTimestamped(c.Keys, h.Get(HeaderTilledSignature), body, now, c.Tolerance, true)
	case ProviderStripe:
		err = verifyTimestamped(c.Keys, h.Get(HeaderStripeSignature), body, now, c.Tolerance, false)
	case ProviderStandardWebhooks:
		err = VerifyStandard(c.Keys, h, body, now, c.Tolerance)
	case ProviderUSAePay:
		err = verifyBody(sha256Hash, c.Keys, h.Get(HeaderSignature), "", "hex", body)
		if err == nil && c.Username != "" {
			err = checkBasic(h.Get("Authorization"), c.Username, c.Password)
		}
	case ProviderGitHub:
		err = verifyBody(sha256Hash, c.Keys, h.Get(HeaderGitHubSignature), "sha256=", "hex", body)
	case ProviderHMAC:
		err = verifyBody(hashFor(c.Algorithm), c.Keys, h.Get(c.Header), c.Prefix, c.Encoding, body)
	case ProviderSFPY:
		if !validJSON(body) {
			return nil, &refusal{http.StatusBadRequest, "body is not valid JSON"}
		}
		sig := h.Get(HeaderSFPYSignature)
		if sig == "" {
			sig = h.Get(HeaderSFPYSignature2)
		}
		err = verifySFPY(c.Keys, sig, body)
	case ProviderBankingCircle:
		text, err := decryptBankingCircle(c.Keys, h, body)
		if errors.Is(err, errNotText) {
			return nil, &refusal{http.StatusBadRequest, err.Error()}
		}
		if err != nil {
			return nil, &refusal{http.StatusUnauthorized, "verification failed: " + err.Error()}
		}
		events, err := splitNotifications(text)
		if err != nil {
			return nil, &refusal{http.StatusBadRequest, err.Error()}
		}
		return events, nil
	case ProviderBasic:
		err = checkBasic(h.Get("Authorization"), c.Username, c.Password)
	case ProviderToken:
		header := c.Header
		if header == "" {
			header = "Authorization"
		}
		err = checkToken(h.Get(header), c.Header, c.Token)
	case ProviderNone:
	default:
		err = fmt.Errorf("provider %q has no verification", c.Provider)
	}
	if err != nil {
		return nil, &refusal{http.StatusUnauthorized, "verification failed: " + err.Error()}
	}

	if c.Provider != ProviderSFPY && !validJSON(body) {
		return nil, &refusal{http.StatusBadRequest, "body is not valid JSON"}
	}
	if body[skipSpace(body, 0)] != '{' {
		return nil, &refusal{http.StatusBadRequest, "body must be a JSON object"}
	}
	ev := inboundEvent{body: body}
	switch c.Provider {
	case ProviderTilled, ProviderStripe:
		ev.typ, err = eventType(body, pathType)
		ev.id, _ = eventID(body, pathID)
	case ProviderStandardWebhooks:
		ev.typ, err = eventType(body, pathType)
		ev.id = h.Get(HeaderWebhookID)
	case ProviderUSAePay:
		ev.typ, err = eventType(body, pathEventType)
		ev.id, _ = eventID(body, pathEventID)
	case ProviderSFPY:
		ev.typ, err = eventType(body, pathSFPYType)
		var ok bool
		if ev.id, ok = eventID(body, pathSFPYEventID); !ok {
			ev.id, _ = eventID(body, pathSFPYToken)
		}
	case ProviderGitHub:
		ev.typ = h.Get(HeaderGitHubEvent)
		if ev.typ == "" {
			err = errors.New("X-GitHub-Event header missing")
		} else {
			err = validInboundType(ev.typ)
		}
		ev.id = h.Get(HeaderGitHubDelivery)
	default:
		ev.typ, err = eventType(body, c.TypePath)
		ev.id, _ = eventID(body, c.IDPath)
	}
	if err != nil {
		return nil, &refusal{http.StatusBadRequest, err.Error()}
	}
	return []inboundEvent{ev}, nil
}

// handleInbound accepts a provider's webhook at POST /in/{source}. It
// answers 200 only after every event the request carries is durable (a
// duplicate within the dedup window counts as durable); every refusal
// happens before anything is written.
func (r *Relay) handleInbound(w http.ResponseWriter, req *http.Request) {
	name := req.PathValue("source")
	src := r.sources[name]
	if src == nil {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown source %q", name))
		return
	}
	if !src.allowed(req.RemoteAddr) {
		r.refuse(w, req, src, &refusal{http.StatusForbidden, "address not allowed for this source"})
		return
	}
	body, status, err := readBody(w, req, r.cfg.Server.MaxBody)
	if err != nil {
		r.refuse(w, req, src, &refusal{status, err.Error()})
		return
	}
	if len(body) == 0 {
		r.refuse(w, req, src, &refusal{http.StatusBadRequest, "body is empty"})
		return
	}
	now := r.now()
	events, rf := src.verify(req.Header, body, now)
	if rf != nil {
		r.refuse(w, req, src, rf)
		return
	}

	reqs := make([]AppendRequest, len(events))
	for i, e := range events {
		reqs[i] = r.inboundRequest(src, e, req.Header, now)
	}
	results, err := r.appendAll(req.Context(), reqs)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return // the provider went away; it was not told, so it will retry
		}
		r.log.Error("event not stored", logKeySubsystem, "ingest", logKeySource, src.origin, logKeyErr, err)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "event could not be stored; retry")
		return
	}
	out := make([]byte, 0, 64*len(results)+16)
	if src.cfg.Provider == ProviderBankingCircle {
		out = append(out, `{"events":[`...)
		for i, res := range results {
			if i > 0 {
				out = append(out, ',')
			}
			out = appendAppendResult(out, res)
		}
		out = append(out, "]}"...)
	} else {
		out = appendAppendResult(out, results[0])
	}
	writeRaw(w, http.StatusOK, append(out, '\n'))
}

// inboundRequest builds the store request of one verified event.
func (r *Relay) inboundRequest(src *source, e inboundEvent, h http.Header, now time.Time) AppendRequest {
	ev := Event{Source: src.origin, Type: e.typ, Received: now, Body: e.body}
	for _, name := range r.forward {
		for _, v := range h[name] {
			ev.Headers = append(ev.Headers, Header{Name: name, Value: v})
		}
	}
	areq := AppendRequest{Hooks: r.router.routeEvent(src.origin, e.typ, e.body)}
	if e.id != "" {
		key := e.id
		if len(key) > maxIDLen {
			sum := sha256.Sum256([]byte(key))
			key = "sha256:" + hex.EncodeToString(sum[:])
		}
		areq.DedupKey = src.dedupPrefix + key
		areq.DedupUntil = now.Add(r.cfg.Server.DedupWindow)
	}
	// Receivers deduplicate on webhook-id: the provider's id when it can
	// be sent in a header, else a generated one.
	if e.id != "" && validID(e.id) == nil {
		ev.ID = e.id
	} else {
		ev.ID = newEventID(now)
	}
	areq.Event = ev
	return areq
}

// maxParallelAppends bounds the appends of one multi-event request that
// wait for a commit at once.
const maxParallelAppends = 32

// appendAll appends every request, concurrently so that they share group
// commits, and returns their results in order, or the first error.
func (r *Relay) appendAll(ctx context.Context, reqs []AppendRequest) ([]AppendResult, error) {
	results := make([]AppendResult, len(reqs))
	if len(reqs) == 1 {
		res, err := r.store.Append(ctx, reqs[0])
		results[0] = res
		return results, err
	}
	errs := make([]error, len(reqs))
	sem := make(chan struct{}, maxParallelAppends)
	var wg sync.WaitGroup
	for i := range reqs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i], errs[i] = r.store.Append(ctx, reqs[i])
		}()
	}
	wg.Wait()
	return results, errors.Join(errs...)
}

// refuse answers a refused inbound request and logs why, without its
// body.
func (r *Relay) refuse(w http.ResponseWriter, req *http.Request, src *source, rf *refusal) {
	r.log.Warn("inbound request refused", logKeySubsystem, "ingest", logKeySource, src.origin,
		logKeyRemote, req.RemoteAddr, logKeyStatus, rf.status, logKeyReason, rf.msg)
	if rf.status == http.StatusUnauthorized && (src.cfg.Provider == ProviderBasic || src.cfg.Username != "") {
		w.Header().Set("WWW-Authenticate", `Basic realm="hookrelay"`)
	}
	writeError(w, rf.status, rf.msg)
}
