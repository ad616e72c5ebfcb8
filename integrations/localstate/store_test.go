package localstate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/gofrs/flock"

	"github.com/rollguard/rollguard/ports"
)

func newStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := New(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPutGetDeleteVersions(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, t.TempDir())

	if v, ver, err := s.Get(ctx, "history/web-1.json"); err != nil || v != nil || ver != 0 {
		t.Fatalf("Get of a missing key = %q, %d, %v; want nil, 0, nil", v, ver, err)
	}
	v1, err := s.Put(ctx, "history/web-1.json", []byte(`[1]`), 0)
	if err != nil || v1 == 0 {
		t.Fatalf("create: version %d, %v", v1, err)
	}
	cases := []struct {
		name    string
		value   string
		version uint64
		wantErr error
	}{
		{"create again", `[x]`, 0, ports.ErrConflict},
		{"stale version", `[x]`, v1 + 7, ports.ErrConflict},
		{"current version", `[1,2]`, v1, nil},
		{"the version just replaced", `[x]`, v1, ports.ErrConflict},
	}
	version := v1
	want := `[1]`
	for _, st := range cases {
		got, err := s.Put(ctx, "history/web-1.json", []byte(st.value), st.version)
		if !errors.Is(err, st.wantErr) || (st.wantErr == nil) != (err == nil) {
			t.Fatalf("%s: Put error %v, want %v", st.name, err, st.wantErr)
		}
		if err == nil {
			if got <= version {
				t.Fatalf("%s: version %d after %d: versions must grow", st.name, got, version)
			}
			version, want = got, st.value
		}
		value, ver, err := s.Get(ctx, "history/web-1.json")
		if err != nil || string(value) != want || ver != version {
			t.Fatalf("%s: Get = %q, %d, %v; want %q, %d", st.name, value, ver, err, want, version)
		}
	}

	if err := s.Delete(ctx, "history/web-1.json", v1); !errors.Is(err, ports.ErrConflict) {
		t.Fatalf("Delete with a stale version: %v, want ErrConflict", err)
	}
	if err := s.Delete(ctx, "history/web-1.json", version); err != nil {
		t.Fatal(err)
	}
	if v, ver, _ := s.Get(ctx, "history/web-1.json"); v != nil || ver != 0 {
		t.Fatalf("after Delete: %q, %d", v, ver)
	}
	if err := s.Delete(ctx, "history/web-1.json", 0); err != nil {
		t.Fatalf("Delete of a missing key with version 0: %v", err)
	}
	// Recreated after a delete, the key gets a version never seen before:
	// a writer still holding the old version cannot overwrite it.
	again, err := s.Put(ctx, "history/web-1.json", []byte(`[new]`), 0)
	if err != nil || again <= version {
		t.Fatalf("recreate: version %d (previous %d), %v", again, version, err)
	}
	if _, err := s.Put(ctx, "history/web-1.json", []byte(`[old writer]`), version); !errors.Is(err, ports.ErrConflict) {
		t.Fatalf("write with the deleted value's version: %v, want ErrConflict", err)
	}
	// An empty value is a value, not a missing key.
	ev, err := s.Put(ctx, "empty", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if v, ver, err := s.Get(ctx, "empty"); err != nil || v == nil || len(v) != 0 || ver != ev {
		t.Fatalf("Get of an empty value = %q (nil %v), %d, %v", v, v == nil, ver, err)
	}
}

func TestCASConflictBetweenTwoStores(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a, b := newStore(t, dir), newStore(t, dir)
	if _, err := a.Put(ctx, "journal", []byte("a0"), 0); err != nil {
		t.Fatal(err)
	}
	_, readByA, _ := a.Get(ctx, "journal")
	_, readByB, _ := b.Get(ctx, "journal")
	if _, err := b.Put(ctx, "journal", []byte("b1"), readByB); err != nil {
		t.Fatalf("b wins: %v", err)
	}
	if _, err := a.Put(ctx, "journal", []byte("a1"), readByA); !errors.Is(err, ports.ErrConflict) {
		t.Fatalf("a writes over b's value: %v, want ErrConflict", err)
	}
	if v, _, _ := a.Get(ctx, "journal"); string(v) != "b1" {
		t.Fatalf("value %q, want b's b1", v)
	}
}

// TestConcurrentIncrements has goroutines on two stores increment one
// counter with read-CAS-retry loops: with a correct check-and-set no
// increment is lost.
func TestConcurrentIncrements(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	stores := []*Store{newStore(t, dir), newStore(t, dir)}
	const workers, each = 6, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := stores[w%len(stores)]
			for range each {
				for {
					v, ver, err := s.Get(ctx, "counter")
					if err != nil {
						errs <- err
						return
					}
					n := 0
					if v != nil {
						n, _ = strconv.Atoi(string(v))
					}
					_, err = s.Put(ctx, "counter", []byte(strconv.Itoa(n+1)), ver)
					if err == nil {
						break
					}
					if !errors.Is(err, ports.ErrConflict) {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	v, _, err := stores[0].Get(ctx, "counter")
	if err != nil || string(v) != strconv.Itoa(workers*each) {
		t.Fatalf("counter = %q, %v; want %d", v, err, workers*each)
	}
}

// TestReadersNeverSeePartialValues hammers a key with large writes while
// readers check every value they see is whole.
func TestReadersNeverSeePartialValues(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	w, r := newStore(t, dir), newStore(t, dir)
	type doc struct {
		N   int    `json:"n"`
		Pad string `json:"pad"`
	}
	const size, writes = 256 << 10, 40
	pad := string(bytes.Repeat([]byte("x"), size))

	done := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var problems []string
	reads := 0
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lastVer, lastN := uint64(0), -1
			for {
				select {
				case <-done:
					return
				default:
				}
				v, ver, err := r.Get(ctx, "big")
				mu.Lock()
				reads++
				mu.Unlock()
				if err != nil {
					mu.Lock()
					problems = append(problems, err.Error())
					mu.Unlock()
					return
				}
				if v == nil {
					continue
				}
				var d doc
				if err := json.Unmarshal(v, &d); err != nil || len(d.Pad) != size {
					mu.Lock()
					problems = append(problems, fmt.Sprintf("partial value at version %d: %d bytes, %v", ver, len(v), err))
					mu.Unlock()
					return
				}
				if ver < lastVer || (ver == lastVer && d.N != lastN) || (ver > lastVer && d.N < lastN) {
					mu.Lock()
					problems = append(problems, fmt.Sprintf("went back: version %d n %d after version %d n %d", ver, d.N, lastVer, lastN))
					mu.Unlock()
					return
				}
				lastVer, lastN = ver, d.N
			}
		}()
	}
	var ver uint64
	for n := range writes {
		data, _ := json.Marshal(doc{N: n, Pad: pad})
		var err error
		if ver, err = w.Put(ctx, "big", data, ver); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	if reads < writes {
		t.Logf("only %d reads during %d writes", reads, writes)
	}
}

func TestKeysAreCheckedAndListed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s := newStore(t, dir)
	for _, key := range []string{"", "/etc/passwd", "../escape", "a/../b", "a//b", "a/", "./a", ".version", "a/.hidden", "locks/x", `a\b`} {
		if _, err := s.Put(ctx, key, []byte("x"), 0); err == nil {
			t.Errorf("Put(%q) accepted", key)
		}
		if _, _, err := s.Get(ctx, key); err == nil {
			t.Errorf("Get(%q) accepted", key)
		}
	}
	for _, key := range []string{"history/web-1.json", "history/web-2.json", "historic", "journal", "runs/r1/journal", "lockstep"} {
		if _, err := s.Put(ctx, key, []byte("x"), 0); err != nil {
			t.Fatalf("Put(%q): %v", key, err)
		}
	}
	// Debris that must not be listed: a lock, a temporary file.
	if _, err := NewLocker(dir, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "history", ".web-3.json.tmp-1"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"history/", []string{"history/web-1.json", "history/web-2.json"}},
		{"hist", []string{"historic", "history/web-1.json", "history/web-2.json"}},
		{"history/web-2", []string{"history/web-2.json"}},
		{"runs/", []string{"runs/r1/journal"}},
		{"nothing/", nil},
		{"journal/", nil},
		{"", []string{"historic", "history/web-1.json", "history/web-2.json", "journal", "lockstep", "runs/r1/journal"}},
	}
	for _, tt := range tests {
		got, err := s.List(ctx, tt.prefix)
		if err != nil {
			t.Errorf("List(%q): %v", tt.prefix, err)
			continue
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("List(%q) = %q, want %q", tt.prefix, got, tt.want)
		}
	}
}

func TestPutWaitsForTheStoreLockUntilCancelled(t *testing.T) {
	dir := t.TempDir()
	s := newStore(t, dir)
	// Another writer holds the store lock.
	other := flock.New(filepath.Join(dir, storeLock))
	if ok, err := other.TryLock(); !ok || err != nil {
		t.Fatal(ok, err)
	}
	defer other.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Put(ctx, "k", []byte("v"), 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with the lock held and ctx cancelled: %v, want context.Canceled", err)
	}
	if v, _, _ := s.Get(context.Background(), "k"); v != nil {
		t.Fatalf("a cancelled Put wrote %q", v)
	}
}
