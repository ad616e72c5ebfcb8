package runner

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// With apply.version unset, the version is a hash of what the change
// applies: the playbook, the files Ansible reads beside it, extra_vars.
// Editing any of them names a new version; the spec, reports and other
// files do not.
func TestDefaultVersion(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, content string) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	spec := func(vars string) string {
		return "name: v\ntargets: {static: [a]}\napply: {playbook: site.yml, extra_vars: " + vars + "}\n" +
			"metrics: {queries: {l: {query: l}}}\npolicies: [{name: p, rollback_when: 'fleet.degraded > 0'}]\n"
	}
	version := func(vars string) string {
		t.Helper()
		write("rollout.yaml", spec(vars))
		s, _, err := Load(filepath.Join(dir, "rollout.yaml"), testEnv)
		if err != nil {
			t.Fatal(err)
		}
		return s.Apply.Version
	}
	write("site.yml", "- hosts: all\n")
	write("templates/app.conf.j2", "a={{ a }}\n")
	v1 := version("{a: 1}")
	if !regexp.MustCompile(`^h-[0-9a-f]{12}$`).MatchString(v1) {
		t.Fatalf("default version %q, want h- and 12 hex digits", v1)
	}
	same := []struct {
		what string
		edit func()
	}{
		{"loaded again", func() {}},
		{"the spec's other keys", func() { write("rollout.yaml", spec("{a: 1}")+"bake: 1m\n") }},
		{"a report beside the playbook", func() { write("reports/report.json", "{}") }},
		{"the state directory", func() { write(".rollguard/v/journal.json", "{}") }},
		{"a hidden file in templates", func() { write("templates/.app.conf.j2.swp", "x") }},
	}
	for _, s := range same {
		s.edit()
		if v := version("{a: 1}"); v != v1 {
			t.Errorf("%s: version %s, want %s", s.what, v, v1)
		}
	}
	seen := map[string]string{v1: "first"}
	changes := []struct {
		what, vars string
		edit       func()
	}{
		{"extra_vars", "{a: 2}", func() {}},
		{"the playbook", "{a: 1}", func() { write("site.yml", "- hosts: web\n") }},
		{"a template", "{a: 1}", func() { write("templates/app.conf.j2", "a={{ a }} # changed\n") }},
		{"a role's task", "{a: 1}", func() { write("roles/app/tasks/main.yml", "- debug: {}\n") }},
		{"group_vars", "{a: 1}", func() { write("group_vars/all.yml", "x: 1\n") }},
	}
	for _, c := range changes {
		c.edit()
		v := version(c.vars)
		if prev, dup := seen[v]; dup {
			t.Errorf("after a change of %s the version is %s, the same as after %s", c.what, v, prev)
		}
		seen[v] = c.what
	}
}
