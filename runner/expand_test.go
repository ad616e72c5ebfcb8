package runner

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestExpand(t *testing.T) {
	env := func(name string) (string, bool) {
		v, ok := map[string]string{"HOST": "web-1", "EMPTY": "", "PORT": "9100"}[name]
		return v, ok
	}
	tests := []struct {
		in, want, err string
	}{
		{in: "plain", want: "plain"},
		{in: "${HOST}", want: "web-1"},
		{in: "${HOST}:${PORT}", want: "web-1:9100"},
		{in: "${MISSING:-fallback}", want: "fallback"},
		{in: "${MISSING:-}", want: ""},
		{in: "${EMPTY:-x}", want: "x"}, // as in the shell, :- covers empty
		{in: "${EMPTY}", want: ""},     // set but empty, no default
		{in: "$$HOME costs $$5", want: "$HOME costs $5"},
		{in: "$$${HOST}", want: "$web-1"},
		{in: "a $ b $x", want: "a $ b $x"}, // a lone $ stays
		{in: "trailing $", want: "trailing $"},
		{in: "${MISSING:-a:-b}", want: "a:-b"},
		{in: "${MISSING}", err: "environment variable MISSING is not set (write ${MISSING:-default} to give a default)"},
		{in: "${HOST", err: "unterminated ${ in value (write $$ for a literal $)"},
		{in: "${}", err: "invalid variable reference in ${...}: a name is letters, digits and _ (write $$ for a literal $)"},
		{in: "${pass word}", err: "invalid variable reference in ${...}: a name is letters, digits and _ (write $$ for a literal $)"},
	}
	for _, tt := range tests {
		got, _, err := expand(tt.in, env, nil)
		gotErr := ""
		if err != nil {
			gotErr = err.Error()
		}
		if got != tt.want || gotErr != tt.err {
			t.Errorf("expand(%q) = %q, %q; want %q, %q", tt.in, got, gotErr, tt.want, tt.err)
		}
	}
}

// TestExpandTree checks what is and is not expanded, and that an expanded
// plain scalar takes the type of its new text.
func TestExpandTree(t *testing.T) {
	const doc = `
forks: ${N}
quoted: "${N}"
${N}: key
rollback_when: 'x > ${N}'
list: ["${N}", a]
`
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &root); err != nil {
		t.Fatal(err)
	}
	d := newDecoder("f.yaml")
	d.expandTree(&root, func(string) (string, bool) { return "7", true }, "", 0)
	if len(d.errs) > 0 {
		t.Fatal(d.errs)
	}
	m := root.Content[0].Content
	got := []string{
		m[1].Value + " " + m[1].ShortTag(),
		m[3].Value + " " + m[3].ShortTag(),
		m[4].Value,
		m[7].Value,
		m[9].Content[0].Value + " " + m[9].Content[0].ShortTag(),
	}
	want := []string{"7 !!int", "7 !!int", "${N}", "x > ${N}", "7 !!int"}
	eq(t, "expanded tree", got, want)
}

// TestLoadAllowUnset: unset secrets leave their values unchecked, every
// other problem is still reported, and Spec.Env says where each
// reference is.
func TestLoadAllowUnset(t *testing.T) {
	const spec = `name: web
targets:
  static: [web-1]
apply:
  playbook: playbooks/site.yml
  forks: ${FORKS_N}
  version: ${GITHUB_SHA:-dev}
metrics:
  url: ${VM_URL}
  bearer_token: ${METRICS_TOKEN}
  queries:
    q: {query: up}
policies:
  - name: p
    rollback_when: 'fleet.degraded > 0'
alerts:
  - {type: slack, url: "${SLACK_WEBHOOK_URL}"}
`
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "playbooks"), 0o755)
	os.WriteFile(filepath.Join(dir, "playbooks", "site.yml"), []byte("- hosts: all\n"), 0o644)
	file := filepath.Join(dir, "rollout.yaml")
	os.WriteFile(file, []byte(spec), 0o644)
	none := func(string) (string, bool) { return "", false }

	if _, _, err := Load(file, none); err == nil || !strings.Contains(err.Error(), "METRICS_TOKEN is not set") {
		t.Fatalf("Load without the secrets: %v, want METRICS_TOKEN is not set", err)
	}
	s, _, err := LoadAllowUnset(file, none)
	if err != nil {
		t.Fatalf("LoadAllowUnset: %v", err)
	}
	var got []string
	for _, r := range s.Env {
		got = append(got, fmt.Sprintf("%s %s %d:%d default=%v set=%v", r.Name, r.Key, r.Line, r.Col, r.HasDefault, r.Set))
	}
	eq(t, "references", got, []string{
		"FORKS_N apply.forks 6:10 default=false set=false",
		"GITHUB_SHA apply.version 7:12 default=true set=false",
		"VM_URL metrics.url 9:8 default=false set=false",
		"METRICS_TOKEN metrics.bearer_token 10:17 default=false set=false",
		"SLACK_WEBHOOK_URL alerts[0].url 17:24 default=false set=false",
	})
	eq(t, "default used", s.Apply.Version, "dev")

	// Another problem is still reported, with its position.
	bad := strings.Replace(spec, "  playbook: playbooks/site.yml", "  playbook: playbooks/missing.yml\n  forkz: 3", 1)
	os.WriteFile(file, []byte(bad), 0o644)
	_, _, err = LoadAllowUnset(file, none)
	if err == nil || !strings.Contains(err.Error(), "missing.yml does not exist") || !strings.Contains(err.Error(), `unknown key "forkz"`) ||
		strings.Contains(err.Error(), "FORKS_N") || strings.Contains(err.Error(), "url") {
		t.Errorf("LoadAllowUnset of a bad spec: %v; want the missing playbook and the unknown key only", err)
	}

	// A monitor is not judged on the default of an unknown interval (at
	// 15s, 14s holds 1 poll: "too short"; at ${INTERVAL}, unknown).
	short := strings.Replace(spec, "  queries:", "  interval: ${INTERVAL}\n  queries:", 1) + "canary: {monitor: 14s}\ndetection: {warmup: 0s}\n"
	os.WriteFile(file, []byte(short), 0o644)
	if _, _, err = LoadAllowUnset(file, none); err != nil {
		t.Errorf("LoadAllowUnset with an unset interval: %v; want the monitor unchecked", err)
	}
}
