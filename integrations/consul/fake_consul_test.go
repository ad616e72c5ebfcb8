package consul

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/consul/api"
)

// fakeConsul implements the few endpoints of Consul's HTTP API that the KV
// store and the session lock use, with Consul's semantics: a global Raft
// index bumped by every write, X-Consul-Index on reads, blocking reads on
// ?index=, check-and-set transactions that roll back with "index is stale",
// session acquire/release, and session invalidation that deletes (or
// releases) the keys the session held. Every request must carry token.
type fakeConsul struct {
	t     *testing.T
	token string

	mu       sync.Mutex
	index    uint64
	kv       map[string]*kvEntry
	sessions map[string]string // id -> behavior
	nextID   int
	renewals int
	changed  chan struct{} // closed and replaced on every write
	renewed  chan string   // receives a session ID on every renewal
}

// kvEntry is a KV entry in Consul's JSON shape (Value is base64 through []byte).
type kvEntry struct {
	LockIndex   uint64
	Key         string
	Flags       uint64
	Value       []byte
	Session     string `json:",omitempty"`
	CreateIndex uint64
	ModifyIndex uint64
}

func newFakeConsul(t *testing.T, token string) (*fakeConsul, *httptest.Server) {
	f := &fakeConsul{t: t, token: token, index: 10, kv: map[string]*kvEntry{}, sessions: map[string]string{},
		changed: make(chan struct{}), renewed: make(chan string, 16)}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

// client returns a rollguard client talking to srv with f's token.
func (f *fakeConsul) client(srv *httptest.Server) *Client {
	f.t.Helper()
	c, err := New(&api.Config{Address: srv.URL, Token: f.token}, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

// bump records a write; the caller holds mu.
func (f *fakeConsul) bump() uint64 {
	f.index++
	close(f.changed)
	f.changed = make(chan struct{})
	return f.index
}

// invalidate ends a session as Consul does when its TTL lapses or an
// operator destroys it: keys it holds are deleted or released.
func (f *fakeConsul) invalidate(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.invalidateLocked(id)
}

func (f *fakeConsul) invalidateLocked(id string) {
	behavior, ok := f.sessions[id]
	if !ok {
		return
	}
	delete(f.sessions, id)
	for k, e := range f.kv {
		if e.Session != id {
			continue
		}
		if behavior == api.SessionBehaviorDelete {
			delete(f.kv, k)
		} else {
			e.Session = ""
			e.ModifyIndex = f.index + 1
		}
	}
	f.bump()
}

// forget drops a session without touching its keys, so that only the
// next renewal can notice.
func (f *fakeConsul) forget(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.sessions, id)
}

func (f *fakeConsul) sessionIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for id := range f.sessions {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (f *fakeConsul) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if got := r.Header.Get("X-Consul-Token"); got != f.token {
		http.Error(w, "ACL not found", http.StatusForbidden)
		return
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/v1/kv/"):
		f.serveKV(w, r, strings.TrimPrefix(r.URL.Path, "/v1/kv/"))
	case r.URL.Path == "/v1/txn" && r.Method == http.MethodPut:
		f.serveTxn(w, r)
	case r.URL.Path == "/v1/session/create" && r.Method == http.MethodPut:
		var body struct{ Behavior, TTL, Name string }
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if body.Behavior == "" {
			body.Behavior = api.SessionBehaviorRelease
		}
		f.mu.Lock()
		f.nextID++
		id := fmt.Sprintf("00000000-0000-0000-0000-%012d", f.nextID)
		f.sessions[id] = body.Behavior
		f.bump()
		f.mu.Unlock()
		writeJSON(w, f.index, map[string]string{"ID": id})
	case strings.HasPrefix(r.URL.Path, "/v1/session/renew/") && r.Method == http.MethodPut:
		id := strings.TrimPrefix(r.URL.Path, "/v1/session/renew/")
		f.mu.Lock()
		_, ok := f.sessions[id]
		f.renewals++
		f.mu.Unlock()
		f.renewed <- id
		if !ok {
			http.Error(w, fmt.Sprintf("Session id '%s' not found", id), http.StatusNotFound)
			return
		}
		writeJSON(w, f.index, []map[string]string{{"ID": id, "TTL": "15s"}})
	case strings.HasPrefix(r.URL.Path, "/v1/session/destroy/") && r.Method == http.MethodPut:
		f.invalidate(strings.TrimPrefix(r.URL.Path, "/v1/session/destroy/"))
		writeJSON(w, f.index, true)
	default:
		f.t.Errorf("fake consul: unexpected %s %s", r.Method, r.URL)
		http.NotFound(w, r)
	}
}

func writeJSON(w http.ResponseWriter, index uint64, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Consul-Index", strconv.FormatUint(index, 10))
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeConsul) serveKV(w http.ResponseWriter, r *http.Request, key string) {
	q := r.URL.Query()
	switch r.Method {
	case http.MethodGet:
		f.mu.Lock()
		if wait, err := strconv.ParseUint(q.Get("index"), 10, 64); err == nil && wait > 0 && wait >= f.index {
			ch := f.changed
			f.mu.Unlock()
			select {
			case <-ch:
			case <-r.Context().Done():
				return
			}
			f.mu.Lock()
		}
		defer f.mu.Unlock()
		if q.Has("keys") {
			var keys []string
			for k := range f.kv {
				if strings.HasPrefix(k, key) {
					keys = append(keys, k)
				}
			}
			if len(keys) == 0 {
				w.Header().Set("X-Consul-Index", strconv.FormatUint(f.index, 10))
				w.WriteHeader(http.StatusNotFound)
				return
			}
			sort.Strings(keys)
			writeJSON(w, f.index, keys)
			return
		}
		e, ok := f.kv[key]
		if !ok {
			w.Header().Set("X-Consul-Index", strconv.FormatUint(f.index, 10))
			w.WriteHeader(http.StatusNotFound)
			return
		}
		writeJSON(w, f.index, []*kvEntry{e})
	case http.MethodPut:
		id := q.Get("acquire")
		if id == "" {
			f.t.Errorf("fake consul: unexpected KV PUT %s (writes go through /v1/txn)", r.URL)
			http.Error(w, "unsupported", http.StatusBadRequest)
			return
		}
		var value []byte
		if r.ContentLength != 0 {
			value, _ = io.ReadAll(r.Body)
		}
		flags, _ := strconv.ParseUint(q.Get("flags"), 10, 64)
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.sessions[id]; !ok {
			http.Error(w, fmt.Sprintf("invalid session %q", id), http.StatusInternalServerError)
			return
		}
		e, ok := f.kv[key]
		if ok && e.Session != "" && e.Session != id {
			writeJSON(w, f.index, false)
			return
		}
		idx := f.bump()
		if !ok {
			e = &kvEntry{Key: key, CreateIndex: idx}
			f.kv[key] = e
		}
		if e.Session != id {
			e.LockIndex++
		}
		e.Value, e.Flags, e.Session, e.ModifyIndex = value, flags, id, idx
		writeJSON(w, f.index, true)
	default:
		f.t.Errorf("fake consul: unexpected %s %s", r.Method, r.URL)
		http.Error(w, "unsupported", http.StatusMethodNotAllowed)
	}
}

func (f *fakeConsul) serveTxn(w http.ResponseWriter, r *http.Request) {
	var ops api.TxnOps
	if err := json.NewDecoder(r.Body).Decode(&ops); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	type result struct{ KV *kvEntry }
	type txnErr struct {
		OpIndex int
		What    string
	}
	var results []result
	for i, op := range ops {
		if op.KV == nil {
			http.Error(w, "only KV operations are faked", http.StatusBadRequest)
			return
		}
		kv := op.KV
		e, exists := f.kv[kv.Key]
		stale := (kv.Index == 0 && exists) || (kv.Index != 0 && (!exists || e.ModifyIndex != kv.Index))
		switch kv.Verb {
		case api.KVCAS:
			if stale {
				w.WriteHeader(http.StatusConflict)
				_ = json.NewEncoder(w).Encode(map[string]any{"Results": nil, "Errors": []txnErr{{i, fmt.Sprintf("failed to set key %q, index is stale", kv.Key)}}})
				return
			}
			idx := f.bump()
			if !exists {
				e = &kvEntry{Key: kv.Key, CreateIndex: idx}
				f.kv[kv.Key] = e
			}
			e.Value, e.Flags, e.ModifyIndex = kv.Value, kv.Flags, idx
			results = append(results, result{KV: &kvEntry{Key: e.Key, Flags: e.Flags, CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex, LockIndex: e.LockIndex}})
		case api.KVDeleteCAS:
			if exists && e.ModifyIndex != kv.Index {
				w.WriteHeader(http.StatusConflict)
				_ = json.NewEncoder(w).Encode(map[string]any{"Results": nil, "Errors": []txnErr{{i, fmt.Sprintf("failed to delete key %q, index is stale", kv.Key)}}})
				return
			}
			delete(f.kv, kv.Key)
			f.bump()
		default:
			http.Error(w, "verb not faked: "+string(kv.Verb), http.StatusBadRequest)
			return
		}
	}
	writeJSON(w, f.index, map[string]any{"Results": results, "Errors": nil})
}
