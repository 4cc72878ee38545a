package relay

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Limits on the identifying fields of a published event.
const (
	maxTypeLen = 200
	maxIDLen   = 200
)

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
	// The body and the delivery body are built in recycled buffers: the
	// store copies what it keeps (Store.Append), so neither outlives this
	// call.
	bufs := bufferPool.Get().(*requestBuffers)
	defer bufs.release()
	body, status, err := readBodyInto(w, req, r.cfg.Server.MaxBody, bufs.body)
	if err != nil {
		writeError(w, status, err.Error())
		return
	}
	bufs.body = body
	in, err := parsePublish(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}

	now := r.now()
	source := "publisher:" + publisher
	ev := Event{Source: source, Type: in.typ, Received: now}
	var areq AppendRequest
	if in.id != "" {
		ev.ID = in.id
		areq.DedupKey = source + "\x00" + in.id
		areq.DedupUntil = now.Add(r.cfg.Server.DedupWindow)
	} else {
		ev.ID = newEventID(now)
	}
	ev.Body = appendDeliveryBody(bufs.delivery[:0], ev.ID, ev.Type, now, in.data)
	bufs.delivery = ev.Body
	areq.Event = ev
	areq.Hooks = r.router.routeEvent(source, in.typ, ev.Body)

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
	status = http.StatusAccepted
	if res.Duplicate {
		status = http.StatusOK
	}
	out := appendAppendResult(make([]byte, 0, 64+len(res.EventID)), res)
	writeRaw(w, status, append(out, '\n'))
}

// appendAppendResult appends the answer to an accepted event, for
// publishers and sources alike: {"id","deliveries"[,"duplicate":true]}.
func appendAppendResult(b []byte, res AppendResult) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, res.EventID)
	b = append(b, `,"deliveries":`...)
	b = appendInt(b, res.Deliveries)
	if res.Duplicate {
		b = append(b, `,"duplicate":true`...)
	}
	return append(b, '}')
}

// appendDeliveryBody appends what every hook receives for a published
// event to b: {"id":...,"type":...,"timestamp":RFC3339,"data":...} with
// data as the publisher sent it.
func appendDeliveryBody(b []byte, id, typ string, at time.Time, data []byte) []byte {
	b = slices.Grow(b, 80+len(id)+len(typ)+len(data))
	b = append(b, `{"id":`...)
	b = appendJSONString(b, id)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, typ)
	b = append(b, `,"timestamp":"`...)
	b = at.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","data":`...)
	b = append(b, data...)
	return append(b, '}')
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
	return readBodyInto(w, req, max, nil)
}

// readBodyInto is readBody reading into buf's capacity (growing it when it
// is too small); the body returned may share buf's memory.
func readBodyInto(w http.ResponseWriter, req *http.Request, max int64, buf []byte) ([]byte, int, error) {
	if req.ContentLength > max {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body of %d bytes exceeds the limit of %d bytes", req.ContentLength, max)
	}
	body := http.MaxBytesReader(w, req.Body, max)
	var (
		b   []byte
		err error
	)
	if req.ContentLength >= 0 {
		b = slices.Grow(buf[:0], int(req.ContentLength))[:req.ContentLength]
		_, err = io.ReadFull(body, b)
	} else {
		b, err = io.ReadAll(body)
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("body exceeds the limit of %d bytes", max)
		}
		return nil, http.StatusBadRequest, fmt.Errorf("read body: %w", err)
	}
	return b, 0, nil
}

type publishInput struct {
	typ  string
	id   string
	data []byte
}

// parsePublish validates a publish body strictly: a JSON object with a
// string "type", an optional string "id", an optional "data" of any JSON
// value, and no other or repeated member.
func parsePublish(body []byte) (publishInput, error) {
	var in publishInput
	if !utf8.Valid(body) {
		return in, errors.New("body is not valid UTF-8")
	}
	start := skipSpace(body, 0)
	if start == len(body) {
		return in, errors.New("body is empty: send a JSON object with a type")
	}
	if !validJSON(body) {
		return in, syntaxError(body)
	}
	if body[start] != '{' {
		return in, errors.New("body must be a JSON object")
	}
	var typ, id, data []byte
	err := objectMembers(body[start:], func(key, value []byte) error {
		name, _ := jsonString(key)
		var dst *[]byte
		switch name {
		case "type":
			dst = &typ
		case "id":
			dst = &id
		case "data":
			dst = &data
		default:
			return fmt.Errorf("unknown field %s: the body has type, id and data", strconv.Quote(name))
		}
		if *dst != nil {
			return fmt.Errorf("field %q appears twice", name)
		}
		*dst = value
		return nil
	})
	if err != nil {
		return in, err
	}
	if typ == nil {
		return in, errors.New(`missing "type"`)
	}
	var ok bool
	if in.typ, ok = jsonString(typ); !ok {
		return in, errors.New(`"type" must be a string`)
	}
	if err := validType(in.typ); err != nil {
		return in, err
	}
	if id != nil {
		if in.id, ok = jsonString(id); !ok {
			return in, errors.New(`"id" must be a string`)
		}
		if err := validID(in.id); err != nil {
			return in, err
		}
	}
	in.data = data
	if in.data == nil {
		in.data = []byte("null")
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
	writeRaw(w, status, append(b, '\n'))
}

// writeRaw writes an already encoded JSON answer.
func writeRaw(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	w.Write(b)
}

var jsonContentType = []string{"application/json"}

// maxPooledBuffer is the largest buffer kept for reuse, so that one large
// request does not pin its memory.
const maxPooledBuffer = 64 << 10

// requestBuffers are the byte slices a publish request is read into and
// its delivery body built in, recycled through bufferPool.
type requestBuffers struct {
	body, delivery []byte
}

var bufferPool = sync.Pool{New: func() any { return new(requestBuffers) }}

// release returns b to the pool; nothing may use its slices afterwards.
func (b *requestBuffers) release() {
	if cap(b.body) > maxPooledBuffer {
		b.body = nil
	}
	if cap(b.delivery) > maxPooledBuffer {
		b.delivery = nil
	}
	bufferPool.Put(b)
}
