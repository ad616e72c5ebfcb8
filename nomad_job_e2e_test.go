package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	napi "github.com/hashicorp/nomad/api"

	"github.com/rollguard/rollguard/integrations/bundle/bundletest"
	"github.com/rollguard/rollguard/integrations/nomad/nomadtest"
)

// needAnsible skips without ansible-inventory (fails under ROLLGUARD_E2E=1).
func needAnsible(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ansible-inventory"); err != nil {
		if os.Getenv("ROLLGUARD_E2E") == "1" {
			t.Fatalf("ansible-inventory is required with ROLLGUARD_E2E=1 (run ci/install-deps.sh): %v", err)
		}
		t.Skip("ansible-inventory not installed; set ROLLGUARD_E2E=1 to make this a failure")
	}
}

// The flat layout (rollout.yaml next to site.yml, with a vault password
// file, an SSH key, .git, .rollguard/ and an earlier job.json) renders,
// with none of the spec's variables set, a job that holds none of the
// secrets; its task, given the variable's items as a Nomad client would,
// starts rollguard, which reaches the metrics preflight with
// METRICS_TOKEN, and prints no secret.
func TestNomadJobFlatLayout(t *testing.T) {
	needAnsible(t)
	dir := t.TempDir()
	if err := bundletest.Flat(dir); err != nil {
		t.Fatal(err)
	}
	render := exec.Command(binary, "nomad", "job", "-f", "rollout.yaml", "--cron", "0 3 * * 1-5", "--no-reschedule",
		"--driver", "raw_exec", "--binary", binary)
	render.Dir = dir
	render.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()} // no METRICS_TOKEN, VM_URL, SLACK_WEBHOOK_URL
	var out, errOut bytes.Buffer
	render.Stdout, render.Stderr = &out, &errOut
	if err := render.Run(); err != nil {
		t.Fatalf("nomad job: %v\n%s", err, errOut.String())
	}
	t.Logf("rendering said:\n%s", errOut.String())
	secrets := []string{bundletest.VaultPassword, "OPENSSH PRIVATE KEY", "ghs_s3cr3tgittoken", "state-must-not-travel", "job-must-not-travel"}
	for _, s := range secrets {
		if strings.Contains(out.String(), s) || strings.Contains(errOut.String(), s) {
			t.Errorf("the job or its rendering output holds %q", s)
		}
	}
	for _, want := range []string{"METRICS_TOKEN      environment  (rollout.yaml:12:17 metrics.bearer_token)",
		"file_vault_pass    file local/.vault-pass", "file_id_ed25519    file local/id_ed25519", ".git/                                    hidden",
		"job.json                                 a rendered Nomad job"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("rendering output lacks %q", want)
		}
	}

	var wrapper struct{ Job napi.Job }
	if err := json.Unmarshal(out.Bytes(), &wrapper); err != nil {
		t.Fatalf("decode the job into nomad/api types: %v", err)
	}
	tasks := wrapper.Job.TaskGroups[0].Tasks
	task := tasks[len(tasks)-1]
	dests := map[string]*napi.Template{}
	for _, tmpl := range task.Templates {
		dests[*tmpl.DestPath] = tmpl
	}
	for _, p := range []string{".git/config", ".git/HEAD", ".rollguard/history/web-1.json", "job.json", "id_ed25519.pub"} {
		if dests["local/"+p] != nil {
			t.Errorf("the job embeds %s", p)
		}
	}
	env := dests["secrets/rollguard.env"]
	if env == nil || !*env.Envvars || !strings.Contains(*env.EmbeddedTmpl, "METRICS_TOKEN={{ .METRICS_TOKEN | toJSON }}") {
		t.Fatalf("env template %+v: want METRICS_TOKEN exported from the variable", env)
	}

	// The metrics store: it answers only the right bearer token, and
	// refuses the preflight query itself so that nothing further happens.
	const token = "mt-s3cr3t-metrics-token"
	var mu sync.Mutex
	var auths []string
	vm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auths = append(auths, r.Header.Get("Authorization"))
		mu.Unlock()
		http.Error(w, "the test stops the run at the preflight", http.StatusServiceUnavailable)
	}))
	defer vm.Close()

	items := map[string]string{
		"VM_URL":            vm.URL,
		"METRICS_TOKEN":     token,
		"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/slack-s3cr3t-path",
		"file_vault_pass":   bundletest.VaultPassword + "\n",
		"file_id_ed25519":   bundletest.SSHKey,
	}
	alloc := t.TempDir()
	dirs := nomadtest.Dirs{Task: filepath.Join(alloc, "rollguard"), Alloc: alloc, Node: "client-1"}
	taskEnv, err := nomadtest.Prepare(task, map[string]map[string]string{"nomad/jobs/rollguard-web-flat": items}, dirs)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"local/rollout.yaml", "local/site.yml", "local/inventory.ini", "local/ansible.cfg", "local/.vault-pass", "local/id_ed25519"} {
		if _, err := os.Stat(filepath.Join(dirs.Task, f)); err != nil {
			t.Errorf("task directory: %v", err)
		}
	}
	run := exec.Command(task.Config["command"].(string), nomadtest.Args(task, dirs)...)
	run.Dir = dirs.Task
	run.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, taskEnv...)
	var runOut, runErr bytes.Buffer
	run.Stdout, run.Stderr = &runOut, &runErr
	err = run.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("run: %v, want exit 1 at the preflight\nstdout:\n%s\nstderr:\n%s", err, runOut.String(), runErr.String())
	}
	t.Logf("the task said:\n%s%s", runOut.String(), runErr.String())
	if !strings.Contains(runErr.String(), "preflight: the metrics source does not answer") {
		t.Errorf("stderr %q: want the preflight's error", runErr.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(auths) == 0 || auths[0] != "Bearer "+token {
		t.Errorf("metrics requests carried %q, want the variable's METRICS_TOKEN as bearer token", auths)
	}
	for _, s := range append(secrets, token, "slack-s3cr3t-path") {
		if strings.Contains(runOut.String()+runErr.String(), s) {
			t.Errorf("the task's output holds %q", s)
		}
	}
}

// fakeCluster is a Nomad agent for `nomad register`: the recorded
// /v1/nodes (one Nomad 1.6.1 client) and PUT /v1/jobs answers, and the
// Variables API of nomadtest. A request with the token noVarRead is
// refused (403) on variables only, as an ACL policy without variable
// read does.
type fakeCluster struct {
	vars *nomadtest.Server
	// nodes is the /v1/nodes answer (default the recorded 1.6.1 one).
	nodes string
	mu    sync.Mutex
	jobs  [][]byte
}

const (
	clusterToken = "s3cr3t-register-token"
	noVarRead    = "s3cr3t-token-without-variable-read"
)

func (f *fakeCluster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok := r.Header.Get("X-Nomad-Token")
	if tok != clusterToken && tok != noVarRead {
		http.Error(w, "Permission denied", http.StatusForbidden)
		return
	}
	switch {
	case r.URL.Path == "/v1/nodes":
		nodes := f.nodes
		if nodes == "" {
			nodes = "integrations/nomad/testdata/nodes.json"
		}
		data, _ := os.ReadFile(nodes)
		w.Header().Set("Content-Type", "application/json")
		w.Write(data)
	case r.URL.Path == "/v1/jobs" && r.Method == http.MethodPut:
		body := new(bytes.Buffer)
		body.ReadFrom(r.Body)
		f.mu.Lock()
		f.jobs = append(f.jobs, body.Bytes())
		f.mu.Unlock()
		data, _ := os.ReadFile("integrations/nomad/testdata/job_register_response.json")
		w.Header().Set("Content-Type", "application/json")
		w.Write(data)
	case strings.HasPrefix(r.URL.Path, "/v1/var/") && tok == noVarRead:
		http.Error(w, "Permission denied", http.StatusForbidden)
	default:
		r.Header.Set("X-Nomad-Token", clusterToken)
		f.vars.ServeHTTP(w, r)
	}
}

func TestNomadRegister(t *testing.T) {
	spec := writeSpec(t, `name: web-reg
targets:
  static: [web-1, web-2]
state: {store: consul}
apply:
  playbook: playbooks/site.yml
metrics:
  bearer_token: ${METRICS_TOKEN}
  queries:
    latency_p95: {query: 'latency'}
policies:
  - name: degraded-share
    rollback_when: 'fraction(hosts, .degraded) >= 0.3'
`)
	vars := nomadtest.New(clusterToken)
	defer vars.Close()
	fc := &fakeCluster{vars: vars}
	srv := httptest.NewServer(fc)
	defer srv.Close()
	register := func(token string, args ...string) (int, string, string) {
		t.Helper()
		return rollguardEnv(t, []string{"NOMAD_ADDR=" + srv.URL, "NOMAD_TOKEN=" + token},
			append([]string{"nomad", "register", "-f", spec, "--cron", "0 3 * * *"}, args...)...)
	}

	// The variable lacks CONSUL_HTTP_TOKEN: nothing is registered.
	vars.Set("nomad/jobs/rollguard-web-reg", napi.VariableItems{"METRICS_TOKEN": "x"})
	code, out, errOut := register(clusterToken)
	if code != 1 || !strings.Contains(errOut, "the variable nomad/jobs/rollguard-web-reg lacks CONSUL_HTTP_TOKEN") || len(fc.jobs) != 0 {
		t.Fatalf("incomplete variable: exit %d, %d registrations\n%s%s", code, len(fc.jobs), out, errOut)
	}

	// Complete: registered, with cron since the client runs 1.6.1, and a
	// token (no workload identity before 1.7).
	vars.Set("nomad/jobs/rollguard-web-reg", napi.VariableItems{"METRICS_TOKEN": "x", "CONSUL_HTTP_TOKEN": "y"})
	code, out, errOut = register(clusterToken)
	if code != 0 || len(fc.jobs) != 1 {
		t.Fatalf("exit %d, %d registrations\n%s%s", code, len(fc.jobs), out, errOut)
	}
	for _, want := range []string{"the variable nomad/jobs/rollguard-web-reg holds the 2 items the job needs",
		"node vm runs Nomad 1.6.1, which does not know crons (1.6.2+): the schedule is written as cron",
		"warning: kill_timeout is 5m0s, but each Nomad client caps it at its max_kill_timeout (30s",
		"registered: evaluation"} {
		if !strings.Contains(out, want) {
			t.Errorf("register output lacks %q:\n%s", want, out)
		}
	}
	var sent struct{ Job napi.Job }
	if err := json.Unmarshal(fc.jobs[0], &sent); err != nil {
		t.Fatal(err)
	}
	if p := sent.Job.Periodic; p.Spec == nil || *p.Spec != "0 3 * * *" || len(p.Specs) != 0 {
		t.Errorf("periodic %+v: want cron for Nomad 1.6.1", p)
	}
	if sent.Job.TaskGroups[0].Tasks[0].Identity != nil {
		t.Error("workload identity on a 1.6.1 cluster")
	}

	// A token that may not read the variable: said, and registered.
	code, out, errOut = register(noVarRead)
	if code != 0 || !strings.Contains(out, "cannot check the variable nomad/jobs/rollguard-web-reg: the token may not read it (403); make sure it holds METRICS_TOKEN, CONSUL_HTTP_TOKEN") {
		t.Errorf("403: exit %d\n%s%s", code, out, errOut)
	}

	// Workload identity asked of a 1.6.1 cluster: refused.
	code, _, errOut = register(clusterToken, "--auth", "identity")
	if code != 2 || !strings.Contains(errOut, "node vm runs Nomad 1.6.1; workload identity for the Nomad API needs 1.7.0") {
		t.Errorf("--auth identity on 1.6.1: exit %d, %s", code, errOut)
	}
	for _, o := range []string{out, errOut} {
		if strings.Contains(o, clusterToken) || strings.Contains(o, noVarRead) {
			t.Error("a token in the output")
		}
	}
}

// On a cluster whose clients all run Nomad 1.7+, a run that calls Nomad
// uses the task's workload identity: no NOMAD_TOKEN in the variable, the
// task API as NOMAD_ADDR, crons.
func TestNomadRegisterWorkloadIdentity(t *testing.T) {
	spec := writeSpec(t, "name: web-wi\ntargets:\n  static: [web-1]\nstate: {store: nomad}\n"+clusterSpecTail)
	vars := nomadtest.New(clusterToken)
	defer vars.Close()
	fc := &fakeCluster{vars: vars, nodes: "integrations/nomad/testdata/nodes_1.8.json"}
	srv := httptest.NewServer(fc)
	defer srv.Close()
	vars.Set("nomad/jobs/rollguard-web-wi", napi.VariableItems{"UNRELATED": "x"})
	code, out, errOut := rollguardEnv(t, []string{"NOMAD_ADDR=" + srv.URL, "NOMAD_TOKEN=" + clusterToken},
		"nomad", "register", "-f", spec, "--cron", "0 3 * * *", "--cron", "0 15 * * 6")
	if code != 0 || len(fc.jobs) != 1 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "the variable nomad/jobs/rollguard-web-wi needs no items") {
		t.Errorf("output:\n%s", out)
	}
	var sent struct{ Job napi.Job }
	json.Unmarshal(fc.jobs[0], &sent)
	task := sent.Job.TaskGroups[0].Tasks[0]
	if task.Identity == nil || !task.Identity.Env || task.Env["NOMAD_ADDR"] != "unix://${NOMAD_SECRETS_DIR}/api.sock" {
		t.Errorf("identity %+v env %v: want the workload identity and the task API", task.Identity, task.Env)
	}
	if p := sent.Job.Periodic; p.Spec != nil || len(p.Specs) != 2 {
		t.Errorf("periodic %+v: want both schedules in crons", p)
	}
	for _, tmpl := range task.Templates {
		if strings.Contains(*tmpl.EmbeddedTmpl, "NOMAD_TOKEN") {
			t.Errorf("template reads NOMAD_TOKEN from the variable: %s", *tmpl.EmbeddedTmpl)
		}
	}
}
