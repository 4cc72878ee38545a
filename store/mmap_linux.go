package store

import (
	"fmt"
	"syscall"

	bolt "go.etcd.io/bbolt"
)

// releaseMapped drops this process's page-table entries for the database
// mapping, so resident memory does not grow with the file as deliveries
// are read. It loses nothing: the mapping is a shared, read-only view of
// the file, the pages stay in the kernel's page cache, and the next read
// maps them again with a minor fault. The read transaction holds bbolt's
// mmap lock, so the mapping cannot move underneath.
func (s *Store) releaseMapped() error {
	return s.db.View(func(tx *bolt.Tx) error {
		size := tx.Size()
		if size <= 0 {
			return nil
		}
		data := s.db.Info().Data
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, data, uintptr(size), syscall.MADV_DONTNEED); errno != 0 {
			return fmt.Errorf("madvise: %w", errno)
		}
		return nil
	})
}
