package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	napi "github.com/hashicorp/nomad/api"
)

// fixtureServer serves recorded Consul/Nomad responses by path and
// remembers every request it received.
type fixtureServer struct {
	mu     sync.Mutex
	reqs   []*http.Request
	routes map[string]string // path -> fixture file
}

func (f *fixtureServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.reqs = append(f.reqs, r.Clone(r.Context()))
	f.mu.Unlock()
	file, ok := f.routes[r.URL.Path]
	if !ok {
		http.Error(w, "no fixture for "+r.URL.Path, http.StatusNotFound)
		return
	}
	data, err := os.ReadFile(file)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Consul-Index", "42")
	w.Header().Set("X-Nomad-Index", "42")
	w.Write(data)
}

// rollguardEnv runs the binary with extra environment variables.
func rollguardEnv(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), stdout.String(), stderr.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, stdout.String(), stderr.String()
}

func writeSpec(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "playbooks"), 0o755)
	os.WriteFile(filepath.Join(dir, "playbooks", "site.yml"), []byte("- hosts: all\n  tasks: []\n"), 0o644)
	path := filepath.Join(dir, "rollout.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const clusterSpecTail = `apply:
  playbook: playbooks/site.yml
metrics:
  queries:
    latency_p95: {query: 'latency'}
policies:
  - name: degraded-share
    rollback_when: 'fraction(hosts, .degraded) >= 0.3'
`

func TestPlanFromConsul(t *testing.T) {
	srv := &fixtureServer{routes: map[string]string{
		"/v1/health/service/web": "integrations/consul/testdata/health_service_web_all.json",
	}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	spec := writeSpec(t, `name: web-consul
targets:
  consul: {service: web, passing_only: false, name_from: service_id, datacenter: dc1}
canary:
  hosts: {tag: primary}
  monitor: 3m
`+clusterSpecTail)
	const token = "s3cr3t-consul-token"
	code, out, errOut := rollguardEnv(t, []string{"CONSUL_HTTP_ADDR=" + ts.URL, "CONSUL_HTTP_TOKEN=" + token}, "plan", "--json", "-f", spec)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var plan struct {
		Waves []struct {
			Name  string   `json:"name"`
			Hosts []string `json:"hosts"`
		} `json:"waves"`
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatalf("plan --json: %v\n%s", err, out)
	}
	if len(plan.Waves) != 2 || strings.Join(plan.Waves[0].Hosts, ",") != "web-1" || strings.Join(plan.Waves[1].Hosts, ",") != "web-2" {
		t.Fatalf("plan %+v: want canary [web-1] (tag primary), then [web-2]", plan.Waves)
	}
	if len(srv.reqs) == 0 {
		t.Fatal("no request reached Consul")
	}
	r := srv.reqs[0]
	if got := r.Header.Get("X-Consul-Token"); got != token {
		t.Errorf("token header %q, want the CONSUL_HTTP_TOKEN", got)
	}
	if r.URL.Query().Get("dc") != "dc1" || r.URL.Query().Has("passing") {
		t.Errorf("query %q: want dc=dc1 and no passing filter", r.URL.RawQuery)
	}
	if strings.Contains(out+errOut, token) {
		t.Errorf("the token appears in the output")
	}

	// passing_only (the default) asks Consul for passing instances; an
	// empty answer is an error that names the service and the filters.
	srv.routes["/v1/health/service/web"] = writeTemp(t, "[]")
	spec = writeSpec(t, "name: web-consul\ntargets:\n  consul: {service: web, tags: [canary]}\n"+clusterSpecTail)
	code, _, errOut = rollguardEnv(t, []string{"CONSUL_HTTP_ADDR=" + ts.URL, "CONSUL_HTTP_TOKEN=" + token}, "plan", "-f", spec)
	if code != 1 || !strings.Contains(errOut, `"web"`) || !strings.Contains(errOut, "canary") {
		t.Errorf("empty discovery: exit %d, stderr %q: want 1 naming the service and the tag", code, errOut)
	}
	if last := srv.reqs[len(srv.reqs)-1]; !last.URL.Query().Has("passing") {
		t.Errorf("query %q: passing_only defaults to true", last.URL.RawQuery)
	}
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fixture.json")
	os.WriteFile(p, []byte(content), 0o644)
	return p
}

func TestPlanFromNomad(t *testing.T) {
	routes := map[string]string{"/v1/nodes": "integrations/nomad/testdata/nodes_fleet.json"}
	for _, n := range []struct{ id, name string }{
		{"11111111-0000-0000-0000-000000000001", "web-a"}, {"22222222-0000-0000-0000-000000000002", "web-b"},
		{"55555555-0000-0000-0000-000000000005", "batch-1"}, {"e1dab77c-7cd8-74f8-e548-273aefd669da", "vm"},
	} {
		routes["/v1/node/"+n.id] = "integrations/nomad/testdata/node_" + n.name + ".json"
	}
	srv := &fixtureServer{routes: routes}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	spec := writeSpec(t, `name: web-nomad
targets:
  nomad: {node_pool: default, node_class: web, meta: {role: web}}
canary:
  hosts: {meta: {rack: r1}}
  monitor: 3m
`+clusterSpecTail)
	code, out, errOut := rollguardEnv(t, []string{"NOMAD_ADDR=" + ts.URL, "NOMAD_TOKEN=s3cr3t"}, "plan", "--json", "-f", spec)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	// Ready, eligible, not draining, pool default, class web, meta role=web:
	// web-a and web-b; the canary is the one in rack r1.
	if !strings.Contains(out, `"canary"`) || !strings.Contains(out, `"web-b"`) || !strings.Contains(out, `"web-a"`) ||
		strings.Contains(out, "web-drained") || strings.Contains(out, "web-down") || strings.Contains(out, "batch-1") {
		t.Fatalf("plan:\n%s", out)
	}
	var plan struct {
		Waves []struct{ Hosts []string } `json:"waves"`
	}
	json.Unmarshal([]byte(out), &plan)
	if len(plan.Waves) < 1 || strings.Join(plan.Waves[0].Hosts, ",") != "web-b" {
		t.Errorf("canary %v, want [web-b] (meta rack=r1)", plan.Waves)
	}
	for _, r := range srv.reqs {
		if r.Header.Get("X-Nomad-Token") != "s3cr3t" {
			t.Errorf("%s without the NOMAD_TOKEN", r.URL.Path)
		}
	}
}

func TestNomadJob(t *testing.T) {
	spec := writeSpec(t, `name: web-shared
targets:
  static: [web-1, web-2]
state: {store: consul}
`+clusterSpecTail)
	code, out, errOut := rollguard(t, "nomad", "job", "-f", spec, "--cron", "0 3 * * *", "--secret", "CONSUL_HTTP_TOKEN", "--secret", "METRICS_TOKEN")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var wrapper struct{ Job napi.Job }
	if err := json.Unmarshal([]byte(out), &wrapper); err != nil {
		t.Fatalf("decode job: %v\n%s", err, out)
	}
	job := wrapper.Job
	if *job.ID != "rollguard-web-shared" || *job.Type != "batch" || job.Periodic == nil || len(job.Periodic.Specs) != 1 || job.Periodic.Specs[0] != "0 3 * * *" || !*job.Periodic.ProhibitOverlap {
		t.Errorf("job %s %s periodic %+v", *job.ID, *job.Type, job.Periodic)
	}
	task := job.TaskGroups[0].Tasks[0]
	var files, secrets []string
	for _, tmpl := range task.Templates {
		if tmpl.Envvars != nil && *tmpl.Envvars {
			secrets = append(secrets, *tmpl.EmbeddedTmpl)
		} else {
			files = append(files, *tmpl.DestPath)
		}
	}
	if !strings.Contains(strings.Join(files, " "), "rollout.yaml") || !strings.Contains(strings.Join(files, " "), "playbooks/site.yml") {
		t.Errorf("embedded files %v: want the spec and its playbook", files)
	}
	if len(secrets) != 1 || !strings.Contains(secrets[0], "METRICS_TOKEN") || !strings.Contains(secrets[0], "nomadVar") {
		t.Errorf("secrets template %v: want METRICS_TOKEN from the job's Nomad variable", secrets)
	}
	// A local state store cannot follow a rescheduled allocation.
	local := writeSpec(t, "name: web-local\ntargets:\n  static: [web-1]\n"+clusterSpecTail)
	code, _, errOut = rollguard(t, "nomad", "job", "-f", local, "--cron", "0 3 * * *")
	if code != 2 || !strings.Contains(errOut, "local") {
		t.Errorf("local state: exit %d, %q: want 2 refusing the local store", code, errOut)
	}
}
