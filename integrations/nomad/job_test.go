package nomad

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
)

var update = flag.Bool("update", false, "rewrite testdata/job.golden.json")

func goldenOptions() JobOptions {
	return JobOptions{
		JobID:    "web-nginx-rollout",
		Crons:    []string{"0 3 * * 1-5"},
		TimeZone: "Europe/Paris",
		Version:  "1.2.0",
		Items: []Item{
			{Name: "CONSUL_HTTP_TOKEN", Why: "state.store: consul"},
			{Name: "METRICS_TOKEN", Why: "rollout.yaml:6:17 metrics.bearer_token"},
			{Name: "GITHUB_SHA", Optional: true, Why: "rollout.yaml:4:12 apply.version"},
			{Name: "file_vault_pass", File: "local/.vault-pass", Why: "apply.vault_password_file"},
		},
		StateStore: "consul",
		Files: map[string]string{
			"rollout.yaml":       "name: web-nginx-tuning\ntargets:\n  consul: {service: web}\nmetrics:\n  host_value: \"{{.Host.Address}}:9100\"\n",
			"playbooks/site.yml": "- hosts: all\n  tasks:\n    - debug: {msg: \"{{ inventory_hostname }}\"}\n",
		},
	}
}

func TestRenderJobGolden(t *testing.T) {
	job, err := RenderJob(goldenOptions())
	if err != nil {
		t.Fatal(err)
	}
	got, err := JobJSON(job)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "job.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("rendered job differs from %s (run with -update to accept):\n%s", golden, got)
	}
	var back jobWrapper
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Job, job) {
		t.Errorf("JSON does not decode back into the rendered job:\n%+v\n%+v", back.Job, job)
	}
}

// TestRenderJobMeaning checks what the golden file encodes, field by
// field, against the recorded periodic job's shape.
func TestRenderJobMeaning(t *testing.T) {
	job, err := RenderJob(goldenOptions())
	if err != nil {
		t.Fatal(err)
	}
	var recorded map[string]any
	b, err := os.ReadFile(filepath.Join("testdata", "job.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &recorded); err != nil {
		t.Fatal(err)
	}
	rendered, _ := json.Marshal(job)
	var ours map[string]any
	_ = json.Unmarshal(rendered, &ours)
	// Every top-level field we set is one the server's job has.
	for k, v := range ours {
		if _, ok := recorded[k]; !ok && v != nil {
			t.Errorf("rendered field %q is not in the recorded job", k)
		}
	}

	if *job.Type != "batch" || !*job.Periodic.Enabled || job.Periodic.Spec != nil || !reflect.DeepEqual(job.Periodic.Specs, []string{"0 3 * * 1-5"}) || *job.Periodic.SpecType != "cron" ||
		!*job.Periodic.ProhibitOverlap || *job.Periodic.TimeZone != "Europe/Paris" {
		t.Errorf("periodic = %+v, want an enabled, non-overlapping cron in Europe/Paris", job.Periodic)
	}
	tg := job.TaskGroups[0]
	if *tg.ReschedulePolicy.Unlimited || *tg.ReschedulePolicy.Attempts != 1 || *tg.RestartPolicy.Attempts != 2 || *tg.RestartPolicy.Mode != "fail" {
		t.Errorf("restart %+v / reschedule %+v: want bounded attempts", tg.RestartPolicy, tg.ReschedulePolicy)
	}
	task := tg.Tasks[0]
	if *task.KillTimeout != 5*time.Minute || task.KillSignal != "SIGTERM" {
		t.Errorf("kill = %v %s, want 5m SIGTERM", *task.KillTimeout, task.KillSignal)
	}
	if task.Config["image"] != "ghcr.io/rollguard/rollguard:1.2.0" {
		t.Errorf("image = %v", task.Config["image"])
	}
	wantArgs := []any{"run", "-f", "${NOMAD_TASK_DIR}/rollout.yaml", "--report-dir", "${NOMAD_ALLOC_DIR}/data/reports", "--lock-wait", "3m"}
	if !reflect.DeepEqual(task.Config["args"], wantArgs) {
		t.Errorf("args = %v, want %v", task.Config["args"], wantArgs)
	}
	secrets := task.Templates[0]
	if !*secrets.Envvars || *secrets.DestPath != "secrets/rollguard.env" || !*secrets.ErrMissingKey {
		t.Errorf("secrets template env=%v dest=%s missing-key=%v", *secrets.Envvars, *secrets.DestPath, *secrets.ErrMissingKey)
	}
	vault := task.Templates[1]
	if *vault.DestPath != "local/.vault-pass" || *vault.Perms != "0600" || !*vault.ErrMissingKey ||
		*vault.EmbeddedTmpl != `{{ with nomadVar "nomad/jobs/web-nginx-rollout" }}{{ .file_vault_pass }}{{ end }}` {
		t.Errorf("vault password template = %s -> %s perms %s", *vault.EmbeddedTmpl, *vault.DestPath, *vault.Perms)
	}
	for k, v := range task.Env {
		if strings.Contains(strings.ToUpper(k), "TOKEN") || strings.Contains(v, "s3cr3t") {
			t.Errorf("env %s=%s: secrets must come from the variable, not the job", k, v)
		}
	}
	files := map[string]*api.Template{}
	for _, tmpl := range task.Templates[2:] {
		files[*tmpl.DestPath] = tmpl
	}
	spec := files["local/rollout.yaml"]
	if spec == nil || !strings.Contains(*spec.EmbeddedTmpl, "{{.Host.Address}}") || strings.Contains(*spec.LeftDelim, "{{") {
		t.Errorf("spec template = %+v: the spec must be embedded verbatim with non-{{ delimiters", spec)
	}
	if files["local/playbooks/site.yml"] == nil {
		t.Errorf("playbook not embedded; templates: %v", files)
	}
}

func TestRenderJobVariants(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*JobOptions)
		check   func(*testing.T, *api.Job)
		wantErr []string
	}{
		{name: "raw_exec with an artifact", mod: func(o *JobOptions) {
			o.Driver, o.Binary, o.Files, o.ArtifactURL = DriverRawExec, "/usr/local/bin/rollguard", nil, "https://example.com/rollout.tar.gz"
		}, check: func(t *testing.T, j *api.Job) {
			task := j.TaskGroups[0].Tasks[0]
			if task.Driver != "raw_exec" || task.Config["command"] != "/usr/local/bin/rollguard" || task.Config["image"] != nil {
				t.Errorf("task = %s %v", task.Driver, task.Config)
			}
			if len(task.Artifacts) != 1 || *task.Artifacts[0].GetterSource != "https://example.com/rollout.tar.gz" || *task.Artifacts[0].RelativeDest != "local/" {
				t.Errorf("artifacts = %+v", task.Artifacts)
			}
		}},
		{name: "local store allowed without rescheduling", mod: func(o *JobOptions) {
			o.StateStore, o.NoReschedule, o.KillTimeout = "local", true, 15*time.Minute
		}, check: func(t *testing.T, j *api.Job) {
			tg := j.TaskGroups[0]
			if *tg.ReschedulePolicy.Attempts != 0 || *tg.ReschedulePolicy.Unlimited {
				t.Errorf("reschedule = %+v, want none", tg.ReschedulePolicy)
			}
			if *tg.Tasks[0].KillTimeout != 15*time.Minute {
				t.Errorf("kill timeout = %v", *tg.Tasks[0].KillTimeout)
			}
		}},
		{name: "local store refused when reschedulable", mod: func(o *JobOptions) { o.StateStore = "" },
			wantErr: []string{"state.store is local", "rescheduled", "--no-reschedule"}},
		{name: "every problem at once", mod: func(o *JobOptions) {
			o.JobID, o.Crons, o.Driver, o.Items = "", nil, "podman", []Item{{Name: "BAD-NAME"}}
		}, wantErr: []string{"job ID is required", "cron schedule is required", `unknown driver "podman"`, `variable item "BAD-NAME"`}},
		{name: "two schedules", mod: func(o *JobOptions) { o.Crons = []string{"0 3 * * 1-5", "0 12 * * 6"} },
			check: func(t *testing.T, j *api.Job) {
				if !reflect.DeepEqual(j.Periodic.Specs, []string{"0 3 * * 1-5", "0 12 * * 6"}) || j.Periodic.Spec != nil {
					t.Errorf("periodic = %+v, want both in crons", j.Periodic)
				}
			}},
		{name: "cron for Nomad before 1.6.2", mod: func(o *JobOptions) { o.SingleCron = true },
			check: func(t *testing.T, j *api.Job) {
				if j.Periodic.Spec == nil || *j.Periodic.Spec != "0 3 * * 1-5" || j.Periodic.Specs != nil {
					t.Errorf("periodic = %+v, want the one schedule in cron", j.Periodic)
				}
			}},
		{name: "cron holds one schedule", mod: func(o *JobOptions) { o.SingleCron, o.Crons = true, []string{"0 3 * * *", "0 4 * * *"} },
			wantErr: []string{"2 schedules need crons (Nomad 1.6.2+)"}},
		{name: "workload identity", mod: func(o *JobOptions) { o.WorkloadIdentity = true },
			check: func(t *testing.T, j *api.Job) {
				task := j.TaskGroups[0].Tasks[0]
				if task.Identity == nil || !task.Identity.Env || task.Env["NOMAD_ADDR"] != "unix://${NOMAD_SECRETS_DIR}/api.sock" {
					t.Errorf("identity %+v, NOMAD_ADDR %q: want the identity as NOMAD_TOKEN and the task API", task.Identity, task.Env["NOMAD_ADDR"])
				}
			}},
		{name: "workload identity and a token", mod: func(o *JobOptions) {
			o.WorkloadIdentity, o.Items = true, append(o.Items, Item{Name: "NOMAD_TOKEN"})
		}, wantErr: []string{"must not provide one"}},
		{name: "galaxy requirements", mod: func(o *JobOptions) {
			o.Files["requirements.yml"] = "collections:\n  - name: community.general\n"
			o.Requirements = "requirements.yml"
		}, check: func(t *testing.T, j *api.Job) {
			tasks := j.TaskGroups[0].Tasks
			if len(tasks) != 2 || tasks[0].Name != "collections" || tasks[0].Lifecycle == nil || tasks[0].Lifecycle.Hook != "prestart" || tasks[0].Lifecycle.Sidecar {
				t.Fatalf("tasks %v: want a prestart task first", tasks)
			}
			pre := tasks[0]
			wantArgs := []any{"collection", "install", "-r", "${NOMAD_TASK_DIR}/requirements.yml", "-p", "${NOMAD_ALLOC_DIR}/ansible/collections"}
			if !reflect.DeepEqual(pre.Config["args"], wantArgs) || !reflect.DeepEqual(pre.Config["entrypoint"], []any{"ansible-galaxy"}) ||
				pre.Config["image"] != "ghcr.io/rollguard/rollguard:1.2.0" || *pre.Templates[0].DestPath != "local/requirements.yml" {
				t.Errorf("prestart task config %v templates %v", pre.Config, pre.Templates)
			}
			if got := tasks[1].Env["ANSIBLE_COLLECTIONS_PATH"]; !strings.HasPrefix(got, "${NOMAD_ALLOC_DIR}/ansible/collections:") {
				t.Errorf("ANSIBLE_COLLECTIONS_PATH = %q, want the allocation's collections first", got)
			}
		}},
		{name: "spec missing from files", mod: func(o *JobOptions) { o.Files = map[string]string{"site.yml": "x"} },
			wantErr: []string{`lack the spec "rollout.yaml"`}},
		{name: "file outside local", mod: func(o *JobOptions) { o.Files["../../etc/cron.d/x"] = "x" },
			wantErr: []string{"outside local/"}},
		{name: "artifact and files", mod: func(o *JobOptions) { o.ArtifactURL = "https://example.com/a.tgz" },
			wantErr: []string{"not both"}},
		{name: "exec without binary", mod: func(o *JobOptions) { o.Driver = DriverExec },
			wantErr: []string{"exec driver: the rollguard binary path is required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := goldenOptions()
			tt.mod(&o)
			job, err := RenderJob(o)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatal("RenderJob succeeded, want an error")
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
			tt.check(t, job)
		})
	}
}

func TestRegister(t *testing.T) {
	resp, err := os.ReadFile(filepath.Join("testdata", "job_register_response.json"))
	if err != nil {
		t.Fatal(err)
	}
	job, err := RenderJob(goldenOptions())
	if err != nil {
		t.Fatal(err)
	}
	for _, plan := range []bool{false, true} {
		var bodies []map[string]any
		var paths []string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Nomad-Token") != testToken {
				t.Errorf("request without the token")
			}
			b, _ := io.ReadAll(r.Body)
			var body map[string]any
			if err := json.Unmarshal(b, &body); err != nil {
				t.Errorf("body of %s is not JSON: %v", r.URL.Path, err)
			}
			bodies, paths = append(bodies, body), append(paths, r.Method+" "+r.URL.Path)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Nomad-Index", "10")
			if strings.HasSuffix(r.URL.Path, "/plan") {
				_, _ = w.Write([]byte(`{"JobModifyIndex":7,"Diff":{"Type":"Edited","ID":"web-nginx-rollout","Fields":[{"Type":"Edited","Name":"Meta[rollguard_version]","Old":"1.1.0","New":"1.2.0"}],"TaskGroups":[]},"Warnings":""}`))
				return
			}
			_, _ = w.Write(resp)
		}))
		c, err := New(&api.Config{Address: srv.URL, SecretID: testToken}, nil)
		if err != nil {
			t.Fatal(err)
		}
		reg, err := Register(context.Background(), c, job, plan)
		srv.Close()
		if err != nil {
			t.Fatalf("Register(plan=%v): %v", plan, err)
		}
		if reg.JobModifyIndex != 10 {
			t.Errorf("JobModifyIndex = %d, want 10 from the recorded response", reg.JobModifyIndex)
		}
		last := bodies[len(bodies)-1]
		if paths[len(paths)-1] != "PUT /v1/jobs" {
			t.Errorf("requests = %v, want the registration last", paths)
		}
		sent, _ := last["Job"].(map[string]any)
		if sent["ID"] != "web-nginx-rollout" || sent["Type"] != "batch" || !reflect.DeepEqual(sent["Periodic"].(map[string]any)["Specs"], []any{"0 3 * * 1-5"}) {
			t.Errorf("registered job = %v", sent)
		}
		if !plan {
			if len(paths) != 1 || last["EnforceIndex"] == true {
				t.Errorf("requests = %v, body %v: want one registration without check-index", paths, last)
			}
			continue
		}
		if len(paths) != 2 || paths[0] != "PUT /v1/job/web-nginx-rollout/plan" || bodies[0]["Diff"] != true {
			t.Errorf("requests = %v, plan body %v: want a plan with diff first", paths, bodies[0])
		}
		if last["EnforceIndex"] != true || last["JobModifyIndex"] != float64(7) {
			t.Errorf("registration body %v: want check-index at the plan's JobModifyIndex 7", last)
		}
		diff := FormatDiff(reg.Plan.Diff)
		if diff != "~ job \"web-nginx-rollout\"\n  ~ Meta[rollguard_version]: \"1.1.0\" => \"1.2.0\"\n" {
			t.Errorf("FormatDiff = %q", diff)
		}
	}
}

// The HCL users copy says what the rendered job does: crons, the
// variable's items as JSON-quoted environment, secret files 0600, and
// that max_kill_timeout caps kill_timeout.
func TestHCLMatchesRendering(t *testing.T) {
	data, err := os.ReadFile("../../ci/nomad/rollguard.nomad.hcl")
	if err != nil {
		t.Fatal(err)
	}
	hcl := string(data)
	var code []string
	for _, line := range strings.Split(hcl, "\n") {
		if l := strings.TrimSpace(line); !strings.HasPrefix(l, "#") {
			code = append(code, l)
		}
	}
	body := strings.Join(code, "\n")
	for _, want := range []string{`crons     = ["0 3 * * 1-5"]`, "METRICS_TOKEN={{ .METRICS_TOKEN | toJSON }}", `perms                = "0600"`,
		"error_on_missing_key = true", `kill_timeout = "5m"`, `hook    = "prestart"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the HCL's job lacks %q", want)
		}
	}
	if strings.Contains(body, "\ncron ") || strings.Contains(body, "NOMAD_TOKEN=") {
		t.Error("the HCL's job uses the deprecated cron, or keeps a NOMAD_TOKEN it does not need")
	}
	for _, want := range []string{`client { max_kill_timeout = "5m" }`, "30s unless its agent"} {
		if !strings.Contains(hcl, want) {
			t.Errorf("the HCL does not say %q", want)
		}
	}
}
