//go:build !linux

package store

// releaseMapped is a no-op where the kernel's accounting of mapped files
// differs; see mmap_linux.go.
func (s *Store) releaseMapped() error { return nil }
