package nomad

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/nomad/api"
)

const testToken = "s3cr3t-nomad-token"

// fakeVars implements Nomad's Variables HTTP API (/v1/var/<path>,
// /v1/vars?prefix=) with its check-and-set semantics: ?cas=0 creates only,
// ?cas=N writes only at ModifyIndex N, and a failed check answers 409
// Conflict with the current variable (an empty one when it does not
// exist). Every write bumps a global index, as Raft does. Requests must
// carry the token.
type fakeVars struct {
	t     *testing.T
	mu    sync.Mutex
	index uint64
	vars  map[string]*api.Variable
	// writes counts successful PUTs per path.
	writes map[string]int
	// failing makes every request a 500, as an unavailable cluster.
	failing bool
	// puts receives the path of every PUT, successful or not.
	puts chan string
}

func newFakeVars(t *testing.T) (*fakeVars, *Client) {
	f := &fakeVars{t: t, index: 100, vars: map[string]*api.Variable{}, writes: map[string]int{}, puts: make(chan string, 64)}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, f.client(srv)
}

func (f *fakeVars) client(srv *httptest.Server) *Client {
	c, err := New(&api.Config{Address: srv.URL, SecretID: testToken}, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	return c
}

func (f *fakeVars) get(path string) *api.Variable {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.vars[path]; ok {
		return v.Copy()
	}
	return nil
}

func (f *fakeVars) setFailing(b bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failing = b
}

// set writes a variable directly, as another client would.
func (f *fakeVars) set(path string, items api.VariableItems) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index++
	f.vars[path] = &api.Variable{Namespace: "default", Path: path, Items: items, CreateIndex: f.index, ModifyIndex: f.index}
}

func (f *fakeVars) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Nomad-Token") != testToken {
		http.Error(w, "Permission denied", http.StatusForbidden)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failing {
		if r.Method == http.MethodPut {
			f.puts <- r.URL.Path
		}
		http.Error(w, "No cluster leader", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Path == "/v1/vars" && r.Method == http.MethodGet {
		prefix := r.URL.Query().Get("prefix")
		metas := []*api.VariableMetadata{}
		for p, v := range f.vars {
			if strings.HasPrefix(p, prefix) {
				metas = append(metas, v.Metadata())
			}
		}
		sort.Slice(metas, func(i, j int) bool { return metas[i].Path < metas[j].Path })
		f.reply(w, http.StatusOK, metas)
		return
	}
	path, ok := strings.CutPrefix(r.URL.Path, "/v1/var/")
	if !ok {
		f.t.Errorf("fake nomad: unexpected %s %s", r.Method, r.URL)
		http.NotFound(w, r)
		return
	}
	cur := f.vars[path]
	switch r.Method {
	case http.MethodGet:
		if cur == nil {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte("variable not found"))
			return
		}
		f.reply(w, http.StatusOK, cur)
	case http.MethodPut:
		defer func() { f.puts <- path }()
		var in api.Variable
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if len(in.Items) == 0 {
			http.Error(w, "variable missing required Items object", http.StatusBadRequest)
			return
		}
		if conflict := f.casConflict(r, cur); conflict != nil {
			f.reply(w, http.StatusConflict, conflict)
			return
		}
		f.index++
		v := &api.Variable{Namespace: "default", Path: path, Items: in.Items, CreateIndex: f.index, ModifyIndex: f.index}
		if cur != nil {
			v.CreateIndex = cur.CreateIndex
		}
		f.vars[path] = v
		f.writes[path]++
		f.reply(w, http.StatusOK, v)
	case http.MethodDelete:
		if conflict := f.casConflict(r, cur); conflict != nil {
			f.reply(w, http.StatusConflict, conflict)
			return
		}
		delete(f.vars, path)
		f.index++
		w.Header().Set("X-Nomad-Index", strconv.FormatUint(f.index, 10))
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// casConflict returns the variable to answer 409 with, or nil when the
// request's ?cas= check passes (or there is none).
func (f *fakeVars) casConflict(r *http.Request, cur *api.Variable) *api.Variable {
	raw := r.URL.Query().Get("cas")
	if raw == "" {
		return nil
	}
	cas, err := strconv.ParseUint(raw, 10, 64)
	if err != nil {
		f.t.Errorf("bad cas %q", raw)
		return &api.Variable{}
	}
	switch {
	case cur == nil && cas != 0:
		return &api.Variable{}
	case cur != nil && cur.ModifyIndex != cas:
		return cur
	}
	return nil
}

func (f *fakeVars) reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("X-Nomad-Index", strconv.FormatUint(f.index, 10))
	w.Header().Set("X-Nomad-KnownLeader", "true")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
