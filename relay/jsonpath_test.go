package relay

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestLookupPath(t *testing.T) {
	const doc = ` { "type" : "charge.succeeded", "id":"evt_1", "n": -12.5e1,
	  "data": {"account_id": "acct_1", "deep": {"x": [1, {"y": "}"}], "z": true}},
	  "esc\u0061ped": "v", "dup": 1, "dup": 2, "arr": [{"a": 1}] }`
	tests := []struct {
		path string
		want string // raw JSON; "" for not found
	}{
		{"type", `"charge.succeeded"`},
		{"id", `"evt_1"`},
		{"n", `-12.5e1`},
		{"data.account_id", `"acct_1"`},
		{"data.deep.x", `[1, {"y": "}"}]`},
		{"data.deep.z", `true`},
		{"escaped", `"v"`},
		{"dup", `2`}, // the last one wins, as in encoding/json
		{"data.deep.x.y", ""},
		{"arr.a", ""}, // arrays are not indexed
		{"missing", ""},
		{"type.x", ""}, // a string has no members
		{"data.missing", ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, ok := lookupPath([]byte(doc), strings.Split(tt.path, "."))
			if tt.want == "" {
				if ok {
					t.Fatalf("found %q, want nothing", got)
				}
				return
			}
			if !ok || string(got) != tt.want {
				t.Fatalf("got %q (%v), want %q", got, ok, tt.want)
			}
		})
	}
	if _, ok := lookupPath([]byte(`[{"a":1}]`), []string{"a"}); ok {
		t.Fatal("found a member of an array")
	}
}

func TestMatchesValue(t *testing.T) {
	tests := []struct {
		raw  string
		want any
		ok   bool
	}{
		{`"acct_1"`, "acct_1", true},
		{`"acct_\u0031"`, "acct_1", true},
		{`"acct_2"`, "acct_1", false},
		{`1`, "1", false}, // a number is not a string
		{`"1"`, int64(1), false},
		{`42`, int64(42), true},
		{`42.0`, int64(42), true},
		{`4.2e1`, int64(42), true},
		{`-7`, int64(-7), true},
		{`42.5`, int64(42), false},
		{`true`, true, true},
		{`true`, false, false},
		{`false`, false, true},
		{`"true"`, true, false},
		{`null`, "null", false},
		{`{}`, "x", false},
	}
	for _, tt := range tests {
		if got := matchesValue([]byte(tt.raw), tt.want); got != tt.ok {
			t.Errorf("matchesValue(%s, %#v) = %v, want %v", tt.raw, tt.want, got, tt.ok)
		}
	}
}

func TestArrayElements(t *testing.T) {
	var got []string
	err := arrayElements([]byte(`[ {"a":[1,2]} , "x,y", 3,[],{} ]`), func(v []byte) error {
		got = append(got, string(v))
		return nil
	})
	want := []string{`{"a":[1,2]}`, `"x,y"`, `3`, `[]`, `{}`}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
	got = nil
	arrayElements([]byte(`[ ]`), func(v []byte) error { got = append(got, string(v)); return nil })
	if got != nil {
		t.Fatalf("empty array gave %q", got)
	}
}

// FuzzLookupPath checks the walker against encoding/json: for any valid
// document and path, both find the same value or both find nothing.
func FuzzLookupPath(f *testing.F) {
	f.Add([]byte(`{"a":{"b":"c"}}`), "a.b")
	f.Add([]byte(`{"a":1,"a":{"b":2}}`), "a.b")
	f.Add([]byte(` {"\u0061" : [1,{"b":2}], "c": "\"}"}`), "c")
	f.Add([]byte(`{"data":{"data":{"event_id":"e1"},"token":"t"}}`), "data.data.event_id")
	f.Add([]byte(`[{"a":1}]`), "a")
	f.Fuzz(func(t *testing.T, doc []byte, path string) {
		// Paths come from the configuration, valid UTF-8; encoding/json
		// replaces invalid bytes in keys, the walker compares them as sent.
		if !json.Valid(doc) || path == "" || !utf8.Valid(doc) || !utf8.ValidString(path) {
			return
		}
		names := strings.Split(path, ".")
		raw, ok := lookupPath(doc, names)

		var v any
		if err := json.Unmarshal(doc, &v); err != nil {
			t.Fatalf("json.Valid but Unmarshal fails: %v", err)
		}
		want, wantOK := v, true
		for _, name := range names {
			m, isObj := want.(map[string]any)
			if !isObj {
				wantOK = false
				break
			}
			if want, wantOK = m[name]; !wantOK {
				break
			}
		}
		if ok != wantOK {
			t.Fatalf("lookupPath(%q, %q) found=%v, encoding/json found=%v", doc, path, ok, wantOK)
		}
		if !ok {
			return
		}
		var got any
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatalf("value %q is not JSON: %v", raw, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("lookupPath(%q, %q) = %q, encoding/json says %#v", doc, path, raw, want)
		}
	})
}
