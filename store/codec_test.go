package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"testing"
	"time"

	"hookrelay/relay"
)

func TestEventRecordRoundTrip(t *testing.T) {
	in := relay.Event{ID: "evt_1", Source: "source:tilled", Type: "charge.succeeded", Received: t0,
		Headers: []relay.Header{{Name: "Tilled-Signature", Value: "t=1,v1=ab"}, {Name: "X-Request-Id", Value: "r1"}, {Name: "X-Request-Id", Value: "r2"}},
		Body:    []byte(`{"id":"evt_1"}`)}
	rec := encodeEvent(&in, []string{"a", "b"})
	out, hooks, err := decodeEvent(rec, true)
	if err != nil {
		t.Fatal(err)
	}
	if out.ID != in.ID || out.Source != in.Source || out.Type != in.Type || !out.Received.Equal(in.Received) ||
		!bytes.Equal(out.Body, in.Body) || !slices.Equal(out.Headers, in.Headers) || !slices.Equal(hooks, []string{"a", "b"}) {
		t.Fatalf("decoded %+v %q, want %+v", out, hooks, in)
	}
	if id, n, err := eventID(rec); err != nil || id != "evt_1" || n != 2 {
		t.Fatalf("eventID = %q, %d, %v", id, n, err)
	}
}

// Records written before events kept headers (version 1) still read.
func TestEventRecordVersion1(t *testing.T) {
	b := []byte{recordV1}
	b = binary.AppendVarint(b, t0.UnixNano())
	b = binary.AppendUvarint(b, 1)
	b = appendString(b, "h")
	b = appendString(b, "evt_old")
	b = appendString(b, "publisher:pos")
	b = appendString(b, "payment.succeeded")
	b = append(b, `{"old":true}`...)
	ev, hooks, err := decodeEvent(b, true)
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID != "evt_old" || ev.Type != "payment.succeeded" || string(ev.Body) != `{"old":true}` || ev.Headers != nil ||
		!ev.Received.Equal(t0) || !slices.Equal(hooks, []string{"h"}) {
		t.Fatalf("decoded %+v %q", ev, hooks)
	}
}

func TestEventRecordCorrupt(t *testing.T) {
	good := encodeEvent(&relay.Event{ID: "e", Received: time.Unix(0, 1), Headers: []relay.Header{{Name: "A", Value: "b"}}}, nil)
	for name, rec := range map[string][]byte{
		"unknown version": append([]byte{9}, good[1:]...),
		"truncated":       good[:len(good)-3],
		// Everything up to the headers, then a count beyond maxHeaders.
		"header count": binary.AppendUvarint(good[:len(good)-5:len(good)-5], maxHeaders+1),
	} {
		if _, _, err := decodeEvent(rec, true); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: err = %v, want errCorrupt", name, err)
		}
	}
}
