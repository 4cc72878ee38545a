package store

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"hookrelay/relay"
)

// The write-ahead log makes appends durable with one fdatasync of a
// sequential write, instead of the two fdatasyncs and the page writes of a
// bbolt commit; the events are copied into bbolt afterwards, in larger
// transactions, off the acknowledgement path.
//
// The log is a directory of segment files. A record is
//
//	crc32c (4) | payload length (4) | record number (8) | payload
//
// with the checksum over everything after it. Record numbers are
// consecutive across the log, so a reader knows where valid data ends: at
// the first record that is short, fails its checksum, or does not carry
// the next number. That makes recycled segments safe to reuse without
// clearing them: what is left of their old contents carries older
// numbers. Segment names are informative only; recovery orders
// segments by the records inside them.
//
// Writes land only in space that has already been written (zeros or old
// records), so a record's fdatasync never has to journal block allocation
// or a size change; measured on ext4 that halves its cost.

const (
	walDirName    = "wal"
	walExt        = ".wal"
	walHeaderSize = 16
	// walMaxRecord bounds one record, so a corrupt length is recognised
	// without reading it.
	walMaxRecord = 256 << 20
	// walChunk is how much zero-filled space a segment grows by, at most.
	walChunk = 4 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// segment is one file of the log.
type segment struct {
	path        string
	f           *os.File
	first, last uint64 // record numbers it holds; last == 0 when empty

	// mu is held while the file is zero-filled; size is the bytes of the
	// file already written, which records may be written over.
	mu   sync.Mutex
	size atomic.Int64
}

// wal is the log's writer side. It is owned by one goroutine, apart from
// the filler goroutine that zero-fills ahead of the writer.
type wal struct {
	dir     string
	maxSize int64      // a segment is rotated once it would exceed this
	chunk   int64      // zero-filled space is added in steps of this
	segs    []*segment // oldest first; the last one is written
	off     int64      // write offset in the current segment

	fill     chan *segment // requests to the filler
	fillDone chan struct{}
	fillErr  atomic.Pointer[error]
}

// zeros is what segments are filled with; it is never written.
var zeros = make([]byte, 1<<20)

// appendRecord encodes one record onto b; payload appends the payload.
func appendRecord(b []byte, seq uint64, payload func([]byte) []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, walHeaderSize)...)
	b = payload(b)
	binary.LittleEndian.PutUint32(b[start+4:], uint32(len(b)-start-walHeaderSize))
	binary.LittleEndian.PutUint64(b[start+8:], seq)
	binary.LittleEndian.PutUint32(b[start:], crc32.Checksum(b[start+4:], crcTable))
	return b
}

// scanSegment calls fn for each record of data in order, while the
// records are valid and consecutive, and returns the first and last
// record numbers seen (0, 0 for none).
func scanSegment(data []byte, fn func(seq uint64, payload []byte) error) (first, last uint64, err error) {
	return scanRecords(bytes.NewReader(data), int64(len(data)), fn)
}

// scanFile is scanSegment over a segment file, read through a bounded
// buffer so that memory does not grow with the segment.
func scanFile(f *os.File, fn func(seq uint64, payload []byte) error) (first, last uint64, size int64, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("read log segment: %w", err)
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, fi.Size()), 1<<20)
	first, last, err = scanRecords(r, fi.Size(), fn)
	return first, last, fi.Size(), err
}

// scanRecords reads records from r, which holds size bytes. The payload
// given to fn is only valid during the call. A read error other than the
// end of the data is returned.
func scanRecords(r io.Reader, size int64, fn func(seq uint64, payload []byte) error) (first, last uint64, err error) {
	var (
		hdr [walHeaderSize]byte
		buf []byte
		off int64
	)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return first, last, endOfData(err)
		}
		n := int64(binary.LittleEndian.Uint32(hdr[4:]))
		off += walHeaderSize
		if n > walMaxRecord || n > size-off {
			return first, last, nil
		}
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return first, last, endOfData(err)
		}
		off += n
		crc := crc32.Update(crc32.Checksum(hdr[4:], crcTable), crcTable, buf)
		seq := binary.LittleEndian.Uint64(hdr[8:])
		if crc != binary.LittleEndian.Uint32(hdr[:4]) || seq == 0 || (last != 0 && seq != last+1) {
			return first, last, nil
		}
		if fn != nil {
			if err := fn(seq, buf); err != nil {
				return first, last, err
			}
		}
		if first == 0 {
			first = seq
		}
		last = seq
	}
}

func endOfData(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return nil
	}
	return fmt.Errorf("read log segment: %w", err)
}

func segmentName(first uint64) string { return fmt.Sprintf("%016x%s", first, walExt) }

// openWAL opens the log in dir, creating it if needed, and calls replay
// with every record whose number is above applied, in order. It returns
// the number of the last record in the log (applied when there is none
// above it). After replay the whole log counts as applied: the caller
// must have made what replay received durable before it writes.
func openWAL(dir string, maxSize int64, applied uint64, replay func(lsn uint64, payload []byte) error) (*wal, uint64, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, 0, fmt.Errorf("create log dir: %w", err)
	}
	w := &wal{dir: dir, maxSize: maxSize, chunk: min(walChunk, (maxSize+4095)&^4095),
		fill: make(chan *segment, 1), fillDone: make(chan struct{})}
	go w.filler()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, 0, fmt.Errorf("read log dir: %w", err)
	}
	var live []*segment // segments holding records above applied
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), walExt) {
			continue
		}
		seg, err := w.openSegment(filepath.Join(dir, e.Name()))
		if err != nil {
			w.close()
			return nil, 0, err
		}
		w.segs = append(w.segs, seg)
		if seg.last > applied {
			live = append(live, seg)
		}
	}
	slices.SortFunc(live, func(a, b *segment) int { return compareSeq(a.first, b.first) })
	next := applied + 1
	for _, seg := range live {
		if seg.first > next {
			w.close()
			return nil, 0, fmt.Errorf("write-ahead log %s: records %d to %d are missing", dir, next, seg.first-1)
		}
		if _, _, _, err := scanFile(seg.f, func(seq uint64, payload []byte) error {
			if seq < next {
				return nil
			}
			next = seq + 1
			return replay(seq, payload)
		}); err != nil {
			w.close()
			return nil, 0, fmt.Errorf("replay %s: %w", seg.path, err)
		}
	}
	// Everything is applied now: every segment is free for reuse. Write
	// into the largest one, so the log needs no zero-filling at start.
	slices.SortFunc(w.segs, func(a, b *segment) int { return compareSeq(uint64(a.size.Load()), uint64(b.size.Load())) })
	for _, seg := range w.segs {
		seg.last = 0
	}
	if len(w.segs) == 0 {
		seg, err := w.createSegment(next)
		if err != nil {
			w.close()
			return nil, 0, err
		}
		w.segs = append(w.segs, seg)
	}
	// Segments beyond a spare are removed by trim, once what replay
	// handed over is committed.
	cur := w.segs[len(w.segs)-1]
	if err := w.reuse(cur, next); err != nil {
		w.close()
		return nil, 0, err
	}
	return w, next - 1, nil
}

func compareSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// openSegment opens an existing segment and finds the records in it.
func (w *wal) openSegment(path string) (*segment, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open log segment: %w", err)
	}
	first, last, size, err := scanFile(f, nil)
	if err != nil {
		f.Close()
		return nil, err
	}
	seg := &segment{path: path, f: f, first: first, last: last}
	seg.size.Store(size)
	return seg, nil
}

// createSegment creates a zero-filled segment for records from first on,
// durably (file and directory entry), before anything is acknowledged
// from it.
func (w *wal) createSegment(first uint64) (*segment, error) {
	path := filepath.Join(w.dir, segmentName(first))
	w.dropNamed(path, nil)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create log segment: %w", err)
	}
	seg := &segment{path: path, f: f}
	if err := w.grow(seg, w.chunk); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	if err := syncDir(w.dir); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return seg, nil
}

// grow zero-fills seg up to at least size bytes and makes that durable.
// Only space beyond seg.size is written, under seg.mu, so it never
// overwrites records.
func (w *wal) grow(seg *segment, size int64) error {
	seg.mu.Lock()
	defer seg.mu.Unlock()
	from := seg.size.Load()
	if size <= from {
		return nil
	}
	size = (size + w.chunk - 1) / w.chunk * w.chunk
	for off := from; off < size; {
		n := min(int64(len(zeros)), size-off)
		if _, err := seg.f.WriteAt(zeros[:n], off); err != nil {
			return fmt.Errorf("zero-fill log segment: %w", err)
		}
		off += n
	}
	if err := seg.f.Sync(); err != nil {
		return fmt.Errorf("zero-fill log segment: %w", err)
	}
	seg.size.Store(size)
	return nil
}

// filler zero-fills what prepare asks for, off the writer's path: a 4 MiB
// fill and its fsync take tens of milliseconds on a slow disk.
func (w *wal) filler() {
	defer close(w.fillDone)
	for seg := range w.fill {
		if err := w.grow(seg, min(seg.size.Load()+w.chunk, w.maxSize)); err != nil {
			w.fillErr.Store(&err)
		}
	}
}

// reuse makes seg, whose records are all applied, the segment written
// next, starting at its beginning with sequence number first.
func (w *wal) reuse(seg *segment, first uint64) error {
	path := filepath.Join(w.dir, segmentName(first))
	// A fill of its tail may still be running: wait for it.
	seg.mu.Lock()
	defer seg.mu.Unlock()
	if path != seg.path {
		w.dropNamed(path, seg)
		if err := os.Rename(seg.path, path); err != nil {
			return fmt.Errorf("recycle log segment: %w", err)
		}
		seg.path = path
	}
	seg.first, seg.last = 0, 0
	w.segs = slices.DeleteFunc(w.segs, func(s *segment) bool { return s == seg })
	w.segs = append(w.segs, seg)
	w.off = 0
	return nil
}

// dropNamed removes any segment other than keep that has path. The name
// is that of records about to be written, so such a segment holds none
// that are valid (a first write to it was torn): replacing its file
// while it stayed in the list would leave a handle to a deleted file.
func (w *wal) dropNamed(path string, keep *segment) {
	for _, s := range w.segs {
		if s != keep && s.path == path {
			w.remove(s)
			return
		}
	}
}

// trim removes the segments beyond the one written and one spare. Only
// for a log whose records are all applied.
func (w *wal) trim() {
	for len(w.segs) > 2 {
		w.remove(w.segs[0])
	}
}

func (w *wal) remove(seg *segment) {
	seg.mu.Lock() // not while the filler writes to it
	defer seg.mu.Unlock()
	seg.f.Close()
	os.Remove(seg.path)
	w.segs = slices.DeleteFunc(w.segs, func(s *segment) bool { return s == seg })
}

// write appends buf, which holds the records first..last, and makes it
// durable. applied is the highest sequence number bbolt has durably: a
// segment holding nothing above it may be recycled.
func (w *wal) write(buf []byte, first, last, applied uint64) error {
	cur := w.segs[len(w.segs)-1]
	if w.off > 0 && w.off+int64(len(buf)) > w.maxSize {
		if err := w.rotate(first, applied); err != nil {
			return err
		}
		cur = w.segs[len(w.segs)-1]
	}
	if end := w.off + int64(len(buf)); end > cur.size.Load() {
		// Only a record larger than what is zero-filled ahead gets here.
		if err := w.grow(cur, end); err != nil {
			return err
		}
	}
	if _, err := cur.f.WriteAt(buf, w.off); err != nil {
		return fmt.Errorf("write log: %w", err)
	}
	if err := unix.Fdatasync(int(cur.f.Fd())); err != nil {
		return fmt.Errorf("sync log: %w", err)
	}
	w.off += int64(len(buf))
	if cur.first == 0 {
		cur.first = first
	}
	cur.last = last
	return nil
}

// prepare has the filler zero-fill ahead of the write offset, so that
// records keep landing in written space. It reports a failed fill once.
func (w *wal) prepare() error {
	if err := w.fillErr.Swap(nil); err != nil {
		return *err
	}
	cur := w.segs[len(w.segs)-1]
	if size := cur.size.Load(); size-w.off >= w.chunk/2 || size >= w.maxSize {
		return nil
	}
	select {
	case w.fill <- cur:
	default: // a fill is already asked for
	}
	return nil
}

// rotate switches to another segment for records from first on: a spare
// whose records are all applied, or a new one.
func (w *wal) rotate(first, applied uint64) error {
	cur := w.segs[len(w.segs)-1]
	var spares []*segment
	for _, seg := range w.segs {
		if seg != cur && seg.last <= applied {
			spares = append(spares, seg)
		}
	}
	if len(spares) > 0 {
		// More than one spare is what a burst left behind: drop the rest.
		for _, seg := range spares[1:] {
			w.remove(seg)
		}
		return w.reuse(spares[0], first)
	}
	seg, err := w.createSegment(first)
	if err != nil {
		return err
	}
	w.segs = append(w.segs, seg)
	w.off = 0
	return nil
}

func (w *wal) close() error {
	if w.fill != nil {
		close(w.fill)
		<-w.fillDone
		w.fill = nil
	}
	var errs []error
	for _, seg := range w.segs {
		if err := seg.f.Close(); err != nil && !errors.Is(err, fs.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir: %w", err)
	}
	return nil
}

// LogCommitRate measures back-to-back log commits in a new log under dir:
// batches of batch events with size-byte bodies and hooks deliveries
// each, encoded, written and fdatasync'd exactly as the log writer does,
// for d. It is the rate the log writer reaches when it is never idle.
func LogCommitRate(dir string, batch, size, hooks int, d time.Duration) (float64, error) {
	c, err := newLogCommitter(dir, size, hooks)
	if err != nil {
		return 0, fmt.Errorf("log commit rate: %w", err)
	}
	defer c.w.close()
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		if err := c.commit(batch); err != nil {
			return 0, fmt.Errorf("log commit rate: %w", err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// logCommitter commits synthetic batches to a log of its own.
type logCommitter struct {
	w   *wal
	req relay.AppendRequest
	buf []byte
	seq uint64
}

func newLogCommitter(dir string, size, hooks int) (*logCommitter, error) {
	w, _, err := openWAL(dir, 64<<20, 0, nil)
	if err != nil {
		return nil, err
	}
	names := make([]string, hooks)
	for i := range names {
		names[i] = fmt.Sprintf("h%d", i)
	}
	return &logCommitter{w: w, req: relay.AppendRequest{Hooks: names, Event: relay.Event{ID: "evt_rate",
		Source: "publisher:bench", Type: "bench.event", Received: time.Now(), Body: make([]byte, size)}}}, nil
}

func (c *logCommitter) commit(batch int) error {
	c.buf = c.buf[:0]
	first := c.seq + 1
	for range batch {
		c.seq++
		e := newAppendEntry(&c.req)
		e.seq = c.seq
		c.buf = appendRecord(c.buf, c.seq, e.appendPayload)
	}
	if err := c.w.write(c.buf, first, c.seq, c.seq); err != nil {
		return err
	}
	return c.w.prepare()
}
