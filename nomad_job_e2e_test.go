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
