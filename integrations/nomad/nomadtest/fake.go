// Package nomadtest is a fake Nomad agent for tests: the Variables API
// (/v1/var/<path>, /v1/vars?prefix=) that rollguard's Nomad state store
// and lease lock use, with Nomad's check-and-set semantics. It lives
// outside the _test files so that tests of other packages (the end-to-end
// tests that run the rollguard binary against it) can use it too.
//
// What it models: ?cas=0 creates only, ?cas=N writes or deletes only at
// ModifyIndex N, and a failed check answers 409 Conflict with the current
// variable (an empty one when it does not exist); every write bumps a
// global index, as Raft does; a variable must have items; every request
// must carry the server's ACL token (X-Nomad-Token), or it is refused with
// 403. Namespaces are not modelled: every variable is in "default". A
// request outside this surface is answered with an error and recorded, so
// a test can fail on it (Unexpected).
package nomadtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/nomad/api"
)

// putBuffer is how many PUT paths Puts holds for a reader; later ones are
// dropped from the channel (never from the server's behaviour).
const putBuffer = 256

// Server is a fake Nomad agent listening on 127.0.0.1. It is an
// http.Handler too, so it can be mounted elsewhere. It is safe for
// concurrent use.
type Server struct {
	// URL is the agent's address, http://127.0.0.1:<port>.
	URL string

	srv   *httptest.Server
	token string

	mu         sync.Mutex
	index      uint64
	vars       map[string]*api.Variable
	writes     map[string]int
	failing    bool
	hang       chan struct{}
	unexpected []string
	puts       chan string
}

// New starts a fake Nomad agent that accepts only token. Close stops it.
func New(token string) *Server {
	s := &Server{token: token, index: 100, vars: map[string]*api.Variable{}, writes: map[string]int{}, puts: make(chan string, putBuffer)}
	s.srv = httptest.NewServer(s)
	s.URL = s.srv.URL
	return s
}

// Close stops the listener, waiting for requests in flight.
func (s *Server) Close() { s.srv.Close() }

// Config returns a client configuration for the agent with its token.
func (s *Server) Config() *api.Config {
	return &api.Config{Address: s.URL, SecretID: s.token}
}

// Env returns the environment that points Nomad clients (api.DefaultConfig,
// the nomad CLI, rollguard) at the agent: NOMAD_ADDR and NOMAD_TOKEN.
func (s *Server) Env() []string {
	return []string{"NOMAD_ADDR=" + s.URL, "NOMAD_TOKEN=" + s.token}
}

// Get returns a copy of the variable at path, or nil when there is none.
func (s *Server) Get(path string) *api.Variable {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.vars[path]; ok {
		return v.Copy()
	}
	return nil
}

// Paths returns the paths of the variables under prefix, sorted.
func (s *Server) Paths(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	paths := []string{}
	for p := range s.vars {
		if strings.HasPrefix(p, prefix) {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	return paths
}

// Set writes a variable directly, without a check, as another client
// would; it bumps the index like any write.
func (s *Server) Set(path string, items api.VariableItems) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index++
	v := &api.Variable{Namespace: "default", Path: path, Items: items, CreateIndex: s.index, ModifyIndex: s.index}
	if cur := s.vars[path]; cur != nil {
		v.CreateIndex = cur.CreateIndex
	}
	s.vars[path] = v
}

// SetFailing makes every request fail with 500 "No cluster leader" (true),
// as an unavailable cluster does, or serve again (false).
func (s *Server) SetFailing(failing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing = failing
}

// SetHanging makes every request wait, unanswered, until its client gives
// up (true), as a partitioned or overloaded server does, or serves again
// (false), answering the waiting ones with 500.
func (s *Server) SetHanging(hanging bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case hanging && s.hang == nil:
		s.hang = make(chan struct{})
	case !hanging && s.hang != nil:
		close(s.hang)
		s.hang = nil
	}
}

// Writes returns how many PUTs to path succeeded.
func (s *Server) Writes(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes[path]
}

// Puts receives the variable path of every PUT once it has been answered,
// successful or not. It buffers the latest ones; when nobody reads them,
// the rest are dropped from the channel, never delayed.
func (s *Server) Puts() <-chan string { return s.puts }

// Unexpected returns the requests the fake does not model ("METHOD URL:
// why"), in order. A test that expects its code to stay within the modelled
// surface asserts it is empty.
func (s *Server) Unexpected() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.unexpected...)
}

// ServeHTTP serves Nomad's Variables endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Nomad-Token") != s.token {
		http.Error(w, "Permission denied", http.StatusForbidden)
		return
	}
	s.mu.Lock()
	hang := s.hang
	s.mu.Unlock()
	if hang != nil {
		select {
		case <-r.Context().Done():
		case <-hang:
		}
		http.Error(w, "No cluster leader", http.StatusInternalServerError)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Method == http.MethodPut {
		// Runs once the request is answered and its write (if any) stored.
		defer s.notePut(strings.TrimPrefix(r.URL.Path, "/v1/var/"))
	}
	if s.failing {
		http.Error(w, "No cluster leader", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Path == "/v1/vars" && r.Method == http.MethodGet {
		s.list(w, r.URL.Query().Get("prefix"))
		return
	}
	path, ok := strings.CutPrefix(r.URL.Path, "/v1/var/")
	if !ok {
		s.refuseLocked(w, r, http.StatusNotFound, "endpoint not faked")
		return
	}
	cur := s.vars[path]
	switch r.Method {
	case http.MethodGet:
		if cur == nil {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte("variable not found"))
			return
		}
		s.reply(w, http.StatusOK, cur)
	case http.MethodPut:
		s.put(w, r, path, cur)
	case http.MethodDelete:
		conflict, ok := s.casConflict(w, r, cur)
		if !ok {
			return
		}
		if conflict != nil {
			s.reply(w, http.StatusConflict, conflict)
			return
		}
		delete(s.vars, path)
		s.index++
		w.Header().Set("X-Nomad-Index", strconv.FormatUint(s.index, 10))
		w.WriteHeader(http.StatusNoContent)
	default:
		s.refuseLocked(w, r, http.StatusMethodNotAllowed, "method not faked")
	}
}

// notePut offers path to Puts without ever blocking the server.
func (s *Server) notePut(path string) {
	select {
	case s.puts <- path:
	default:
	}
}

func (s *Server) list(w http.ResponseWriter, prefix string) {
	metas := []*api.VariableMetadata{}
	for p, v := range s.vars {
		if strings.HasPrefix(p, prefix) {
			metas = append(metas, v.Metadata())
		}
	}
	sort.Slice(metas, func(i, j int) bool { return metas[i].Path < metas[j].Path })
	s.reply(w, http.StatusOK, metas)
}

// put writes a variable, subject to ?cas=; the caller holds mu.
func (s *Server) put(w http.ResponseWriter, r *http.Request, path string, cur *api.Variable) {
	var in api.Variable
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if len(in.Items) == 0 {
		http.Error(w, "variable missing required Items object", http.StatusBadRequest)
		return
	}
	conflict, ok := s.casConflict(w, r, cur)
	if !ok {
		return
	}
	if conflict != nil {
		s.reply(w, http.StatusConflict, conflict)
		return
	}
	s.index++
	v := &api.Variable{Namespace: "default", Path: path, Items: in.Items, CreateIndex: s.index, ModifyIndex: s.index}
	if cur != nil {
		v.CreateIndex = cur.CreateIndex
	}
	s.vars[path] = v
	s.writes[path]++
	s.reply(w, http.StatusOK, v)
}

// casConflict returns the variable to answer 409 with, or nil when the
// request's ?cas= check passes (or there is none). ok is false when ?cas=
// is not a number: the request has been answered with 400.
func (s *Server) casConflict(w http.ResponseWriter, r *http.Request, cur *api.Variable) (conflict *api.Variable, ok bool) {
	raw := r.URL.Query().Get("cas")
	if raw == "" {
		return nil, true
	}
	cas, err := strconv.ParseUint(raw, 10, 64)
	if err != nil {
		s.refuseLocked(w, r, http.StatusBadRequest, fmt.Sprintf("bad cas %q", raw))
		return nil, false
	}
	switch {
	case cur == nil && cas != 0:
		return &api.Variable{}, true
	case cur != nil && cur.ModifyIndex != cas:
		return cur, true
	}
	return nil, true
}

// refuseLocked answers an unmodelled request and records it; the caller
// holds mu.
func (s *Server) refuseLocked(w http.ResponseWriter, r *http.Request, status int, why string) {
	s.unexpected = append(s.unexpected, fmt.Sprintf("%s %s: %s", r.Method, r.URL, why))
	http.Error(w, why, status)
}

func (s *Server) reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("X-Nomad-Index", strconv.FormatUint(s.index, 10))
	w.Header().Set("X-Nomad-KnownLeader", "true")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
