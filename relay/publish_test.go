package relay

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestParsePublish(t *testing.T) {
	tests := []struct {
		name, body    string
		typ, id, data string
		err           string
	}{
		{name: "full", body: `{"type":"payment.succeeded","id":"p1","data":{"a":[1,{"b":"}"}]}}`, typ: "payment.succeeded", id: "p1", data: `{"a":[1,{"b":"}"}]}`},
		{name: "spaces kept in data", body: " {\n \"data\" : { \"x\" : 1 } , \"type\" : \"a\" }\n", typ: "a", data: `{ "x" : 1 }`},
		{name: "no data", body: `{"type":"a"}`, typ: "a", data: "null"},
		{name: "escaped key and value", body: `{"\u0074ype":"a\u002eb","data":"x\"y"}`, typ: "a.b", data: `"x\"y"`},
		{name: "scalar data", body: `{"type":"a","data":12.5e3}`, typ: "a", data: "12.5e3"},
		{name: "empty object", body: `{}`, err: `missing "type"`},
		{name: "array", body: `[1]`, err: "JSON object"},
		{name: "bad json", body: `{"type":"a",}`, err: "malformed JSON at byte"},
		{name: "unknown", body: `{"type":"a","x":1}`, err: `unknown field "x"`},
		{name: "duplicate", body: `{"type":"a","data":1,"data":2}`, err: "twice"},
		{name: "bad utf8", body: "{\"type\":\"a\xff\"}", err: "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePublish([]byte(tt.body))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.typ != tt.typ || got.id != tt.id || string(got.data) != tt.data {
				t.Fatalf("got type %q id %q data %q", got.typ, got.id, got.data)
			}
		})
	}
}

func TestDeliveryBody(t *testing.T) {
	at := time.Date(2026, 11, 25, 12, 0, 0, 5, time.UTC)
	b := appendDeliveryBody(nil, `we"ird\id`, "a.b", at, []byte(`{"x":1}`))
	var got struct {
		ID, Type, Timestamp string
		Data                map[string]int
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if got.ID != `we"ird\id` || got.Type != "a.b" || got.Timestamp != "2026-11-25T12:00:00.000000005Z" || got.Data["x"] != 1 {
		t.Fatalf("decoded %+v from %s", got, b)
	}
}

func FuzzAppendJSONString(f *testing.F) {
	f.Add("plain")
	f.Add("quote\" back\\ ctl\x01\n\t")
	f.Fuzz(func(t *testing.T, s string) {
		b := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%q encoded as %s: %v", s, b, err)
		}
		if strings.ToValidUTF8(s, "\uFFFD") != back {
			t.Fatalf("round trip %q -> %s -> %q", s, b, back)
		}
	})
}

// FuzzParsePublish checks the fast parser against encoding/json: whatever
// it accepts must decode to the same type, id and data.
func FuzzParsePublish(f *testing.F) {
	for _, s := range []string{
		`{"type":"a","id":"b","data":{"c":[1,2,{"d":"}]"}]}}`,
		`{"type":"a"}`, `{"type":"a","data":null}`, `[]`, `{"type":1}`,
		`{"\u0074ype":"x"}`, ` {"data":"\"","type":"t"} `, `{"type":"a","data":{}}x`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		in, err := parsePublish(body)
		if err != nil {
			return
		}
		var ref map[string]json.RawMessage
		if err := json.Unmarshal(body, &ref); err != nil {
			t.Fatalf("accepted %q that encoding/json refuses: %v", body, err)
		}
		var typ string
		if err := json.Unmarshal(ref["type"], &typ); err != nil || typ != in.typ {
			t.Fatalf("type %q, encoding/json says %q (%v)", in.typ, typ, err)
		}
		if raw, ok := ref["id"]; ok {
			var id string
			if err := json.Unmarshal(raw, &id); err != nil || id != in.id {
				t.Fatalf("id %q, encoding/json says %q", in.id, id)
			}
		}
		want := "null"
		if raw, ok := ref["data"]; ok {
			want = string(raw)
		}
		if string(in.data) != want {
			t.Fatalf("data %q, encoding/json says %q", in.data, want)
		}
		for k := range ref {
			if k != "type" && k != "id" && k != "data" {
				t.Fatalf("unknown member %q accepted", k)
			}
		}
	})
}
