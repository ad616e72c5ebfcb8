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
	vm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"success","data":{"resultType":"vector","result":[]}}`)
	}))
	t.Cleanup(vm.Close)
	playbook, err := filepath.Abs("testdata/playbooks/site.yml")
	if err != nil {
		t.Fatal(err)
	}
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
