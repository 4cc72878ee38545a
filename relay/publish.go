package relay

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on the identifying fields of a published event.
const (
	maxTypeLen = 200
	maxIDLen   = 200
)

// publishRequest is the body of POST /v1/events.
type publishRequest struct {
	Type *string         `json:"type"`
	ID   *string         `json:"id"`
	Data json.RawMessage `json:"data"`
}

// deliveryBody is what every hook receives for a published event.
type deliveryBody struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Timestamp string          `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// handlePublish accepts an event from a publisher. It answers 202 only
// after the event and its deliveries are durable; every refusal happens
// before anything is written.
func (r *Relay) handlePublish(w http.ResponseWriter, req *http.Request) {
	publisher, ok := r.authenticate(req)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="hookrelay"`)
		writeError(w, http.StatusUnauthorized, "missing or invalid publisher token")
		return
	}
	body, status, err := readBody(w, req, r.cfg.Server.MaxBody)
	if err != nil {
		writeError(w, status, err.Error())
		return
	}
	in, err := parsePublish(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}

	now := r.now()
	source := "publisher:" + publisher
	ev := Event{Source: source, Type: in.typ, Received: now}
	areq := AppendRequest{Hooks: r.router.route(in.typ)}
	if in.id != "" {
		ev.ID = in.id
		areq.DedupKey = source + "\x00" + in.id
		areq.DedupUntil = now.Add(r.cfg.Server.DedupWindow)
	} else {
		ev.ID = newEventID(now)
	}
	ev.Body, err = json.Marshal(deliveryBody{ID: ev.ID, Type: ev.Type, Timestamp: now.UTC().Format(time.RFC3339Nano), Data: in.data})
	if err != nil {
		writeError(w, http.StatusBadRequest, "data: "+err.Error())
		return
	}
	areq.Event = ev

	res, err := r.store.Append(req.Context(), areq)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return // the client went away; it was not told, so it will retry
		}
		r.log.Error("event not stored", logKeySubsystem, "ingest", "source", source, logKeyErr, err)
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "event could not be stored; retry")
		return
	}
	if !res.Duplicate && res.Deliveries > 0 {
		r.sched.notify(areq.Hooks)
	}
	status = http.StatusAccepted
	if res.Duplicate {
		status = http.StatusOK
	}
	writeJSON(w, status, publishResponse{ID: res.EventID, Deliveries: res.Deliveries, Duplicate: res.Duplicate})
}

type publishResponse struct {
	ID         string `json:"id"`
	Deliveries int    `json:"deliveries"`
	Duplicate  bool   `json:"duplicate,omitempty"`
}

func (r *Relay) authenticate(req *http.Request) (string, bool) {
	auth := req.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	name, ok := r.publishers[sha256.Sum256([]byte(strings.TrimSpace(token)))]
	return name, ok
}

// readBody reads the request body up to max bytes. A declared length over
// max is refused before anything is read.
func readBody(w http.ResponseWriter, req *http.Request, max int64) ([]byte, int, error) {
	if req.ContentLength > max {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body of %d bytes exceeds the limit of %d bytes", req.ContentLength, max)
	}
	size := req.ContentLength
	if size < 0 || size > max {
		size = 512
	}
	buf := bytes.NewBuffer(make([]byte, 0, size+1))
	_, err := buf.ReadFrom(http.MaxBytesReader(w, req.Body, max))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body exceeds the limit of %d bytes", max)
		}
		return nil, http.StatusBadRequest, fmt.Errorf("read body: %w", err)
	}
	return buf.Bytes(), 0, nil
}

type publishInput struct {
	typ  string
	id   string
	data json.RawMessage
}

// parsePublish validates a publish body strictly: a JSON object with a
// valid "type", an optional "id", an optional "data", nothing else.
func parsePublish(body []byte) (publishInput, error) {
	var in publishInput
	if !utf8.Valid(body) {
		return in, errors.New("body is not valid UTF-8")
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return in, errors.New("body is empty: send a JSON object with a type")
	}
	if trimmed[0] != '{' {
		return in, errors.New("body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var p publishRequest
	if err := dec.Decode(&p); err != nil {
		return in, fmt.Errorf("malformed JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); err != io.EOF {
		return in, errors.New("malformed JSON: data after the object")
	}
	if p.Type == nil {
		return in, errors.New(`missing "type"`)
	}
	if err := validType(*p.Type); err != nil {
		return in, err
	}
	in.typ = *p.Type
	if p.ID != nil {
		if err := validID(*p.ID); err != nil {
			return in, err
		}
		in.id = *p.ID
	}
	if len(p.Data) == 0 {
		in.data = json.RawMessage("null")
	} else {
		var buf bytes.Buffer
		buf.Grow(len(p.Data))
		if err := json.Compact(&buf, p.Data); err != nil {
			return in, fmt.Errorf("malformed JSON in data: %w", err)
		}
		in.data = buf.Bytes()
	}
	return in, nil
}

// validType accepts 1..200 characters of letters, digits and . _ : / -,
// which covers every provider's event naming seen in practice.
func validType(t string) error {
	if t == "" {
		return errors.New(`"type" is empty`)
	}
	if len(t) > maxTypeLen {
		return fmt.Errorf(`"type" is longer than %d characters`, maxTypeLen)
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._:/-", c) >= 0) {
			return fmt.Errorf(`"type" has character %s: use letters, digits and . _ : / -`, strconv.QuoteRune(rune(c)))
		}
	}
	return nil
}

// validID accepts 1..200 printable ASCII characters other than space.
func validID(id string) error {
	if id == "" {
		return errors.New(`"id" is empty: leave it out to have one generated`)
	}
	if len(id) > maxIDLen {
		return fmt.Errorf(`"id" is longer than %d characters`, maxIDLen)
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return errors.New(`"id" must be printable ASCII without spaces`)
		}
	}
	return nil
}

type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
