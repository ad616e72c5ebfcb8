package nomad

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/nomad/api"

	"github.com/rollguard/rollguard/ports"
)

// serveNodes answers /v1/nodes with listFixture and /v1/node/<id> with the
// node_<name>.json of that ID, checking the token on every request.
// It records the node IDs read.
func serveNodes(t *testing.T, listFixture string) (*Client, *[]string) {
	t.Helper()
	list, err := os.ReadFile(filepath.Join("testdata", listFixture))
	if err != nil {
		t.Fatal(err)
	}
	infos := map[string][]byte{}
	files, _ := filepath.Glob(filepath.Join("testdata", "node_*.json"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var n struct{ ID string }
		if err := json.Unmarshal(b, &n); err != nil {
			t.Fatal(err)
		}
		infos[n.ID] = b
	}
	var read []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get("X-Nomad-Token"); got != testToken {
			t.Errorf("X-Nomad-Token = %q, want the configured token", got)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Nomad-Index", "11")
		switch {
		case r.URL.Path == "/v1/nodes":
			_, _ = w.Write(list)
		case strings.HasPrefix(r.URL.Path, "/v1/node/"):
			id := strings.TrimPrefix(r.URL.Path, "/v1/node/")
			read = append(read, id)
			b, ok := infos[id]
			if !ok {
				http.Error(w, "node not found", http.StatusNotFound)
				return
			}
			_, _ = w.Write(b)
		default:
			t.Errorf("unexpected request %s", r.URL)
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	c, err := New(&api.Config{Address: srv.URL, SecretID: testToken}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, &read
}

func TestDiscoverNodes(t *testing.T) {
	webA := ports.Host{Name: "web-a", Address: "10.0.1.1", Meta: map[string]string{"role": "web", "rack": "r2"},
		Vars: map[string]any{"nomad_node_id": "11111111-0000-0000-0000-000000000001", "nomad_node_pool": "default", "nomad_node_class": "web", "nomad_datacenter": "dc1"}}
	webB := ports.Host{Name: "web-b", Address: "10.0.1.2", Meta: map[string]string{"role": "web", "rack": "r1"},
		Vars: map[string]any{"nomad_node_id": "22222222-0000-0000-0000-000000000002", "nomad_node_pool": "default", "nomad_node_class": "web", "nomad_datacenter": "dc1"}}
	vm := ports.Host{Name: "vm", Address: "127.0.0.1", Meta: map[string]string{"connect.log_level": "info"},
		Vars: map[string]any{"nomad_node_id": "e1dab77c-7cd8-74f8-e548-273aefd669da", "nomad_node_pool": "default", "nomad_node_class": "", "nomad_datacenter": "dc1"}}
	batch := ports.Host{Name: "batch-1", Address: "10.0.2.1", Meta: map[string]string{"role": "web"},
		Vars: map[string]any{"nomad_node_id": "55555555-0000-0000-0000-000000000005", "nomad_node_pool": "batch", "nomad_node_class": "web", "nomad_datacenter": "dc1"}}
	tests := []struct {
		name     string
		fixture  string
		q        NodeQuery
		want     []ports.Host
		wantRead int // node reads: only candidates are read
		wantErr  []string
	}{
		{name: "recorded single node", fixture: "nodes.json", want: []ports.Host{vm}, wantRead: 1},
		{name: "ready eligible nodes sorted, drained and down skipped", fixture: "nodes_fleet.json",
			want: []ports.Host{batch, vm, webA, webB}, wantRead: 4},
		{name: "pool and class", fixture: "nodes_fleet.json", q: NodeQuery{NodePool: "default", NodeClass: "web"},
			want: []ports.Host{webA, webB}, wantRead: 2},
		{name: "meta", fixture: "nodes_fleet.json", q: NodeQuery{Meta: map[string]string{"role": "web", "rack": "r1"}},
			want: []ports.Host{webB}, wantRead: 4},
		{name: "nothing matches", fixture: "nodes_fleet.json", q: NodeQuery{NodeClass: "db", Meta: map[string]string{"role": "db"}},
			wantErr: []string{"node_class db", "meta role=db", "among 6 nodes", "no ready, eligible nodes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, read := serveNodes(t, tt.fixture)
			got, err := DiscoverNodes(context.Background(), c, tt.q)
			if tt.wantErr != nil {
				if !errors.Is(err, ErrNoNodes) {
					t.Fatalf("DiscoverNodes = %v, %v; want ErrNoNodes", got, err)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DiscoverNodes =\n%+v\nwant\n%+v", got, tt.want)
			}
			if len(*read) != tt.wantRead {
				t.Errorf("read %d nodes (%v), want %d", len(*read), *read, tt.wantRead)
			}
		})
	}
}

func TestAllocationFromEnv(t *testing.T) {
	env := map[string]string{
		"NOMAD_ALLOC_ID":       "5b3c9a1e-2f4d-4c1e-9a7b-0123456789ab",
		"NOMAD_SHORT_ALLOC_ID": "5b3c9a1e",
		"NOMAD_ALLOC_NAME":     "web-rollout/periodic-1795674031.rollguard[0]",
		"NOMAD_JOB_ID":         "web-rollout/periodic-1795674031",
		"NOMAD_JOB_NAME":       "web-rollout/periodic-1795674031",
		"NOMAD_JOB_PARENT_ID":  "web-rollout",
		"NOMAD_GROUP_NAME":     "rollguard",
		"NOMAD_TASK_NAME":      "rollguard",
		"NOMAD_NAMESPACE":      "default",
		"NOMAD_REGION":         "global",
		"NOMAD_DC":             "dc1",
		NodeNameEnv:            "vm",
	}
	a, ok := AllocationFromEnv(func(k string) string { return env[k] })
	want := Alloc{AllocID: env["NOMAD_ALLOC_ID"], ShortAllocID: "5b3c9a1e", AllocName: env["NOMAD_ALLOC_NAME"],
		JobID: "web-rollout/periodic-1795674031", JobName: "web-rollout/periodic-1795674031", ParentJobID: "web-rollout",
		GroupName: "rollguard", TaskName: "rollguard", Namespace: "default", Region: "global", Datacenter: "dc1", NodeName: "vm"}
	if !ok || a != want {
		t.Errorf("AllocationFromEnv = %+v, %v; want %+v, true", a, ok, want)
	}
	if got := a.Where(); got != "nomad alloc 5b3c9a1e job web-rollout/periodic-1795674031 node vm" {
		t.Errorf("Where = %q", got)
	}

	// Only the allocation ID: the short ID is derived.
	a, ok = AllocationFromEnv(func(k string) string { return map[string]string{"NOMAD_ALLOC_ID": env["NOMAD_ALLOC_ID"]}[k] })
	if !ok || a.ShortAllocID != "5b3c9a1e" {
		t.Errorf("AllocationFromEnv with only NOMAD_ALLOC_ID = %+v, %v", a, ok)
	}
	if _, ok := AllocationFromEnv(func(string) string { return "" }); ok {
		t.Error("AllocationFromEnv outside Nomad reported an allocation")
	}
}

// A server (or a proxy in front of it) that echoes the token in an error
// answer: the library quotes the answer in its error, rollguard's error
// must not carry the token.
func TestErrorAnswerEchoingTheTokenIsRedacted(t *testing.T) {
	for _, code := range []int{http.StatusForbidden, http.StatusInternalServerError} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "Permission denied for token "+r.Header.Get("X-Nomad-Token"), code)
		}))
		t.Cleanup(srv.Close)
		c, err := New(&api.Config{Address: srv.URL, SecretID: testToken}, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = DiscoverNodes(context.Background(), c, NodeQuery{})
		if err == nil || strings.Contains(err.Error(), testToken) || !strings.Contains(err.Error(), "token [redacted]") {
			t.Errorf("status %d: error %v, want the answer with the token redacted", code, err)
		}
	}
}

// Every address form redacts the token: http://, a unix:// socket (the
// task API a workload identity is given, NOMAD_ADDR=unix://…/api.sock,
// which took another path without the redacting transport) and a caller's
// own HTTP client. The server answers the recorded /v1/nodes (Nomad 1.6.1)
// to the right token, so the socket is known to carry the requests, and
// echoes any other token in a 403 (a 500 for Variables), as a proxy may.
func TestEveryAddressRedactsTheToken(t *testing.T) {
	const wrong = "s3cr3t-stolen-token"
	nodes, err := os.ReadFile(filepath.Join("testdata", "nodes.json"))
	if err != nil {
		t.Fatal(err)
	}
	node, err := os.ReadFile(filepath.Join("testdata", "node_vm.json"))
	if err != nil {
		t.Fatal(err)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := r.Header.Get("X-Nomad-Token")
		switch {
		case token != testToken && r.URL.Path == "/v1/nodes":
			http.Error(w, "Permission denied for token "+token, http.StatusForbidden)
		case token != testToken:
			http.Error(w, "rpc error: token "+token+" is not allowed here", http.StatusInternalServerError)
		case r.URL.Path == "/v1/nodes":
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Nomad-Index", "11")
			_, _ = w.Write(nodes)
		case strings.HasPrefix(r.URL.Path, "/v1/node/"):
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(node)
		default:
			http.NotFound(w, r)
		}
	})
	web := httptest.NewServer(handler)
	t.Cleanup(web.Close)
	dir, err := os.MkdirTemp("", "rg-nomad") // a socket path must stay short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := net.Listen("unix", filepath.Join(dir, "api.sock"))
	if err != nil {
		t.Fatal(err)
	}
	sock := &httptest.Server{Listener: ln, Config: &http.Server{Handler: handler}}
	sock.Start()
	t.Cleanup(sock.Close)

	for _, form := range []struct {
		name string
		cfg  func(token string) *api.Config
	}{
		{"http", func(token string) *api.Config { return &api.Config{Address: web.URL, SecretID: token} }},
		{"unix socket", func(token string) *api.Config {
			return &api.Config{Address: "unix://" + filepath.Join(dir, "api.sock"), SecretID: token}
		}},
		{"the caller's HTTP client", func(token string) *api.Config {
			return &api.Config{Address: web.URL, SecretID: token, HttpClient: &http.Client{}}
		}},
	} {
		t.Run(form.name, func(t *testing.T) {
			c, err := New(form.cfg(testToken), nil)
			if err != nil {
				t.Fatal(err)
			}
			hosts, err := DiscoverNodes(t.Context(), c, NodeQuery{})
			if err != nil || len(hosts) != 1 || hosts[0].Name != "vm" {
				t.Fatalf("with the token: %v, %v; want the recorded node vm", hosts, err)
			}
			c, err = New(form.cfg(wrong), nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = DiscoverNodes(t.Context(), c, NodeQuery{})
			if err == nil || strings.Contains(err.Error(), wrong) || !strings.Contains(err.Error(), "token [redacted]") {
				t.Errorf("403: %v; want the answer with the token redacted", err)
			}
			store, err := NewVarStore(c, "web", "", "")
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = store.Get(t.Context(), "journal.json")
			if err == nil || strings.Contains(err.Error(), wrong) || !strings.Contains(err.Error(), "token [redacted]") {
				t.Errorf("500: %v; want the answer with the token redacted", err)
			}
		})
	}
}
