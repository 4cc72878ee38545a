package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// load drives concurrent POSTs against one URL.
type load struct {
	url        string
	token      string
	publishers int
	size       int
	// events caps the requests in all (0: no cap); duration caps the
	// time in which requests are started (those in flight finish).
	events   int
	duration time.Duration
	// sent, when set, is called with each event number before its
	// request is made (for publish-to-delivery latency).
	sent func(n int, at time.Time)
	// progress, when set, is called about every 200ms with the count.
	progress func(done int)
}

// loadResult is what a load run measured.
type loadResult struct {
	OK, Failed int
	Next       int // the first event number not sent
	Elapsed    time.Duration
	Latencies  []time.Duration // of the successful requests
}

func (r loadResult) perSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

// newClient is the one HTTP client every load uses, so ceilings and relay
// runs pay the same client cost.
func newClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			DisableCompression:  true,
			IdleConnTimeout:     30 * time.Second,
		},
	}
}

// eventBody returns a publish body of exactly size bytes (at least the
// bare envelope) for event n.
func eventBody(n, size int) []byte { return appendEventBody(nil, n, size) }

// appendEventBody appends the body for event n to b; publishers reuse one
// buffer so the load generator's own allocations stay out of the figures.
func appendEventBody(b []byte, n, size int) []byte {
	b = append(b, `{"type":"bench.event","id":"b`...)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, `","data":{"pad":"`...)
	for pad := size - len(b) - 3; pad > 0; pad-- {
		b = append(b, 'x')
	}
	return append(b, `"}}`...)
}

// run sends requests until the cap or the time is reached, or ctx ends.
// first is the number of the first event.
func (l *load) run(ctx context.Context, client *http.Client, first int) loadResult {
	var (
		next    atomic.Int64
		ok, bad atomic.Int64
		mu      sync.Mutex
		lats    []time.Duration
		wg      sync.WaitGroup
	)
	next.Store(int64(first))
	start := time.Now()
	var deadline time.Time
	if l.duration > 0 {
		deadline = start.Add(l.duration)
	}
	for range l.publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1024)
			buf := make([]byte, 0, l.size+64)
			reader := bytes.NewReader(nil)
			defer func() {
				mu.Lock()
				lats = append(lats, local...)
				mu.Unlock()
			}()
			for ctx.Err() == nil && (deadline.IsZero() || time.Now().Before(deadline)) {
				n := int(next.Add(1) - 1)
				if l.events > 0 && n >= first+l.events {
					return
				}
				buf = appendEventBody(buf[:0], n, l.size)
				reader.Reset(buf)
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.url, reader)
				if err != nil {
					bad.Add(1)
					return
				}
				req.Header.Set("Authorization", "Bearer "+l.token)
				req.Header.Set("Content-Type", "application/json")
				t0 := time.Now()
				if l.sent != nil {
					l.sent(n, t0)
				}
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						bad.Add(1)
					}
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					ok.Add(1)
					local = append(local, time.Since(t0))
				} else {
					bad.Add(1)
				}
			}
		}()
	}
	stopProgress := make(chan struct{})
	var pwg sync.WaitGroup
	if l.progress != nil {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stopProgress:
					return
				case <-t.C:
					l.progress(int(ok.Load()))
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stopProgress)
	pwg.Wait()
	last := int(next.Load())
	if l.events > 0 {
		last = min(last, first+l.events)
	}
	return loadResult{OK: int(ok.Load()), Failed: int(bad.Load()), Next: last, Elapsed: elapsed, Latencies: lats}
}

// Dist summarises a latency distribution.
type Dist struct {
	P50 time.Duration `json:"p50_ns"`
	P99 time.Duration `json:"p99_ns"`
	Max time.Duration `json:"max_ns"`
}

func distOf(d []time.Duration) Dist {
	if len(d) == 0 {
		return Dist{}
	}
	slices.Sort(d)
	at := func(q float64) time.Duration { return d[min(int(q*float64(len(d))), len(d)-1)] }
	return Dist{P50: at(0.50), P99: at(0.99), Max: d[len(d)-1]}
}

func (d Dist) String() string {
	return fmt.Sprintf("p50 %v  p99 %v  max %v", round(d.P50), round(d.P99), round(d.Max))
}

func round(d time.Duration) time.Duration {
	switch {
	case d > time.Second:
		return d.Round(10 * time.Millisecond)
	case d > time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}
