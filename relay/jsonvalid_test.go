package relay

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestValidJSON(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, tt := range []struct {
		in   string
		want bool
	}{
		{`{}`, true}, {` {"a": [1, -2.5e+3, 0, true, false, null, "x\u00e9\n"]} `, true},
		{`"\ud83d\ude00"`, true}, {"\"\xff\"", true}, {`0`, true}, {`-0.0E-0`, true},
		{``, false}, {` `, false}, {`{`, false}, {`{"a"}`, false}, {`{"a":1,}`, false}, {`[1,]`, false},
		{`[1 2]`, false}, {`01`, false}, {`1.`, false}, {`.5`, false}, {`-`, false}, {`1e`, false},
		{`+1`, false}, {`"a`, false}, {"\"a\tb\"", false}, {`"\x"`, false}, {`"\u12"`, false},
		{`tru`, false}, {`nul`, false}, {`{} {}`, false}, {`{1:2}`, false}, {"\v{}", false},
		{deep(10000), true}, {deep(10001), false},
	} {
		if got := validJSON([]byte(tt.in)); got != tt.want {
			t.Errorf("validJSON(%.40q) = %v, want %v", tt.in, got, tt.want)
		}
		if got := json.Valid([]byte(tt.in)); got != tt.want {
			t.Errorf("the case %.40q is wrong: encoding/json says %v", tt.in, got)
		}
	}
}

// FuzzValidJSON holds validJSON to encoding/json.Valid.
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{`{"type":"a","data":{"x":[1,2.5e3,"\u00e9",null]}}`, `[]`, `"\\"`, `-0.1e+2`, `{"a":}`, "\"\x01\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := validJSON(b), json.Valid(b); got != want {
			t.Fatalf("validJSON(%q) = %v, encoding/json says %v", b, got, want)
		}
	})
}

func BenchmarkValidJSON(b *testing.B) {
	body := []byte(`{"type":"payment.succeeded","id":"pay_123","data":{"amount":1200,"currency":"usd","customer":{"id":"cus_1","email":"a@example.com"},"items":[` +
		strings.Repeat(`{"sku":"A-1","qty":2,"price":19.99},`, 24) + `{"sku":"B","qty":1,"price":5}]}}`)
	b.SetBytes(int64(len(body)))
	b.Run("validJSON", func(b *testing.B) {
		for range b.N {
			validJSON(body)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for range b.N {
			json.Valid(body)
		}
	})
}
