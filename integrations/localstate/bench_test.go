package localstate

import (
	"bytes"
	"context"
	"testing"
)

// BenchmarkPut measures one check-and-set write of a 4 KiB value (a host's
// history is about that size): store lock, counter and value written to
// temporary files, fsynced and renamed.
func BenchmarkPut(b *testing.B) {
	ctx := context.Background()
	s, err := New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	value := bytes.Repeat([]byte("x"), 4096)
	var ver uint64
	for b.Loop() {
		if ver, err = s.Put(ctx, "history/web-1.json", value, ver); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGet measures one lock-free read of a 4 KiB value.
func BenchmarkGet(b *testing.B) {
	ctx := context.Background()
	s, err := New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Put(ctx, "history/web-1.json", bytes.Repeat([]byte("x"), 4096), 0); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, _, err := s.Get(ctx, "history/web-1.json"); err != nil {
			b.Fatal(err)
		}
	}
}
