package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollguard/rollguard/integrations/consul/consultest"
	"github.com/rollguard/rollguard/runner"
)

// pushServer records the Prometheus text bodies pushed to it.
type pushServer struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []string
}

func newPushServer(t *testing.T) *pushServer {
	p := &pushServer{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		data, _ := io.ReadAll(body)
		p.mu.Lock()
		p.bodies = append(p.bodies, r.URL.Path+"\n"+string(data))
		p.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *pushServer) all() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.bodies, "\n")
}

// metrics.push_url in the spec sends rollguard's metrics there; --push-metrics
// overrides it; a bad URL is bad input that does not show the URL.
func TestSelfMetricsPushTarget(t *testing.T) {
	fromSpec, fromFlag := newPushServer(t), newPushServer(t)
	spec := &runner.Spec{Name: "web", Metrics: runner.Metrics{PushURL: fromSpec.URL + "/api/v1/import/prometheus", Interval: runner.Duration(time.Hour)}}

	tel, _, pushed, err := selfMetrics(t.Context(), spec, "", "run-1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tel.RunEnded("promoted")
	var errs bytes.Buffer
	pushed(&errs)
	want := `rollguard_runs_total{rollout="web",run_id="run-1",outcome="promoted"} 1`
	if got := fromSpec.all(); !strings.HasPrefix(got, "/api/v1/import/prometheus\n") || !strings.Contains(got, want) || errs.Len() > 0 {
		t.Errorf("metrics.push_url received %q (errors %q), want %s", got, errs.String(), want)
	}

	tel, _, pushed, err = selfMetrics(t.Context(), spec, fromFlag.URL+"/flag", "run-2", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tel.RunEnded("rolled_back")
	pushed(&errs)
	if got := fromFlag.all(); !strings.Contains(got, `run_id="run-2",outcome="rolled_back"`) || strings.Contains(fromSpec.all(), "run-2") {
		t.Errorf("--push-metrics did not override metrics.push_url: flag's server %q", got)
	}

	tel, _, _, err = selfMetrics(t.Context(), &runner.Spec{Name: "web"}, "", "run-3", nil, nil)
	if err != nil || tel != nil {
		t.Errorf("no push URL: telemetry %v, err %v; want none", tel, err)
	}
	_, _, _, err = selfMetrics(t.Context(), spec, "ftp://user:hunter2@vm/x", "run-4", nil, nil)
	if err == nil || strings.Contains(err.Error(), "hunter2") || errorDocument(err).ExitCode != exitBadInput {
		t.Errorf("bad URL: %v, want bad input without the credential", err)
	}
}

// Bad input of a live run changes nothing: a flag found bad after the
// spec loaded (--push-metrics) is refused before the state directory,
// the lock and the journal are opened (it used to leave
// <state>/locks/<name>.lock behind).
func TestRunBadInputChangesNothing(t *testing.T) {
	vm, playbook := emptyMetricsStore(t), sitePlaybook(t)
	for _, tc := range []struct {
		name, url string
		args      []string
		want      string
	}{
		{"push-metrics not http", vm.URL, []string{"--push-metrics", "ftp://ops:hunter2@vm/x"}, "push-metrics URL ftp://vm/…: scheme must be http or https"},
		{"push-metrics without a host", vm.URL, []string{"--push-metrics", "http:///x"}, "push-metrics URL http:///…: no host"},
		{"no metrics.url", "", nil, "rollout.yaml:5:3: metrics.url is required for a live run (dry-run replays a recording without it)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			spec := filepath.Join(dir, "rollout.yaml")
			url := ""
			if tc.url != "" {
				url = "  url: " + tc.url + "\n"
			}
			data := "name: web\ntargets: {static: [web-1]}\napply: {playbook: " + playbook + ", version: v1}\n" +
				"metrics:\n" + url + "  queries: {q: {query: up}}\npolicies: [{name: p, rollback_when: 'fleet.degraded > 0'}]\n"
			if err := os.WriteFile(spec, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
			code, _, errOut := rollguard(t, append([]string{"run", "-f", spec}, tc.args...)...)
			if code != exitBadInput || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "hunter2") {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, errOut, tc.want)
			}
			if files, _ := os.ReadDir(dir); len(files) != 1 {
				t.Errorf("the spec's directory holds %v, want the spec alone", files)
			}
		})
	}
}

// A value of the spec that a live run used to find bad only after it had
// opened its state and taken its lock (building the snapshot hooks, the
// detection engine, the hosts' label values) is refused before: exit 2
// at its file:line:col (exit 1 for a discovered host the spec cannot
// render), by `validate` too where the spec alone decides, and the run
// leaves no state directory, no lock file, no journal, no report, and
// takes no Consul session.
func TestRunRefusesBeforeTheLock(t *testing.T) {
	vm, playbook := emptyMetricsStore(t), sitePlaybook(t)
	for _, tc := range []struct {
		name string
		// targets, extra metrics lines (after url, line 6) and extra
		// top-level lines (from line 8, or 9 after a metrics line).
		targets, metrics, extra string
		validate, run           int
		want                    string
	}{
		{name: "snapshot program renders empty", extra: `revert: {snapshot: {create: ["{{if false}}x{{end}}", a], restore: [b]}}`,
			validate: 2, run: 2, want: `rollout.yaml:8:30: revert.snapshot.create[0]: the program name is empty`},
		{name: "snapshot template fails on every host", extra: `revert: {snapshot: {create: [a], restore: [b, '{{template "x"}}']}}`,
			validate: 2, run: 2, want: `rollout.yaml:8:47: revert.snapshot.restore[1]: at <{{template "x"}}>: template "x" not defined`},
		{name: "detection.abs_floor 0", extra: "detection: {abs_floor: 0}",
			validate: 2, run: 2, want: "rollout.yaml:8:24: detection.abs_floor must be over 0"},
		{name: "detection.allowance at z_cap", extra: "detection: {sensitivity: low, allowance: 5}",
			validate: 2, run: 2, want: "rollout.yaml:8:42: detection.allowance 5 must be below 5, the most one poll adds to a score at sensitivity low"},
		{name: "host_value a static host cannot render", metrics: "  host_value: '{{.Host.Meta.rack}}:9100'",
			validate: 2, run: 2, want: `rollout.yaml:6:15: metrics.host_value: cannot be rendered for host web-1: at <.Host.Meta.rack>: map has no entry for key "rack"`},
		{name: "host_value a discovered host cannot render", targets: "{inventory: hosts.ini}", metrics: "  host_value: '{{.Host.Meta.rack}}:9100'",
			validate: 0, run: 1, want: `metrics.host_value for host web-1: template: host_value:1:7: executing "host_value" at <.Host.Meta.rack>: map has no entry for key "rack"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The fake Consul agent behind a recorder: a run refused
			// before its lock asks Consul nothing (a session released
			// on the way out would leave no key to find afterwards).
			consul := consultest.New("s3cr3t-consul-token")
			t.Cleanup(consul.Close)
			var mu sync.Mutex
			var asked []string
			agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				asked = append(asked, r.Method+" "+r.URL.Path)
				mu.Unlock()
				consul.ServeHTTP(w, r)
			}))
			t.Cleanup(agent.Close)
			for _, kv := range consul.Env() {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			t.Setenv("CONSUL_HTTP_ADDR", agent.URL)
			targets := tc.targets
			if targets == "" {
				targets = "{static: [web-1]}"
			}
			metrics := ""
			if tc.metrics != "" {
				metrics = tc.metrics + "\n"
			}
			for store, state := range map[string]string{"local": "", "consul": "state: {store: consul}\n"} {
				dir := t.TempDir()
				mu.Lock()
				asked = nil
				mu.Unlock()
				data := "name: web\ntargets: " + targets + "\napply: {playbook: " + playbook + ", version: v1}\n" +
					"metrics:\n  url: " + vm.URL + "\n" + metrics + "  queries: {q: {query: up}}\npolicies: [{name: p, rollback_when: 'fleet.degraded > 0'}]\n" +
					tc.extra + "\n" + state
				files := map[string]string{"rollout.yaml": data, "hosts.ini": "[web]\nweb-1 ansible_connection=local\n"}
				for name, body := range files {
					if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				spec := filepath.Join(dir, "rollout.yaml")
				code, _, errOut := rollguard(t, "validate", "-f", spec)
				if code != tc.validate || tc.validate != 0 && !strings.Contains(errOut, filepath.Join(dir, tc.want)) {
					t.Errorf("%s store: validate: exit %d, stderr %q; want %d and %s", store, code, errOut, tc.validate, tc.want)
				}
				code, out, errOut := rollguard(t, "run", "-f", spec)
				want := tc.want
				if tc.run == exitBadInput {
					want = filepath.Join(dir, tc.want)
				}
				if code != tc.run || !strings.Contains(errOut, want) || strings.Contains(out+errOut, "s3cr3t") {
					t.Errorf("%s store: run: exit %d, stdout %q, stderr %q; want %d and %s", store, code, out, errOut, tc.run, want)
				}
				if entries, _ := os.ReadDir(dir); len(entries) != len(files) {
					t.Errorf("%s store: the run left %v in the spec's directory, want only the %d files there before", store, entries, len(files))
				}
				mu.Lock()
				if len(asked) > 0 {
					t.Errorf("%s store: the run asked Consul %v; want nothing", store, asked)
				}
				mu.Unlock()
			}
		})
	}
}

// emptyMetricsStore is a metrics store that answers every query with no
// series: enough for a run to get past its metrics check.
func emptyMetricsStore(t *testing.T) *httptest.Server {
	t.Helper()
	vm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
	}))
	t.Cleanup(vm.Close)
	return vm
}

// sitePlaybook is the absolute path of testdata/playbooks/site.yml.
func sitePlaybook(t *testing.T) string {
	t.Helper()
	playbook, err := filepath.Abs("testdata/playbooks/site.yml")
	if err != nil {
		t.Fatal(err)
	}
	return playbook
}
