package nomad

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/rollguard/rollguard/integrations/nomad/nomadtest"
)

// The rendered templates give the task exactly the variable's values,
// whatever they hold; a missing required item stops the task, a missing
// optional one is left unset.
func TestVariableTemplatesRender(t *testing.T) {
	job, err := RenderJob(goldenOptions())
	if err != nil {
		t.Fatal(err)
	}
	task := job.TaskGroups[0].Tasks[0]
	tricky := `s3cr3t "quoted" # not a comment = x` + "\\n"
	items := map[string]string{
		"CONSUL_HTTP_TOKEN": "consul-token",
		"METRICS_TOKEN":     tricky,
		"file_vault_pass":   "vault password\n",
	}
	dir := t.TempDir()
	env, err := nomadtest.Prepare(task, map[string]map[string]string{"nomad/jobs/web-nginx-rollout": items}, nomadtest.Dirs{Task: dir, Alloc: dir, Node: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CONSUL_HTTP_TOKEN=consul-token", "METRICS_TOKEN=" + tricky} {
		if !slices.Contains(env, want) {
			t.Errorf("env lacks %q: %q", want, env)
		}
	}
	for _, e := range env {
		if strings.HasPrefix(e, "GITHUB_SHA=") {
			t.Errorf("optional GITHUB_SHA is missing from the variable, yet set: %q", e)
		}
	}
	p := filepath.Join(dir, "local", ".vault-pass")
	data, err := os.ReadFile(p)
	if err != nil || string(data) != "vault password\n" {
		t.Errorf("vault password file = %q, %v", data, err)
	}
	if fi, _ := os.Stat(p); fi == nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("vault password file mode %v, want 0600", fi.Mode())
	}
	spec, _ := os.ReadFile(filepath.Join(dir, "local", "rollout.yaml"))
	if !strings.Contains(string(spec), "{{.Host.Address}}") {
		t.Errorf("the spec's {{ }} did not survive: %s", spec)
	}

	items["GITHUB_SHA"] = "abc123"
	env, _ = nomadtest.Prepare(task, map[string]map[string]string{"nomad/jobs/web-nginx-rollout": items}, nomadtest.Dirs{Task: dir, Alloc: dir})
	if !slices.Contains(env, "GITHUB_SHA=abc123") {
		t.Errorf("optional item present, env %q", env)
	}
	delete(items, "METRICS_TOKEN")
	if _, err := nomadtest.Prepare(task, map[string]map[string]string{"nomad/jobs/web-nginx-rollout": items}, nomadtest.Dirs{Task: dir, Alloc: dir}); err == nil || !strings.Contains(err.Error(), "METRICS_TOKEN") {
		t.Errorf("missing required item: %v, want the template to fail naming METRICS_TOKEN", err)
	}
}

func TestItems(t *testing.T) {
	n := Needs{
		Env: []EnvRef{
			{Name: "METRICS_TOKEN", Where: "rollout.yaml:10:17 metrics.bearer_token"},
			{Name: "GITHUB_SHA", Where: "rollout.yaml:7:12 apply.version", HasDefault: true},
			{Name: "NOMAD_ALLOC_ID", Where: "rollout.yaml:8:1 apply.extra_vars.alloc"},
			{Name: "CONSUL_HTTP_TOKEN", Where: "rollout.yaml:20:3 alerts[0].url"},
			{Name: "VM_URL", Where: "rollout.yaml:9:8 metrics.url"},
		},
		Consul: "state.store: consul",
		Nomad:  "targets.nomad",
		Files:  []SecretFile{{Item: "file_vault_pass", Path: ".vault-pass", Why: "apply.vault_password_file"}},
		Extra:  []string{"ANSIBLE_BECOME_PASSWORD"},
	}
	got := Items(n, false, map[string]string{"VM_URL": "http://vm:8428"})
	want := []Item{
		{Name: "METRICS_TOKEN", Why: "rollout.yaml:10:17 metrics.bearer_token"},
		{Name: "GITHUB_SHA", Optional: true, Why: "rollout.yaml:7:12 apply.version"},
		{Name: "CONSUL_HTTP_TOKEN", Why: "rollout.yaml:20:3 alerts[0].url; state.store: consul"},
		{Name: "NOMAD_TOKEN", Why: "targets.nomad"},
		{Name: "ANSIBLE_BECOME_PASSWORD", Why: "--secret"},
		{Name: "file_vault_pass", File: "local/.vault-pass", Why: "apply.vault_password_file"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Items =\n%+v\nwant\n%+v", got, want)
	}
	for _, it := range Items(n, true, nil) {
		if it.Name == "NOMAD_TOKEN" {
			t.Error("with workload identity, NOMAD_TOKEN is not an item")
		}
	}
	text := FormatItems("nomad/jobs/x", want, func(p string) string { return p })
	for _, s := range []string{"METRICS_TOKEN            environment  (rollout.yaml:10:17 metrics.bearer_token)",
		"GITHUB_SHA               environment, optional (has a default)",
		"nomad var put nomad/jobs/x METRICS_TOKEN=... CONSUL_HTTP_TOKEN=... NOMAD_TOKEN=... ANSIBLE_BECOME_PASSWORD=... file_vault_pass=@.vault-pass"} {
		if !strings.Contains(text, s) {
			t.Errorf("FormatItems lacks %q:\n%s", s, text)
		}
	}
}

func TestCheckVariable(t *testing.T) {
	f, c := newFakeVars(t)
	required := []string{"METRICS_TOKEN", "CONSUL_HTTP_TOKEN", "file_vault_pass"}
	ctx := context.Background()

	check, err := CheckVariable(ctx, c, "nomad/jobs/web", "", required)
	if err != nil || !check.Readable || check.Exists || !slices.Equal(check.Missing, required) {
		t.Errorf("no variable: %+v, %v; want every item missing", check, err)
	}
	f.set("nomad/jobs/web", api.VariableItems{"METRICS_TOKEN": "m", "file_vault_pass": "v", "OTHER": "o"})
	check, err = CheckVariable(ctx, c, "nomad/jobs/web", "", required)
	if err != nil || !check.Readable || !check.Exists || !slices.Equal(check.Missing, []string{"CONSUL_HTTP_TOKEN"}) {
		t.Errorf("partial variable: %+v, %v; want CONSUL_HTTP_TOKEN missing", check, err)
	}
	// A token without read on the variable: Nomad answers 403.
	other, err := New(&api.Config{Address: f.srv.URL, SecretID: "a-token-without-read"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	check, err = CheckVariable(ctx, other, "nomad/jobs/web", "", required)
	if err != nil || check.Readable || check.Missing != nil {
		t.Errorf("403: %+v, %v; want not readable, nothing checked, no error", check, err)
	}
	f.setFailing(true)
	if _, err := CheckVariable(ctx, c, "nomad/jobs/web", "", required); err == nil || strings.Contains(err.Error(), testToken) {
		t.Errorf("500: %v, want an error without the token", err)
	}
}

// ReadCluster finds the oldest client from the recorded /v1/nodes (Nomad
// 1.6.1), which knows neither crons nor workload identity for the API.
func TestReadCluster(t *testing.T) {
	body, err := os.ReadFile(filepath.Join("testdata", "nodes.json"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/nodes" {
			t.Errorf("unexpected %s", r.URL.Path)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	c, err := New(&api.Config{Address: srv.URL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := ReadCluster(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if cl.Nodes != 1 || cl.Oldest.String() != "1.6.1" || cl.OldestNode != "vm" || cl.Supports(VersionCrons) || cl.Supports(VersionIdentity) {
		t.Errorf("cluster %+v (oldest %v): want node vm on 1.6.1, before crons and workload identity", cl, cl.Oldest)
	}
	if !cl.Readable {
		t.Error("a listed cluster is readable")
	}
	if !(Cluster{}).Supports(VersionIdentity) {
		t.Error("no nodes: nothing known, the operator's choice stands")
	}
}

func TestKillTimeoutWarning(t *testing.T) {
	if w := KillTimeoutWarning(30 * time.Second); w != "" {
		t.Errorf("30s: %q, want none", w)
	}
	w := KillTimeoutWarning(5 * time.Minute)
	for _, s := range []string{"kill_timeout is 5m0s", "max_kill_timeout (30s", "no Nomad API reports it", `client { max_kill_timeout = "5m0s" }`} {
		if !strings.Contains(w, s) {
			t.Errorf("warning %q lacks %q", w, s)
		}
	}
}

func TestReadClusterForbidden(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Permission denied", http.StatusForbidden)
	}))
	defer srv.Close()
	c, _ := New(&api.Config{Address: srv.URL}, nil)
	cl, err := ReadCluster(context.Background(), c)
	if err != nil || cl.Readable || cl.Oldest != nil {
		t.Errorf("403: %+v, %v; want an unknown cluster, no error", cl, err)
	}
}
