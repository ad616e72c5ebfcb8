package consul

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/rollguard/rollguard/ports"
)

const testToken = "s3cr3t-consul-token"

// serveFixture answers one health request with a recorded response after
// checking the path, the query and the token.
func serveFixture(t *testing.T, wantPath string, wantQuery url.Values, fixture string) *httptest.Server {
	t.Helper()
	body, err := os.ReadFile(filepath.Join("testdata", fixture))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != wantPath {
			t.Errorf("path = %q, want %q", r.URL.Path, wantPath)
		}
		// Repeated parameters (tag, node-meta) are a set to Consul; Go's
		// map order makes node-meta's order vary, so compare them sorted.
		got := r.URL.Query()
		for _, v := range got {
			slices.Sort(v)
		}
		if !reflect.DeepEqual(got, wantQuery) {
			t.Errorf("query = %v, want %v", got, wantQuery)
		}
		if got := r.Header.Get("X-Consul-Token"); got != testToken {
			t.Errorf("X-Consul-Token = %q, want the configured token", got)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Consul-Index", "21")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestDiscover(t *testing.T) {
	nodeMeta := map[string]string{"consul-network-segment": "", "consul-version": "1.16.3"}
	tests := []struct {
		name      string
		q         Query
		path      string
		query     url.Values
		fixture   string
		want      []ports.Host
		wantErr   []string // substrings of the error
		wantNoHit bool     // the error wraps ErrNoInstances
	}{
		{
			name:    "passing with tag, datacenter, node meta, namespace and partition",
			q:       Query{Service: "web", Tags: []string{"primary"}, PassingOnly: true, Datacenter: "dc1", NodeMeta: map[string]string{"rack": "r1"}, Namespace: "team-a", Partition: "p1"},
			path:    "/v1/health/service/web",
			query:   url.Values{"passing": {"1"}, "tag": {"primary"}, "dc": {"dc1"}, "node-meta": {"rack:r1"}, "ns": {"team-a"}, "partition": {"p1"}},
			fixture: "health_service_web_passing_tag_primary.json",
			want: []ports.Host{{
				Name: "hidden-dev", Address: "127.0.0.1", Port: 8500, Tags: []string{"primary", "v1"},
				Meta: map[string]string{"consul-network-segment": "", "consul-version": "1.16.3", "version": "1.0.0"},
				Vars: map[string]any{"consul_node": "hidden-dev", "consul_node_address": "127.0.0.1", "consul_service": "web",
					"consul_service_id": "web-1", "consul_port": 8500, "consul_datacenter": "dc1"},
			}},
		},
		{
			name:    "two tags are sent as two tag parameters",
			q:       Query{Service: "web", Tags: []string{"primary", "v1"}, PassingOnly: true},
			path:    "/v1/health/service/web",
			query:   url.Values{"passing": {"1"}, "tag": {"primary", "v1"}},
			fixture: "health_service_web_passing_tag_primary.json",
			want: []ports.Host{{
				Name: "hidden-dev", Address: "127.0.0.1", Port: 8500, Tags: []string{"primary", "v1"},
				Meta: map[string]string{"consul-network-segment": "", "consul-version": "1.16.3", "version": "1.0.0"},
				Vars: map[string]any{"consul_node": "hidden-dev", "consul_node_address": "127.0.0.1", "consul_service": "web",
					"consul_service_id": "web-1", "consul_port": 8500, "consul_datacenter": "dc1"},
			}},
		},
		{
			name:    "all instances named by service ID, sorted",
			q:       Query{Service: "web", NameFrom: NameFromServiceID},
			path:    "/v1/health/service/web",
			query:   url.Values{},
			fixture: "health_service_web_all.json",
			want: []ports.Host{
				{Name: "web-1", Address: "127.0.0.1", Port: 8500, Tags: []string{"primary", "v1"},
					Meta: map[string]string{"consul-network-segment": "", "consul-version": "1.16.3", "version": "1.0.0"},
					Vars: map[string]any{"consul_node": "hidden-dev", "consul_node_address": "127.0.0.1", "consul_service": "web",
						"consul_service_id": "web-1", "consul_port": 8500, "consul_datacenter": "dc1"}},
				{Name: "web-2", Address: "127.0.0.1", Port: 1, Tags: []string{"secondary", "v1"}, Meta: nodeMeta,
					Vars: map[string]any{"consul_node": "hidden-dev", "consul_node_address": "127.0.0.1", "consul_service": "web",
						"consul_service_id": "web-2", "consul_port": 1, "consul_datacenter": "dc1"}},
			},
		},
		{
			name:    "two instances on one node named by node is refused",
			q:       Query{Service: "web"},
			path:    "/v1/health/service/web",
			query:   url.Values{},
			fixture: "health_service_web_all.json",
			wantErr: []string{`service "web"`, "node hidden-dev runs several instances (web-1, web-2)", "name_from: service_id"},
		},
		{
			name:    "node address when the service has none; service meta over node meta",
			q:       Query{Service: "db", PassingOnly: true},
			path:    "/v1/health/service/db",
			query:   url.Values{"passing": {"1"}},
			fixture: "health_service_db_no_service_address.json",
			want: []ports.Host{{
				Name: "db-node-7", Address: "10.0.0.7", Port: 5432, Tags: []string{"replica", "postgres"},
				Meta: map[string]string{"consul-network-segment": "", "consul-version": "1.16.3", "rack": "r2", "role": "replica"},
				Vars: map[string]any{"consul_node": "db-node-7", "consul_node_address": "10.0.0.7", "consul_service": "db",
					"consul_service_id": "db-1", "consul_port": 5432, "consul_datacenter": "dc1"},
			}},
		},
		{
			name:      "no passing instance names the service and every filter",
			q:         Query{Service: "db", Tags: []string{"replica"}, PassingOnly: true, Datacenter: "dc1", NodeMeta: map[string]string{"rack": "r1", "az": "a"}},
			path:      "/v1/health/service/db",
			query:     url.Values{"passing": {"1"}, "tag": {"replica"}, "dc": {"dc1"}, "node-meta": {"az:a", "rack:r1"}},
			fixture:   "health_service_db_passing_before_ttl.json",
			wantErr:   []string{`service "db"`, "tags [replica]", "passing only", "datacenter dc1", "node_meta az=a,rack=r1", "no instances"},
			wantNoHit: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serveFixture(t, tt.path, tt.query, tt.fixture)
			c, err := New(&api.Config{Address: srv.URL, Token: testToken}, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Discover(context.Background(), c, tt.q)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("Discover = %+v, want an error", got)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				if strings.Contains(err.Error(), testToken) {
					t.Errorf("error %q leaks the token", err)
				}
				if got := errors.Is(err, ErrNoInstances); got != tt.wantNoHit {
					t.Errorf("errors.Is(err, ErrNoInstances) = %v, want %v", got, tt.wantNoHit)
				}
				return
			}
			if err != nil {
				t.Fatalf("Discover: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Discover =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestDiscoverRejectsBadQuery(t *testing.T) {
	c, err := New(&api.Config{Address: "127.0.0.1:1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []Query{{}, {Service: "web", NameFrom: "hostname"}} {
		if _, err := Discover(context.Background(), c, q); err == nil {
			t.Errorf("Discover(%+v) succeeded, want an error", q)
		}
	}
}

func TestDiscoverCancelled(t *testing.T) {
	srv := serveFixture(t, "/v1/health/service/web", url.Values{}, "health_service_web_all.json")
	c, err := New(&api.Config{Address: srv.URL, Token: testToken}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Discover(ctx, c, Query{Service: "web", NameFrom: NameFromServiceID}); !errors.Is(err, context.Canceled) {
		t.Errorf("Discover with a cancelled context = %v, want context.Canceled", err)
	}
}

// A server (or a proxy in front of it) that echoes the token in an error
// answer: the library quotes the answer in its error, rollguard's error
// must not carry the token.
// So does an agent on a unix socket (CONSUL_HTTP_ADDR=unix://…), for
// which the library remakes its HTTP client.
func TestErrorAnswerEchoingTheTokenIsRedacted(t *testing.T) {
	dir, err := os.MkdirTemp("", "rg-consul") // a socket path must stay short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for i, code := range []int{http.StatusForbidden, http.StatusInternalServerError} {
		handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "ACL not found: "+r.Header.Get("X-Consul-Token"), code)
		})
		srv := httptest.NewServer(handler)
		t.Cleanup(srv.Close)
		sock := filepath.Join(dir, fmt.Sprintf("agent-%d.sock", i))
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		unix := &httptest.Server{Listener: ln, Config: &http.Server{Handler: handler}}
		unix.Start()
		t.Cleanup(unix.Close)
		for _, addr := range []string{srv.URL, "unix://" + sock} {
			c, err := New(&api.Config{Address: addr, Token: testToken}, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Discover(context.Background(), c, Query{Service: "web", NameFrom: NameFromNode})
			if err == nil || strings.Contains(err.Error(), testToken) || !strings.Contains(err.Error(), "ACL not found: [redacted]") {
				t.Errorf("status %d from %s: error %v, want the answer with the token redacted", code, addr, err)
			}
		}
	}
}
