package store

import (
	"fmt"
	"os"
)

// Space ahead of the database is zero-filled before bbolt needs it.
//
// bbolt grows its file with ftruncate, which leaves a sparse tail: every
// commit that writes into it makes the file system allocate blocks and
// journal that allocation inside the commit's fdatasync. Measured on ext4,
// a 48 KiB write+fdatasync costs about 450µs into a sparse region against
// about 280µs into blocks already written. So the writer, between
// transactions (when nothing else writes the file), extends the file with
// written zeros ahead of the high-water mark; bbolt's grow then finds the
// file large enough and leaves it alone. Bytes past the high-water mark
// are never read by bbolt, so the zeros change nothing it sees.
const (
	preallocMin = 1 << 20
	preallocMax = 32 << 20
)

type preallocator struct {
	f    *os.File
	size int64 // current file size
	zero []byte
}

func newPreallocator(path string) (*preallocator, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("preallocate: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("preallocate: %w", err)
	}
	return &preallocator{f: f, size: fi.Size()}, nil
}

// ensure makes sure at least half a chunk of written space lies beyond
// used (the database's high-water mark, in bytes). It must only run while
// no write transaction is open.
func (p *preallocator) ensure(used int64) error {
	// Whole MiBs, so the file always ends on a page boundary.
	chunk := min(max(p.size/2, preallocMin), preallocMax) &^ (preallocMin - 1)
	if p.size-used >= chunk/2 {
		return nil
	}
	if fi, err := p.f.Stat(); err == nil && fi.Size() > p.size {
		p.size = fi.Size() // bbolt grew the file itself
		if p.size-used >= chunk/2 {
			return nil
		}
	}
	if p.zero == nil {
		p.zero = make([]byte, 1<<20)
	}
	end := (max(p.size, used) + chunk) &^ (preallocMin - 1)
	for off := max(p.size, used); off < end; off += int64(len(p.zero)) {
		n := min(int64(len(p.zero)), end-off)
		if _, err := p.f.WriteAt(p.zero[:n], off); err != nil {
			return fmt.Errorf("preallocate: %w", err)
		}
	}
	// Commit the block allocation now, not inside the next transaction.
	if err := p.f.Sync(); err != nil {
		return fmt.Errorf("preallocate: %w", err)
	}
	p.size = end
	return nil
}

func (p *preallocator) close() error { return p.f.Close() }
