package github

import (
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// actionFile is the part of action.yml the code depends on.
type actionFile struct {
	Inputs map[string]struct {
		Required bool    `yaml:"required"`
		Default  *string `yaml:"default"`
	} `yaml:"inputs"`
	Outputs map[string]struct {
		Description string `yaml:"description"`
	} `yaml:"outputs"`
	Runs struct {
		Using string   `yaml:"using"`
		Image string   `yaml:"image"`
		Args  []string `yaml:"args"`
	} `yaml:"runs"`
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// action.yml and this package must agree on inputs, defaults and outputs.
func TestActionYAMLMatchesCode(t *testing.T) {
	data, err := os.ReadFile("../../action.yml")
	if err != nil {
		t.Fatal(err)
	}
	var a actionFile
	if err := yaml.Unmarshal(data, &a); err != nil {
		t.Fatalf("action.yml: %v", err)
	}
	if got, want := keys(a.Inputs), []string{"allow-unset-env", "args", "command", "report-dir", "spec"}; !slices.Equal(got, want) {
		t.Errorf("inputs %v, want %v (what ReadInputs reads)", got, want)
	}
	if !a.Inputs["spec"].Required {
		t.Error("input spec must be required")
	}
	if d := a.Inputs["command"].Default; d == nil || *d != CommandRun {
		t.Errorf("input command's default %v, want %q", d, CommandRun)
	}
	if d := a.Inputs["report-dir"].Default; d == nil || *d != DefaultReportDir {
		t.Errorf("input report-dir's default %v, want %q", d, DefaultReportDir)
	}
	if d := a.Inputs["allow-unset-env"].Default; d == nil || *d != "false" {
		t.Errorf("input allow-unset-env's default %v, want \"false\"", d)
	}
	var outs []string
	for _, o := range (Result{}).Outputs() {
		outs = append(outs, o.Name)
	}
	sort.Strings(outs)
	if got := keys(a.Outputs); !slices.Equal(got, outs) {
		t.Errorf("outputs %v, want %v (what Step writes)", got, outs)
	}
	// A published image, by version: the one the Dockerfile builds and
	// the Nomad job runs.
	tag, ok := strings.CutPrefix(a.Runs.Image, "docker://ghcr.io/rollguard/rollguard:")
	if a.Runs.Using != "docker" || !ok || !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(tag) || !slices.Equal(a.Runs.Args, []string{"github-action"}) {
		t.Errorf("runs %+v, want docker://ghcr.io/rollguard/rollguard:<x.y.z> running `rollguard github-action`", a.Runs)
	}
	hcl, err := os.ReadFile("../../ci/nomad/rollguard.nomad.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(hcl), `image = "ghcr.io/rollguard/rollguard:`+tag+`"`) {
		t.Errorf("ci/nomad/rollguard.nomad.hcl does not run the action's image tag %s", tag)
	}
	docker, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ARG VERSION", `-X main.version=${VERSION}`, `ENTRYPOINT ["rollguard"]`, "ansible-core"} {
		if !strings.Contains(string(docker), want) {
			t.Errorf("Dockerfile lacks %q: the image must be rollguard with its version set at build time", want)
		}
	}
}

// The example workflow is valid YAML, validates on pull requests, runs on
// pushes to main, and passes only inputs the action has.
func TestExampleWorkflow(t *testing.T) {
	data, err := os.ReadFile("../../ci/github/example-workflow.yml")
	if err != nil {
		t.Fatal(err)
	}
	var wf struct {
		On struct {
			PullRequest *struct{} `yaml:"pull_request"`
			Push        *struct {
				Branches []string `yaml:"branches"`
			} `yaml:"push"`
		} `yaml:"on"`
		Jobs map[string]struct {
			Steps []struct {
				Uses string            `yaml:"uses"`
				With map[string]string `yaml:"with"`
				Env  map[string]string `yaml:"env"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	if err := yaml.Unmarshal(data, &wf); err != nil {
		t.Fatalf("example workflow: %v", err)
	}
	if wf.On.PullRequest == nil || wf.On.Push == nil || !slices.Contains(wf.On.Push.Branches, "main") {
		t.Errorf("triggers %+v: want pull_request and push to main", wf.On)
	}
	commands := map[string]bool{}
	for name, job := range wf.Jobs {
		for _, st := range job.Steps {
			if !strings.HasPrefix(st.Uses, "rollguard/rollguard@") {
				continue
			}
			for k := range st.With {
				if !slices.Contains([]string{"spec", "command", "report-dir", "args", "allow-unset-env"}, k) {
					t.Errorf("job %s passes unknown input %q", name, k)
				}
			}
			if _, err := ReadInputs(func(k string) string {
				return st.With[strings.ToLower(strings.TrimPrefix(k, "INPUT_"))]
			}); err != nil {
				t.Errorf("job %s: %v", name, err)
			}
			commands[st.With["command"]] = true
			for k, v := range st.Env {
				if strings.Contains(k, "TOKEN") || strings.HasSuffix(k, "_URL") {
					if !strings.HasPrefix(v, "${{ secrets.") {
						t.Errorf("job %s: %s=%q should come from a secret", name, k, v)
					}
				}
			}
		}
	}
	if !commands["validate"] || !commands["run"] {
		t.Errorf("commands used %v: want validate and run", commands)
	}
}
