package bench

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// boltCommitRate commits transactions back to back, each writing what
// batch ingested events write (an event record of about size bytes and,
// per hook, a task record and a due-index entry), with the same bbolt
// options as the store. It is the rate the store's writer could reach if
// it were never idle.
func boltCommitRate(dir string, batch, size, hooks int, d time.Duration) (float64, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, err
	}
	db, err := bolt.Open(filepath.Join(dir, "commits.db"), 0o600, &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return 0, fmt.Errorf("bolt commit rate: %w", err)
	}
	defer db.Close()
	names := [][]byte{[]byte("events"), []byte("tasks"), []byte("due")}
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, n := range names {
			if _, err := tx.CreateBucketIfNotExists(n); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return 0, err
	}
	event := bytes.Repeat([]byte{'e'}, size+80)
	task := bytes.Repeat([]byte{'t'}, 24)
	var seq uint64
	key := func() []byte {
		seq++
		var k [16]byte
		binary.BigEndian.PutUint64(k[:8], uint64(time.Now().UnixNano()))
		binary.BigEndian.PutUint64(k[8:], seq)
		return k[:]
	}
	start := time.Now()
	n := 0
	for time.Since(start) < d {
		err := db.Update(func(tx *bolt.Tx) error {
			ev, ts, due := tx.Bucket(names[0]), tx.Bucket(names[1]), tx.Bucket(names[2])
			for range batch {
				if err := ev.Put(key()[8:], event); err != nil {
					return err
				}
				for range hooks {
					k := key()
					if err := ts.Put(k[8:], task); err != nil {
						return err
					}
					if err := due.Put(k, []byte{1, 0}); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("bolt commit rate: %w", err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// rssSampler records the largest resident set size seen.
type rssSampler struct {
	quit      chan struct{}
	wg        sync.WaitGroup
	mu        sync.Mutex
	rss, anon int64
}

func startRSSSampler() *rssSampler {
	s := &rssSampler{quit: make(chan struct{})}
	s.sample()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.quit:
				return
			case <-t.C:
				s.sample()
			}
		}
	}()
	return s
}

func (s *rssSampler) sample() {
	rss, anon := readRSS()
	s.mu.Lock()
	s.rss, s.anon = max(s.rss, rss), max(s.anon, anon)
	s.mu.Unlock()
}

func (s *rssSampler) max() (int64, int64) {
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rss, s.anon
}

func (s *rssSampler) stop() {
	close(s.quit)
	s.wg.Wait()
}

// readRSS returns VmRSS and RssAnon of this process in bytes (0 where
// /proc is not available).
func readRSS() (rss, anon int64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "RssAnon":
			anon = kb << 10
		}
	}
	return rss, anon
}

// progress prints one updating line to a terminal.
type progress struct {
	w     io.Writer
	mu    sync.Mutex
	phase string
	start time.Time
}

func (p *progress) say(phase string) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.phase, p.start = phase, time.Now()
	fmt.Fprintf(p.w, "\r\033[K%s...", phase)
}

// count returns a callback that shows a running count for phase.
func (p *progress) count(phase string) func(int) {
	if p.w == nil {
		return nil
	}
	start := time.Now()
	return func(n int) {
		p.mu.Lock()
		defer p.mu.Unlock()
		secs := time.Since(start).Seconds()
		fmt.Fprintf(p.w, "\r\033[K%s: %d (%.0f/s)", phase, n, float64(n)/max(secs, 0.001))
	}
}

// of returns a callback that shows how much of total is done in phase.
func (p *progress) of(phase string, total int) func(int) {
	if p.w == nil {
		return nil
	}
	return func(n int) {
		p.mu.Lock()
		defer p.mu.Unlock()
		fmt.Fprintf(p.w, "\r\033[K%s: %d of %d", phase, n, total)
	}
}

func (p *progress) done() {
	if p.w != nil {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
