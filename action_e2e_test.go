package main

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/rollguard/rollguard/integrations/bundle/bundletest"
)

// exampleWorkflow is the part of ci/github/example-workflow.yml these
// tests play.
type exampleWorkflow struct {
	Jobs map[string]struct {
		Steps []struct {
			Name string            `yaml:"name"`
			Uses string            `yaml:"uses"`
			If   string            `yaml:"if"`
			With map[string]string `yaml:"with"`
			Env  map[string]string `yaml:"env"`
		} `yaml:"steps"`
	} `yaml:"jobs"`
}

func readExampleWorkflow(t *testing.T) exampleWorkflow {
	t.Helper()
	data, err := os.ReadFile("ci/github/example-workflow.yml")
	if err != nil {
		t.Fatal(err)
	}
	var wf exampleWorkflow
	if err := yaml.Unmarshal(data, &wf); err != nil {
		t.Fatal(err)
	}
	return wf
}

// actionStep runs the binary as the runner runs the action's container:
// the step's with: as INPUT_* variables, in the workspace, in Actions.
// Only env is passed: no secret is set.
func actionStep(t *testing.T, workspace string, with, env map[string]string) (int, string, string, string) {
	t.Helper()
	summary := filepath.Join(t.TempDir(), "summary.md")
	vars := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "GITHUB_ACTIONS=true", "GITHUB_EVENT_NAME=pull_request",
		"GITHUB_WORKSPACE=" + workspace, "GITHUB_OUTPUT=" + filepath.Join(t.TempDir(), "output"), "GITHUB_STEP_SUMMARY=" + summary}
	for k, v := range with {
		vars = append(vars, "INPUT_"+strings.ToUpper(k)+"="+v)
	}
	for k, v := range env {
		vars = append(vars, k+"="+v)
	}
	cmd := exec.Command(binary, "github-action")
	cmd.Dir, cmd.Env = workspace, vars
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(summary)
	return code, out.String(), errOut.String(), string(md)
}

// The example workflow's validate step passes on a pull request without
// secrets: the spec's unset ${VAR}s are notices on their lines, and a
// real problem is still an error annotation.
func TestExampleWorkflowValidatesPullRequests(t *testing.T) {
	wf := readExampleWorkflow(t)
	var with map[string]string
	for _, st := range wf.Jobs["validate"].Steps {
		if st.With["command"] == "validate" {
			with = st.With
		}
	}
	if with == nil {
		t.Fatal("the example workflow has no validate step")
	}
	ws := t.TempDir()
	if err := bundletest.Flat(ws); err != nil {
		t.Fatal(err)
	}
	code, out, errOut, summary := actionStep(t, ws, with, nil)
	if code != 0 {
		t.Fatalf("validate on a pull request without secrets: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"::notice file=rollout.yaml,line=12,col=17::environment variable METRICS_TOKEN is not set: the value of metrics.bearer_token was not checked",
		"::notice file=rollout.yaml,line=19,col=24::environment variable SLACK_WEBHOOK_URL is not set",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(summary, "**valid** (exit code 0)") {
		t.Errorf("summary %q", summary)
	}

	// A typo is still caught, as an annotation on its line and column.
	spec := filepath.Join(ws, "rollout.yaml")
	data, _ := os.ReadFile(spec)
	os.WriteFile(spec, bytes.Replace(data, []byte("  interval: 15s"), []byte("  intervall: 15s"), 1), 0o644)
	code, out, _, _ = actionStep(t, ws, with, nil)
	if code != 2 || !strings.Contains(out, `::error file=rollout.yaml,line=13,col=3::unknown key "intervall" in metrics (did you mean "interval"?)`) {
		t.Errorf("a typo on a pull request: exit %d, stdout:\n%s", code, out)
	}
}

// The report a step writes is readable by the next step's user
// (actions/upload-artifact runs as the runner's user, the action's
// container as root): files 0644, directories 0755, even under umask 077.
func TestExampleWorkflowUploadsReports(t *testing.T) {
	wf := readExampleWorkflow(t)
	var reportDir, uploadPath string
	for _, st := range wf.Jobs["rollout"].Steps {
		if st.With["command"] == "run" {
			reportDir = st.With["report-dir"]
		}
		if strings.HasPrefix(st.Uses, "actions/upload-artifact@") {
			uploadPath = st.With["path"]
		}
	}
	if reportDir == "" || filepath.Clean(uploadPath) != filepath.Clean(reportDir) {
		t.Fatalf("the upload step's path %q is not the run step's report-dir %q", uploadPath, reportDir)
	}
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	ws := t.TempDir()
	os.Chmod(ws, 0o755)
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	// dry-run writes its report through the same code as run.
	code, out, errOut, _ := actionStep(t, ws, map[string]string{"spec": abs("testdata/dryrun/latency-50.yaml"), "command": "dry-run", "report-dir": reportDir,
		"args": "--metrics " + abs("testdata/recordings/latency-50.jsonl") + " --change-at 2024-01-01T12:00:00Z"}, nil)
	if code != 3 {
		t.Fatalf("dry-run: exit %d\n%s%s", code, out, errOut)
	}
	n := 0
	err := filepath.WalkDir(filepath.Join(ws, uploadPath), func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, _ := e.Info()
		switch {
		case e.IsDir() && fi.Mode().Perm() != 0o755:
			t.Errorf("%s: %v, want 0755", p, fi.Mode().Perm())
		case !e.IsDir() && fi.Mode().Perm() != 0o644:
			t.Errorf("%s: %v, want 0644", p, fi.Mode().Perm())
		case !e.IsDir():
			n++
		}
		return nil
	})
	if err != nil || n < 3 {
		t.Errorf("walked %d report files: %v", n, err)
	}
}

// The Dockerfile sets the version at build time: its go build line, run
// here with VERSION=9.9.9-test, gives a binary whose `version` says so.
// (No Docker engine runs here; the release workflow checks the image.)
func TestDockerfileSetsVersion(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`go build .*-ldflags "([^"]+)"`).FindSubmatch(data)
	if m == nil {
		t.Fatal("the Dockerfile has no go build -ldflags line")
	}
	ldflags := strings.ReplaceAll(string(m[1]), "${VERSION}", "9.9.9-test")
	bin := filepath.Join(t.TempDir(), "rollguard")
	if out, err := exec.Command("go", "build", "-ldflags", ldflags, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -ldflags %q: %v\n%s", ldflags, err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "rollguard 9.9.9-test" {
		t.Errorf("version = %q, %v; want rollguard 9.9.9-test", out, err)
	}
}
