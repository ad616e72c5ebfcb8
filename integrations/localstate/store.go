// Package localstate keeps a rollout's state in a local directory: a
// ports.StateStore whose keys are files, and a ports.Locker on flock(2)
// file locks. It is the default state of a run outside Consul and Nomad,
// and it is safe for several processes sharing the directory on one host.
//
// Layout of the directory:
//
//	<key>                  one file per key; a one-line header holds the version
//	.version               the store-wide version counter
//	.store.lock            flock held around every check-and-set
//	locks/<name>.lock      flock held by the run holding rollout <name>
//	locks/<name>.holder    that run, as JSON
//
// Names starting with a dot and the top-level "locks" directory are
// reserved: no key may use them.
package localstate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gofrs/flock"

	"github.com/rollguard/rollguard/ports"
)

const (
	// header starts every value file; the version follows it, then "\n",
	// then the value.
	header      = "rollguard-state v1 "
	counterFile = ".version"
	storeLock   = ".store.lock"
	locksDir    = "locks"
	// lockRetry is how often a writer retries a store lock that another
	// writer holds (writers hold it for one small write).
	lockRetry = 2 * time.Millisecond
)

// Store is a ports.StateStore on a local directory.
//
// A value's version comes from a counter shared by the whole store, so a
// version is never reused, not even after a key is deleted and written
// again: a check-and-set that read a deleted value cannot succeed against
// its successor. Writers serialise on an exclusive flock around
// read-compare-write; a write goes to a temporary file that is fsynced and
// renamed over the key, so readers, which take no lock, see the old value
// or the new one and never a partial file.
type Store struct {
	dir string
}

var _ ports.StateStore = (*Store)(nil)

// New returns the store on dir, creating the directory (mode 0700: the
// state holds playbook variables) when it does not exist.
func New(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("local state: directory is required")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("local state directory %s: %w", dir, err)
	}
	return &Store{dir: dir}, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// checkKey refuses keys that are not clean relative paths or that use the
// reserved names.
func checkKey(key string) error {
	switch {
	case key == "":
		return errors.New("empty key")
	case strings.HasPrefix(key, "/"), strings.Contains(key, `\`), strings.ContainsRune(key, 0):
		return fmt.Errorf("key %q: must be a relative slash-separated path", key)
	case path.Clean(key) != key:
		return fmt.Errorf("key %q: must be a clean path (no //, ./, ../ or trailing /)", key)
	}
	for i, part := range strings.Split(key, "/") {
		if part == ".." || strings.HasPrefix(part, ".") {
			return fmt.Errorf("key %q: names starting with a dot are reserved", key)
		}
		if i == 0 && part == locksDir {
			return fmt.Errorf("key %q: the top-level %s directory is reserved", key, locksDir)
		}
	}
	return nil
}

func (s *Store) path(key string) string { return filepath.Join(s.dir, filepath.FromSlash(key)) }

// Get returns key's value and version; nil and 0 when it does not exist.
// It takes no lock. Cancelling ctx before the read returns ctx.Err().
func (s *Store) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	if err := checkKey(key); err != nil {
		return nil, 0, fmt.Errorf("local state get: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("local state get %q: %w", key, err)
	}
	value, version, err := readValue(s.path(key))
	if err != nil {
		return nil, 0, fmt.Errorf("local state get %q: %w", key, err)
	}
	return value, version, nil
}

// readValue reads a value file; nil and 0 when it does not exist.
func readValue(p string) ([]byte, uint64, error) {
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	line, value, ok := bytes.Cut(data, []byte("\n"))
	if !ok || !bytes.HasPrefix(line, []byte(header)) {
		return nil, 0, fmt.Errorf("%s is not a rollguard state file (no version header)", p)
	}
	version, err := strconv.ParseUint(string(line[len(header):]), 10, 64)
	if err != nil || version == 0 {
		return nil, 0, fmt.Errorf("%s: bad version in header %q", p, line)
	}
	if value == nil {
		value = []byte{}
	}
	return value, version, nil
}

// Put writes value if key's version is still version (0: the key must not
// exist) and returns the new version; an error wrapping ports.ErrConflict
// otherwise. Cancelling ctx while waiting for another writer returns an
// error wrapping ctx.Err() and writes nothing.
func (s *Store) Put(ctx context.Context, key string, value []byte, version uint64) (uint64, error) {
	if err := checkKey(key); err != nil {
		return 0, fmt.Errorf("local state put: %w", err)
	}
	var next uint64
	err := s.locked(ctx, func() error {
		p := s.path(key)
		_, current, err := readValue(p)
		if err != nil {
			return err
		}
		if current != version {
			return fmt.Errorf("version %d, stored %d: %w", version, current, ports.ErrConflict)
		}
		counter, err := s.readCounter()
		if err != nil {
			return err
		}
		next = max(counter, current) + 1
		// The counter first: a crash between the two writes wastes a
		// version and never hands one out twice.
		if err := writeAtomic(filepath.Join(s.dir, counterFile), []byte(strconv.FormatUint(next, 10)+"\n")); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		data := make([]byte, 0, len(header)+24+len(value))
		data = append(data, header...)
		data = strconv.AppendUint(data, next, 10)
		data = append(data, '\n')
		data = append(data, value...)
		return writeAtomic(p, data)
	})
	if err != nil {
		return 0, fmt.Errorf("local state put %q: %w", key, err)
	}
	return next, nil
}

// Delete removes key if its version is still version (an error wrapping
// ports.ErrConflict otherwise). Deleting a key that does not exist with
// version 0 succeeds. Cancelling ctx while waiting for another writer
// returns an error wrapping ctx.Err().
func (s *Store) Delete(ctx context.Context, key string, version uint64) error {
	if err := checkKey(key); err != nil {
		return fmt.Errorf("local state delete: %w", err)
	}
	err := s.locked(ctx, func() error {
		p := s.path(key)
		_, current, err := readValue(p)
		if err != nil {
			return err
		}
		if current != version {
			return fmt.Errorf("version %d, stored %d: %w", version, current, ports.ErrConflict)
		}
		if current == 0 {
			return nil
		}
		if err := os.Remove(p); err != nil {
			return err
		}
		return syncDir(filepath.Dir(p))
	})
	if err != nil {
		return fmt.Errorf("local state delete %q: %w", key, err)
	}
	return nil
}

// List returns the keys under prefix (a string prefix, as in Consul KV:
// "history/" lists that directory's keys, "hist" also matches "historic"),
// sorted.
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("local state list %q: %w", prefix, err)
	}
	// Walk only the deepest directory the prefix names.
	base := prefix[:strings.LastIndex(prefix, "/")+1]
	root := filepath.Join(s.dir, filepath.FromSlash(base))
	var keys []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(s.dir, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if p == root {
			if d.IsDir() {
				return nil
			}
			// The prefix's directory part names a file: not a directory
			// of keys.
			return fs.SkipAll
		}
		if d.IsDir() {
			if checkKey(key) != nil {
				return fs.SkipDir
			}
			return nil
		}
		if checkKey(key) == nil && strings.HasPrefix(key, prefix) {
			keys = append(keys, key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("local state list %q: %w", prefix, err)
	}
	slices.Sort(keys)
	return keys, nil
}

// locked runs fn holding the store's exclusive lock. Each call opens its
// own lock file descriptor, so goroutines of one process exclude each
// other as processes do.
func (s *Store) locked(ctx context.Context, fn func() error) error {
	l := flock.New(filepath.Join(s.dir, storeLock))
	ok, err := l.TryLockContext(ctx, lockRetry)
	if err != nil {
		return fmt.Errorf("lock the store: %w", err)
	}
	if !ok {
		return fmt.Errorf("lock the store: %w", ctx.Err())
	}
	defer l.Unlock()
	return fn()
}

func (s *Store) readCounter() (uint64, error) {
	data, err := os.ReadFile(filepath.Join(s.dir, counterFile))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("version counter %s: %w", counterFile, err)
	}
	return n, nil
}

// writeAtomic writes data to a temporary file beside p, fsyncs it, renames
// it over p and fsyncs the directory: after a crash p holds the old data
// or the new, and a reader never sees part of it.
func writeAtomic(p string, data []byte) error {
	dir := filepath.Dir(p)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(p)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
