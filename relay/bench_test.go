package relay

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

func BenchmarkSignStandard(b *testing.B) {
	key, _ := DecodeStandardSecret(vectorSecret)
	body := bytes.Repeat([]byte{'x'}, 1024)
	b.SetBytes(int64(len(body)))
	for range b.N {
		SignStandard([][]byte{key}, "evt_01JBENCH", 1614265330, body)
	}
}

// hooks100 is a hundred hooks with a mix of exact types, prefix globs,
// suffix globs and catch-alls, as a busy merchant might configure.
func hooks100() []HookConfig {
	hooks := make([]HookConfig, 100)
	for i := range hooks {
		var events []string
		switch i % 5 {
		case 0:
			events = []string{fmt.Sprintf("payment.kind%d.*", i), "refund.initiated"}
		case 1:
			events = []string{"*.failed", fmt.Sprintf("charge.%d", i)}
		case 2:
			events = []string{"payment_intent.*", "payout.paid", "payout.failed"}
		case 3:
			events = []string{fmt.Sprintf("customer.%d.updated", i)}
		case 4:
			events = []string{"*"}
		}
		hooks[i] = HookConfig{Name: fmt.Sprintf("hook-%03d", i), Events: events}
	}
	return hooks
}

// BenchmarkRoute100Hooks matches an event type against 100 hooks without
// the cache (the worst case: every type new).
func BenchmarkRoute100Hooks(b *testing.B) {
	r := newRouter(hooks100())
	types := []string{"payment_intent.succeeded", "charge.failed", "refund.initiated", "customer.7.updated"}
	var n int
	for i := range b.N {
		n += len(r.match(types[i%len(types)]))
	}
	if n == 0 {
		b.Fatal("nothing routed")
	}
}

// BenchmarkRoute100HooksCached is the steady state: types seen before.
func BenchmarkRoute100HooksCached(b *testing.B) {
	r := newRouter(hooks100())
	types := []string{"payment_intent.succeeded", "charge.failed", "refund.initiated", "customer.7.updated"}
	var n int
	for i := range b.N {
		n += len(r.route(types[i%len(types)]))
	}
	if n == 0 {
		b.Fatal("nothing routed")
	}
}

func BenchmarkParsePublish(b *testing.B) {
	body := []byte(`{"type":"payment.succeeded","id":"pay_0123456789","data":{"amount":1200,"currency":"EUR","pad":"` +
		string(bytes.Repeat([]byte{'x'}, 900)) + `"}}`)
	b.SetBytes(int64(len(body)))
	for range b.N {
		in, err := parsePublish(body)
		if err != nil {
			b.Fatal(err)
		}
		appendDeliveryBody(nil, in.id, in.typ, time.Time{}, in.data)
	}
}
