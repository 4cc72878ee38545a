package relay

import (
	"reflect"
	"testing"
)

func TestRouteEventFilters(t *testing.T) {
	r := newRouter([]HookConfig{
		{Name: "all", Events: []string{"*"}},
		{Name: "tilled-only", Events: []string{"*"}, Sources: []string{"source:tilled"}},
		{Name: "pos-only", Events: []string{"*"}, Sources: []string{"publisher:pos"}},
		{Name: "acct-1-2", Events: []string{"charge.*"}, Match: []MatchRule{{Path: []string{"account_id"}, Values: []any{"acct_1", "acct_2"}}}},
		{Name: "live-big", Events: []string{"*"}, Match: []MatchRule{
			{Path: []string{"data", "livemode"}, Values: []any{true}},
			{Path: []string{"data", "amount"}, Values: []any{int64(1000), int64(5000)}},
		}},
	})
	tests := []struct {
		name, origin, typ, body string
		want                    []string
	}{
		{"tilled acct_1", "source:tilled", "charge.succeeded", `{"account_id":"acct_1"}`, []string{"all", "tilled-only", "acct-1-2"}},
		{"tilled acct_3", "source:tilled", "charge.succeeded", `{"account_id":"acct_3"}`, []string{"all", "tilled-only"}},
		{"type filter first", "source:tilled", "payout.paid", `{"account_id":"acct_1"}`, []string{"all", "tilled-only"}},
		{"publisher", "publisher:pos", "charge.failed", `{"id":"x","data":{"livemode":true,"amount":1000.0}}`, []string{"all", "pos-only", "live-big"}},
		{"one rule fails", "publisher:pos", "x", `{"data":{"livemode":true,"amount":999}}`, []string{"all", "pos-only"}},
		{"missing member", "source:sfpy", "x", `{"data":{"amount":1000}}`, []string{"all"}},
		{"number is not a string", "source:sfpy", "charge.x", `{"account_id":1}`, []string{"all"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 2 { // the second time through the type cache
				if got := r.routeEvent(tt.origin, tt.typ, []byte(tt.body)); !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("got %q, want %q", got, tt.want)
				}
			}
		})
	}
	// The cached slice is never changed by filtering.
	if got := r.route("charge.succeeded"); !reflect.DeepEqual(got, []string{"all", "tilled-only", "pos-only", "acct-1-2", "live-big"}) {
		t.Fatalf("route cache changed: %q", got)
	}

	// Without filters routeEvent is route, slice and all.
	plain := newRouter([]HookConfig{{Name: "a", Events: []string{"*"}}})
	a, b := plain.routeEvent("source:x", "t", nil), plain.route("t")
	if len(a) != 1 || &a[0] != &b[0] {
		t.Fatalf("unfiltered routeEvent = %q, not route's slice", a)
	}
}

func FuzzLoadSources(f *testing.F) {
	f.Add([]byte("[[source]]\nname = \"t\"\nprovider = \"tilled\"\nsecret = [\"a\", \"b\"]\ntolerance = \"1m\"\nallow_ips = [\"10.0.0.0/8\", \"::1\"]\n"))
	f.Add([]byte("[[source]]\nname = \"h\"\nprovider = \"hmac\"\nsecret = \"s\"\nheader = \"X-S\"\nprefix = \"v1=\"\ntype_path = \"a.b\"\n"))
	f.Add([]byte("[[source]]\nname = \"b\"\nprovider = \"bankingcircle\"\nsecret = \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\"\nkey_encoding = \"base64\"\n"))
	f.Add([]byte("[[publisher]]\nname = \"p\"\ntoken = \"0123456789abcdef\"\n[[hook]]\nname = \"h\"\nurl = \"https://h/\"\nevents = [\"*\"]\nsources = [\"publisher:p\", \"x\"]\nmatch = { a.b = [1, \"x\", true], \"c.d\" = { e = 2 } }\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := LoadBytes("fuzz.toml", data)
		if err != nil {
			if cfg != nil {
				t.Fatal("config returned with an error")
			}
			return
		}
		for _, s := range cfg.Sources {
			if s.Provider == "" || s.Name == "" {
				t.Fatalf("incomplete source accepted: %+v", s)
			}
		}
	})
}
