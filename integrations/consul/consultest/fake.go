// Package consultest is a fake Consul agent for tests: the KV, session and
// transaction endpoints that rollguard's Consul state store and session
// lock use, with Consul's semantics. It lives outside the _test files so
// that tests of other packages (the end-to-end tests that run the rollguard
// binary against it) can use it too.
//
// What it models: a global Raft index bumped by every write and returned
// as X-Consul-Index; blocking reads on ?index=; check-and-set transactions
// (/v1/txn) that roll back with "index is stale"; KV acquire with a session;
// sessions that, when invalidated, delete or release the keys they hold
// (per their behaviour); and ACL tokens (every request must carry the
// server's token, or it is refused with 403).
//
// What it does not: sessions never expire by themselves (a test makes a TTL
// lapse with Invalidate), there is no lock-delay, and only KV operations
// are accepted in a transaction. A request outside this surface is answered
// with an error and recorded, so a test can fail on it (Unexpected).
package consultest

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

	"github.com/hashicorp/consul/api"
)

// renewalBuffer is how many renewals Renewals holds for a reader; later
// ones are dropped from the channel (never from the server's behaviour).
const renewalBuffer = 64

// Server is a fake Consul agent listening on 127.0.0.1. It is an
// http.Handler too, so it can be mounted elsewhere. It is safe for
// concurrent use.
type Server struct {
	// URL is the agent's address, http://127.0.0.1:<port>.
	URL string

	srv   *httptest.Server
	token string

	mu         sync.Mutex
	index      uint64
	kv         map[string]*api.KVPair
	sessions   map[string]string // id -> behavior
	nextID     int
	unexpected []string
	changed    chan struct{} // closed and replaced on every write
	done       chan struct{} // closed by Close: ends blocking queries
	closed     bool
	renewed    chan string
}

// New starts a fake Consul agent that accepts only token. Close stops it.
func New(token string) *Server {
	s := &Server{
		token: token, index: 10,
		kv: map[string]*api.KVPair{}, sessions: map[string]string{},
		changed: make(chan struct{}), done: make(chan struct{}), renewed: make(chan string, renewalBuffer),
	}
	s.srv = httptest.NewServer(s)
	s.URL = s.srv.URL
	return s
}

// Close ends every blocking query in flight and stops the listener. It
// may be called more than once.
func (s *Server) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	s.mu.Unlock()
	s.srv.Close()
}

// Config returns a client configuration for the agent with its token.
func (s *Server) Config() *api.Config {
	return &api.Config{Address: s.URL, Token: s.token}
}

// Env returns the environment that points Consul clients (api.DefaultConfig,
// the consul CLI, rollguard) at the agent: CONSUL_HTTP_ADDR and
// CONSUL_HTTP_TOKEN.
func (s *Server) Env() []string {
	return []string{"CONSUL_HTTP_ADDR=" + s.URL, "CONSUL_HTTP_TOKEN=" + s.token}
}

// KV returns a copy of key's entry (value, flags, holding session and
// indexes), or nil when the key does not exist.
func (s *Server) KV(key string) *api.KVPair {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.kv[key]
	if !ok {
		return nil
	}
	c := *e
	c.Value = append([]byte(nil), e.Value...)
	return &c
}

// Keys returns every key under prefix, sorted.
func (s *Server) Keys(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keysLocked(prefix)
}

func (s *Server) keysLocked(prefix string) []string {
	keys := []string{}
	for k := range s.kv {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// Sessions returns the IDs of the live sessions, sorted.
func (s *Server) Sessions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := []string{}
	for id := range s.sessions {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Invalidate ends a session as Consul does when its TTL lapses or an
// operator destroys it: the keys it holds are deleted (behaviour "delete")
// or released ("release"). An unknown ID is ignored.
func (s *Server) Invalidate(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.invalidateLocked(id)
}

// Forget drops a session without touching its keys, as a Consul restart
// without persistence would: only the holder's next renewal can notice.
func (s *Server) Forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, id)
}

// Renewals receives the session ID of every renewal request, whether the
// session exists or not. It buffers the latest renewals; when nobody reads
// them, the rest are dropped from the channel, never delayed.
func (s *Server) Renewals() <-chan string { return s.renewed }

// Unexpected returns the requests the fake does not model ("METHOD URL:
// why"), in order. A test that expects its code to stay within the modelled
// surface asserts it is empty.
func (s *Server) Unexpected() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.unexpected...)
}

// refuse answers an unmodelled request and records it.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, status int, why string) {
	s.mu.Lock()
	s.unexpected = append(s.unexpected, fmt.Sprintf("%s %s: %s", r.Method, r.URL, why))
	s.mu.Unlock()
	http.Error(w, why, status)
}

// bump records a write and wakes blocking queries; the caller holds mu.
func (s *Server) bump() uint64 {
	s.index++
	close(s.changed)
	s.changed = make(chan struct{})
	return s.index
}

func (s *Server) invalidateLocked(id string) {
	behavior, ok := s.sessions[id]
	if !ok {
		return
	}
	delete(s.sessions, id)
	idx := s.bump()
	for k, e := range s.kv {
		if e.Session != id {
			continue
		}
		if behavior == api.SessionBehaviorDelete {
			delete(s.kv, k)
		} else {
			e.Session = ""
			e.ModifyIndex = idx
		}
	}
}

// ServeHTTP serves Consul's /v1/kv, /v1/txn and /v1/session endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if got := r.Header.Get("X-Consul-Token"); got != s.token {
		http.Error(w, "ACL not found", http.StatusForbidden)
		return
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/v1/kv/"):
		s.serveKV(w, r, strings.TrimPrefix(r.URL.Path, "/v1/kv/"))
	case r.URL.Path == "/v1/txn" && r.Method == http.MethodPut:
		s.serveTxn(w, r)
	case r.URL.Path == "/v1/session/create" && r.Method == http.MethodPut:
		s.createSession(w, r)
	case strings.HasPrefix(r.URL.Path, "/v1/session/renew/") && r.Method == http.MethodPut:
		s.renewSession(w, strings.TrimPrefix(r.URL.Path, "/v1/session/renew/"))
	case strings.HasPrefix(r.URL.Path, "/v1/session/destroy/") && r.Method == http.MethodPut:
		s.Invalidate(strings.TrimPrefix(r.URL.Path, "/v1/session/destroy/"))
		s.mu.Lock()
		idx := s.index
		s.mu.Unlock()
		writeJSON(w, idx, true)
	default:
		s.refuse(w, r, http.StatusNotFound, "endpoint not faked")
	}
}

func (s *Server) createSession(w http.ResponseWriter, r *http.Request) {
	var body struct{ Behavior, TTL, Name string }
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if body.Behavior == "" {
		body.Behavior = api.SessionBehaviorRelease
	}
	s.mu.Lock()
	s.nextID++
	id := fmt.Sprintf("00000000-0000-0000-0000-%012d", s.nextID)
	s.sessions[id] = body.Behavior
	idx := s.bump()
	s.mu.Unlock()
	writeJSON(w, idx, map[string]string{"ID": id})
}

func (s *Server) renewSession(w http.ResponseWriter, id string) {
	s.mu.Lock()
	_, ok := s.sessions[id]
	idx := s.index
	s.mu.Unlock()
	select {
	case s.renewed <- id:
	default:
	}
	if !ok {
		http.Error(w, fmt.Sprintf("Session id '%s' not found", id), http.StatusNotFound)
		return
	}
	writeJSON(w, idx, []map[string]string{{"ID": id, "TTL": "15s"}})
}

func writeJSON(w http.ResponseWriter, index uint64, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Consul-Index", strconv.FormatUint(index, 10))
	_ = json.NewEncoder(w).Encode(v)
}

func notFound(w http.ResponseWriter, index uint64) {
	w.Header().Set("X-Consul-Index", strconv.FormatUint(index, 10))
	w.WriteHeader(http.StatusNotFound)
}

func (s *Server) serveKV(w http.ResponseWriter, r *http.Request, key string) {
	switch r.Method {
	case http.MethodGet:
		s.getKV(w, r, key)
	case http.MethodPut:
		s.acquireKV(w, r, key)
	default:
		s.refuse(w, r, http.StatusMethodNotAllowed, "KV method not faked")
	}
}

// getKV reads a key or lists keys (?keys), blocking first on ?index= until
// the index moves past it, the client gives up, or the server closes.
func (s *Server) getKV(w http.ResponseWriter, r *http.Request, key string) {
	q := r.URL.Query()
	s.mu.Lock()
	if wait, err := strconv.ParseUint(q.Get("index"), 10, 64); err == nil && wait > 0 && wait >= s.index {
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-s.done:
		case <-r.Context().Done():
			return
		}
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	if q.Has("keys") {
		keys := s.keysLocked(key)
		if len(keys) == 0 {
			notFound(w, s.index)
			return
		}
		writeJSON(w, s.index, keys)
		return
	}
	e, ok := s.kv[key]
	if !ok {
		notFound(w, s.index)
		return
	}
	writeJSON(w, s.index, []*api.KVPair{e})
}

// acquireKV serves PUT ?acquire=<session>; plain writes go through /v1/txn.
func (s *Server) acquireKV(w http.ResponseWriter, r *http.Request, key string) {
	q := r.URL.Query()
	id := q.Get("acquire")
	if id == "" {
		s.refuse(w, r, http.StatusBadRequest, "KV PUT without ?acquire= (writes go through /v1/txn)")
		return
	}
	var value []byte
	if r.ContentLength != 0 {
		value, _ = io.ReadAll(r.Body)
	}
	flags, _ := strconv.ParseUint(q.Get("flags"), 10, 64)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sessions[id]; !ok {
		http.Error(w, fmt.Sprintf("invalid session %q", id), http.StatusInternalServerError)
		return
	}
	e, ok := s.kv[key]
	if ok && e.Session != "" && e.Session != id {
		writeJSON(w, s.index, false)
		return
	}
	idx := s.bump()
	if !ok {
		e = &api.KVPair{Key: key, CreateIndex: idx}
		s.kv[key] = e
	}
	if e.Session != id {
		e.LockIndex++
	}
	e.Value, e.Flags, e.Session, e.ModifyIndex = value, flags, id, idx
	writeJSON(w, s.index, true)
}

// txnError is one entry of a rolled-back transaction's Errors.
type txnError struct {
	OpIndex int
	What    string
}

// serveTxn applies KV check-and-set and delete-check-and-set operations,
// all or none: every check is made against the state before the
// transaction (two operations on one key are not modelled). A stale index
// answers 409 with Consul's "index is stale" message.
func (s *Server) serveTxn(w http.ResponseWriter, r *http.Request) {
	var ops api.TxnOps
	if err := json.NewDecoder(r.Body).Decode(&ops); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, op := range ops {
		if op.KV == nil {
			s.refuse(w, r, http.StatusBadRequest, "only KV operations are faked")
			return
		}
		if op.KV.Verb != api.KVCAS && op.KV.Verb != api.KVDeleteCAS {
			s.refuse(w, r, http.StatusBadRequest, "verb not faked: "+string(op.KV.Verb))
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, op := range ops {
		kv := op.KV
		e, exists := s.kv[kv.Key]
		switch {
		case kv.Verb == api.KVCAS && ((kv.Index == 0 && exists) || (kv.Index != 0 && (!exists || e.ModifyIndex != kv.Index))):
			conflict(w, i, fmt.Sprintf("failed to set key %q, index is stale", kv.Key))
			return
		case kv.Verb == api.KVDeleteCAS && exists && e.ModifyIndex != kv.Index:
			conflict(w, i, fmt.Sprintf("failed to delete key %q, index is stale", kv.Key))
			return
		}
	}
	type result struct{ KV *api.KVPair }
	var results []result
	for _, op := range ops {
		kv := op.KV
		idx := s.bump()
		if kv.Verb == api.KVDeleteCAS {
			delete(s.kv, kv.Key)
			continue
		}
		e, exists := s.kv[kv.Key]
		if !exists {
			e = &api.KVPair{Key: kv.Key, CreateIndex: idx}
			s.kv[kv.Key] = e
		}
		e.Value, e.Flags, e.ModifyIndex = kv.Value, kv.Flags, idx
		// Consul answers a set with the entry's metadata, not its value.
		results = append(results, result{KV: &api.KVPair{Key: e.Key, Flags: e.Flags, CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex, LockIndex: e.LockIndex}})
	}
	writeJSON(w, s.index, map[string]any{"Results": results, "Errors": nil})
}

func conflict(w http.ResponseWriter, op int, what string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusConflict)
	_ = json.NewEncoder(w).Encode(map[string]any{"Results": nil, "Errors": []txnError{{op, what}}})
}
