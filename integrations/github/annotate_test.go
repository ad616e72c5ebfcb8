package github

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestAnnotation(t *testing.T) {
	ws := map[string]string{"GITHUB_WORKSPACE": "/github/workspace"}
	f := func(file string, line, col int, msg, want string) {
		t.Helper()
		if got := Annotation(env(ws), "error", file, line, col, msg); got != want {
			t.Errorf("Annotation(%q) = %q, want %q", file, got, want)
		}
	}
	f("rollout.yaml", 44, 24, "environment variable SLACK_WEBHOOK_URL is not set",
		"::error file=rollout.yaml,line=44,col=24::environment variable SLACK_WEBHOOK_URL is not set")
	f("/github/workspace/deploy/policies/p.yaml", 3, 0, "100% wrong\nsecond line",
		"::error file=deploy/policies/p.yaml,line=3::100%25 wrong%0Asecond line")
	f("odd,name:x.yaml", 1, 1, "m", "::error file=odd%2Cname%3Ax.yaml,line=1,col=1::m")
}

func TestAllowUnsetEnvInput(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"INPUT_SPEC": "r.yaml", "INPUT_ALLOW-UNSET-ENV": "yes"}, `input allow-unset-env "yes": want true or false`},
		{map[string]string{"INPUT_SPEC": "r.yaml", "INPUT_ALLOW-UNSET-ENV": "true"}, "input allow-unset-env applies to command validate, not run"},
	} {
		if _, err := ReadInputs(env(tt.env)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ReadInputs(%v) = %v, want %q", tt.env, err, tt.want)
		}
	}
}

// Before a run, the step installs the collections of the requirements
// file next to the playbook with the real ansible-galaxy: here a
// collection built from source, so that no network is needed.
func TestStepInstallsCollections(t *testing.T) {
	if _, err := exec.LookPath("ansible-galaxy"); err != nil {
		if os.Getenv("ROLLGUARD_E2E") == "1" {
			t.Fatalf("ansible-galaxy is required with ROLLGUARD_E2E=1: %v", err)
		}
		t.Skip("ansible-galaxy not installed")
	}
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	t.Setenv("HOME", home)
	t.Setenv("ANSIBLE_COLLECTIONS_PATH", "")
	os.Unsetenv("ANSIBLE_COLLECTIONS_PATH") // Ansible's default: ~/.ansible/collections
	src := filepath.Join(dir, "src", "acme", "web")
	os.MkdirAll(filepath.Join(src, "meta"), 0o755)
	os.WriteFile(filepath.Join(src, "galaxy.yml"), []byte("namespace: acme\nname: web\nversion: 1.0.0\nreadme: README.md\nauthors: [rollguard tests]\n"), 0o644)
	os.WriteFile(filepath.Join(src, "README.md"), []byte("# acme.web\n"), 0o644)
	os.WriteFile(filepath.Join(src, "meta", "runtime.yml"), []byte("requires_ansible: \">=2.14\"\n"), 0o644)
	build := exec.Command("ansible-galaxy", "collection", "build", src, "--output-path", dir)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the collection: %v\n%s", err, out)
	}
	req := filepath.Join(dir, "requirements.yml")
	os.WriteFile(req, []byte("collections:\n  - name: ./acme-web-1.0.0.tar.gz\n    type: file\n"), 0o644)

	vars := map[string]string{"INPUT_SPEC": "rollout.yaml", "INPUT_COMMAND": "plan", "GITHUB_STEP_SUMMARY": filepath.Join(dir, "summary")}
	cli := fakeCLI{}
	var out strings.Builder
	res, err := Step(t.Context(), env(vars), Options{Run: cli.run, Stdout: &out,
		Inspect: func(string) (SpecFacts, error) { return SpecFacts{StateStore: "consul", Requirements: req}, nil }})
	if err != nil || res.ExitCode != 0 || cli.argv == nil {
		t.Fatalf("Step: %+v, %v, ran %v\n%s", res, err, cli.argv, out.String())
	}
	if _, err := os.Stat(filepath.Join(home, ".ansible", "collections", "ansible_collections", "acme", "web", "MANIFEST.json")); err != nil {
		t.Errorf("collection not installed: %v\n%s", err, out.String())
	}

	// A requirements file that cannot be installed stops the step before
	// the command runs.
	os.WriteFile(req, []byte("collections:\n  - name: ./missing-1.0.0.tar.gz\n    type: file\n"), 0o644)
	cli = fakeCLI{}
	res, _ = Step(t.Context(), env(vars), Options{Run: cli.run, Stdout: &out,
		Inspect: func(string) (SpecFacts, error) { return SpecFacts{Requirements: req}, nil }})
	summary, _ := os.ReadFile(vars["GITHUB_STEP_SUMMARY"])
	if res.ExitCode != 1 || cli.argv != nil || !strings.Contains(string(summary), "installing the collections of") {
		t.Errorf("failed install: %+v, ran %v, summary %s", res, cli.argv, summary)
	}
}
