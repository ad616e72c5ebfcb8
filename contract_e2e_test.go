package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/rollguard/rollguard/history"
	"github.com/rollguard/rollguard/integrations/localstate"
)

// The tests in this file are the contracts of DESIGN.md (command line,
// exit codes, rollout.yaml, the policy environment, recorded metrics,
// report.json, plan --json, history --json, schema) as a test outside
// the repository sees them: the built binary, specs written from
// DESIGN's text (its own example, verbatim), the recordings of
// testdata/recordings and recordings written in DESIGN's format here.

// designSpec is DESIGN.md's rollout.yaml, as it is written there (the
// commented-out target sources left out).
const designSpec = `name: web-nginx-tuning                  # required
targets:                                # exactly one source
  static: [web-1, web-2, web-3]         #   names, or {name, address, vars}
canary:
  hosts: 1                              # count | "10%" | [names] | {tag: canary} | {meta: {k: v}}
                                        # a count or share takes hosts in target order, so a plan is reproducible
  monitor: 5m                           # monitoring period after the canary's apply ends
waves:                                  # after the canary; sizes of the remaining hosts; default [{size: 100%}]
  - {size: 50%, monitor: 5m}
  - {size: 100%, monitor: 10m}
apply:
  playbook: playbooks/site.yml
  extra_vars: {nginx_worker_connections: 4096}
  version: ${GITHUB_SHA}                # config version id kept in history
  forks: 10
revert:
  playbook: playbooks/revert.yml        # optional
  known_good: true                      # re-run apply.playbook with the last known-good version's vars
  snapshot:                             # optional hooks; argv templates over {{.Host.Name}} {{.Host.Address}} {{.RunID}} {{.Snapshot}}
    create:  [virsh, snapshot-create-as, "{{.Host.Name}}", "rollguard-{{.RunID}}"]
    restore: [virsh, snapshot-revert, "{{.Host.Name}}", "rollguard-{{.RunID}}"]
    delete:  [virsh, snapshot-delete, "{{.Host.Name}}", "rollguard-{{.RunID}}"]
  scope: wave                           # host | wave | all  (what a fleet-level fire reverts)
metrics:
  url: http://127.0.0.1:8428            # VictoriaMetrics, or any Prometheus query API
  interval: 15s
  baseline: 30m                         # window before the apply
  host_label: instance                  # label naming the host in query results
  host_value: "{{.Host.Address}}:9100"  # that label's value for a host (default: the host's name)
  queries:
    latency_p95: {query: 'histogram_quantile(0.95, sum by (le, instance) (rate(http_request_duration_seconds_bucket[1m])))', worse: higher}
    error_rate:  {query: 'sum by (instance) (rate(http_requests_total{code=~"5.."}[1m])) / sum by (instance) (rate(http_requests_total[1m]))', worse: higher}
    cpu:         {query: '1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[1m]))', worse: higher}
detection:
  sensitivity: medium                   # low | medium | high, or explicit parameters
policies:
  - file: policies/latency.yaml
  - name: fleet-threshold               # the seed rule: mean score of the worst 30% of hosts > 5
    rollback_when: 'top_mean(hosts, 0.30) > 5'
alerts:
  - {type: webhook, url: "${ALERT_URL}"}
`

// designPolicy is DESIGN.md's policy file.
const designPolicy = `name: latency-regression
rollback_when: 'fraction(hosts, .degraded) >= 0.3'        # fleet level: reverts per revert.scope
host_rollback_when: 'host.metrics.error_rate.z > 12'      # optional: reverts that host alone
on_no_data: fail                                          # fail | hold | ignore
`

// contractDir is a directory holding DESIGN's example (rollout.yaml and
// policies/latency.yaml), the playbooks it names, and files written by
// the caller (name -> content), with GITHUB_SHA and ALERT_URL set.
func contractDir(t *testing.T, files map[string]string) string {
	t.Helper()
	t.Setenv("GITHUB_SHA", "4f2c1e0")
	t.Setenv("ALERT_URL", "http://127.0.0.1:1/hook") // dry-run alerts no one; nothing listens there anyway
	dir := t.TempDir()
	all := map[string]string{
		"rollout.yaml": designSpec, "policies/latency.yaml": designPolicy,
		"playbooks/site.yml": "- hosts: all\n  tasks: []\n", "playbooks/revert.yml": "- hosts: all\n  tasks: []\n",
	}
	for name, data := range files {
		all[name] = data
	}
	for name, data := range all {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// planDoc is plan --json as DESIGN gives it.
type planDoc struct {
	Waves []struct {
		Name    string   `json:"name"`
		Hosts   []string `json:"hosts"`
		Monitor string   `json:"monitor"`
	} `json:"waves"`
}

// plan runs plan --json on spec and returns its waves as "name[h1 h2] monitor".
func plan(t *testing.T, spec string) []string {
	t.Helper()
	code, out, errOut := rollguard(t, "plan", "-f", spec, "--json")
	if code != 0 {
		t.Fatalf("plan %s: exit %d\n%s", spec, code, errOut)
	}
	var p planDoc
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("plan --json: %v\n%s", err, out)
	}
	var waves []string
	for _, w := range p.Waves {
		waves = append(waves, fmt.Sprintf("%s%v %s", w.Name, w.Hosts, w.Monitor))
	}
	return waves
}

// The command-line table: every command's --help names the flags DESIGN
// gives it; each command's exit codes.
func TestContractCommandLine(t *testing.T) {
	for cmd, flags := range map[string][]string{
		"validate": {"-f, --file"},
		"dry-run":  {"-f, --file", "--metrics", "--change-at", "--report-dir"},
		"run":      {"-f, --file", "--report-dir", "--record"},
		"plan":     {"-f, --file", "--json"},
		"history":  {"-f, --file", "--host", "--json"},
		"demo":     {},
		"schema":   {},
		"version":  {},
	} {
		code, out, _ := rollguard(t, cmd, "--help")
		if code != 0 {
			t.Errorf("%s --help: exit %d", cmd, code)
		}
		for _, f := range flags {
			if !strings.Contains(out, f) {
				t.Errorf("%s --help does not name %s:\n%s", cmd, f, out)
			}
		}
	}

	dir := contractDir(t, map[string]string{"bad.yaml": "name: x\ntargets: {static: [a]}\ncanary: {monitr: 5m}\n"})
	spec, bad := filepath.Join(dir, "rollout.yaml"), filepath.Join(dir, "bad.yaml")
	rec := "testdata/recordings/"
	for _, tc := range []struct {
		name string
		args []string
		exit int
	}{
		{"validate valid", []string{"validate", "-f", spec}, 0},
		{"validate invalid", []string{"validate", "-f", bad}, 2},
		{"dry-run would promote", []string{"dry-run", "-q", "-f", "testdata/dryrun/good.yaml", "--metrics", rec + "good.jsonl", "--change-at", "2024-01-01T12:00:00Z"}, 0},
		{"dry-run would roll back", []string{"dry-run", "-q", "-f", "testdata/dryrun/latency-50.yaml", "--metrics", rec + "latency-50.jsonl", "--change-at", "1704110400"}, 3},
		{"dry-run bad spec", []string{"dry-run", "-f", bad, "--metrics", rec + "good.jsonl", "--change-at", "1704110400"}, 2},
		{"run bad spec", []string{"run", "-f", bad}, 2},
		{"run bad flag", []string{"run", "-f", spec, "--bogus"}, 2},
		{"plan", []string{"plan", "-f", spec}, 0},
		{"plan bad spec", []string{"plan", "-f", bad}, 2},
		{"history", []string{"history", "-f", spec}, 0},
		{"history bad spec", []string{"history", "-f", bad}, 2},
		{"schema", []string{"schema"}, 0},
		{"version", []string{"version"}, 0},
	} {
		if code, _, errOut := rollguard(t, tc.args...); code != tc.exit {
			t.Errorf("%s: exit %d, want %d\n%s", tc.name, code, tc.exit, errOut)
		}
	}
	// A run whose metrics source does not answer stops at preflight,
	// exit 1, before its lock or any host.
	preflight := filepath.Join(dir, "preflight.yaml")
	os.WriteFile(preflight, []byte(strings.Replace(designSpec, "http://127.0.0.1:8428", "http://127.0.0.1:1", 1)), 0o644)
	if code, _, errOut := rollguard(t, "run", "-f", preflight, "--report-dir", filepath.Join(dir, "reports")); code != 1 || !strings.Contains(errOut, "preflight: the metrics source does not answer") {
		t.Errorf("run with no metrics source: exit %d, %q: want 1 at preflight", code, errOut)
	}
	// plan and history change nothing: no state directory appears
	// (history made the local one, and its locks, to read it), and
	// neither does one for a spec that does not load.
	if _, err := os.Stat(filepath.Join(dir, ".rollguard")); !os.IsNotExist(err) {
		t.Errorf("validate, plan, history or a refused run left %s/.rollguard (%v)", dir, err)
	}

	// plan and history exit 1 when discovery or the state store fails:
	// Consul and Nomad are found through CONSUL_HTTP_ADDR and NOMAD_ADDR.
	t.Setenv("CONSUL_HTTP_ADDR", "127.0.0.1:1")
	t.Setenv("NOMAD_ADDR", "http://127.0.0.1:2")
	const secret = "c0ffee-not-for-your-eyes"
	t.Setenv("CONSUL_HTTP_TOKEN", secret)
	t.Setenv("NOMAD_TOKEN", secret)
	consulSpec := strings.Replace(designSpec, "  static: [web-1, web-2, web-3]", "  consul: {service: web, tags: [prod], datacenter: dc1, passing_only: true, node_meta: {rack: r1}}", 1)
	nomadSpec := strings.Replace(designSpec, "  static: [web-1, web-2, web-3]", "  nomad:  {node_pool: default, node_class: web, meta: {role: web}}", 1)
	dir = contractDir(t, map[string]string{"consul.yaml": consulSpec, "nomad.yaml": nomadSpec,
		"consul-state.yaml": designSpec + "state: {store: consul}\n"})
	for file, addr := range map[string]string{"consul.yaml": "127.0.0.1:1", "nomad.yaml": "127.0.0.1:2"} {
		code, _, errOut := rollguard(t, "plan", "-f", filepath.Join(dir, file))
		if code != 1 || !strings.Contains(errOut, addr) || strings.Contains(errOut, secret) {
			t.Errorf("plan %s with nothing at %s: exit %d, %q: want 1 naming the address, not the token", file, addr, code, errOut)
		}
	}
	if code, _, errOut := rollguard(t, "history", "-f", filepath.Join(dir, "consul-state.yaml")); code != 1 || strings.Contains(errOut, secret) {
		t.Errorf("history with Consul state and no Consul: exit %d, want 1\n%s", code, errOut)
	}
}

// --change-at takes RFC 3339 or unix seconds, the moment the first apply
// started: both give the same verdict, and the canary's apply starts then.
func TestContractChangeAt(t *testing.T) {
	var reports []string
	for _, at := range []string{"2024-01-01T12:00:00Z", "1704110400", "2024-01-01T13:00:00+01:00"} {
		dir := t.TempDir()
		code, _, errOut := rollguard(t, "dry-run", "-q", "-f", "testdata/dryrun/latency-50.yaml", "--metrics", "testdata/recordings/latency-50.jsonl",
			"--change-at", at, "--report-dir", dir)
		if code != 3 {
			t.Fatalf("--change-at %s: exit %d, want 3\n%s", at, code, errOut)
		}
		r := readReport(t, dir)
		if got := r.Waves[0].ApplyStartedAt; got == nil || !got.Equal(time.Unix(1704110400, 0)) {
			t.Errorf("--change-at %s: the canary's apply started at %v, want 2024-01-01T12:00:00Z", at, got)
		}
		r.RunID = ""
		b, _ := json.Marshal(r)
		reports = append(reports, string(b))
	}
	for i := 1; i < len(reports); i++ {
		if reports[i] != reports[0] {
			t.Errorf("the reports differ with --change-at in another form (%d)", i)
		}
	}
}

// DESIGN's own rollout.yaml and policy file load, plan as DESIGN says, and
// each form DESIGN gives a key is read as DESIGN says.
func TestContractRolloutYAML(t *testing.T) {
	spec := func(targets, canary, waves string) string {
		return "name: forms\ntargets:\n" + targets + canary + waves +
			"apply: {playbook: playbooks/site.yml}\nmetrics:\n  queries:\n    latency_p95: {query: up}\n    error_rate: {query: up}\n" +
			"policies:\n  - file: policies/latency.yaml\n"
	}
	ten := "  static: [web-1, web-2, web-3, web-4, web-5, web-6, web-7, web-8, web-9, web-10]\n"
	dir := contractDir(t, map[string]string{
		"order.yaml":   spec("  static: [web-9, web-1, web-5]\n", "", ""),
		"objects.yaml": spec("  static: [{name: web-1, address: 10.0.0.1, vars: {zone: a}}, {name: web-2, vars: {zone: b}}, web-3]\n", "canary: {hosts: {meta: {zone: b}}}\n", ""),
		"share.yaml":   spec(ten, "canary: {hosts: \"10%\", monitor: 10m}\n", "waves:\n  - {size: 50%, monitor: 150s}\n  - {size: 100%}\n"),
		"names.yaml":   spec(ten, "canary: {hosts: [web-4, web-2]}\n", "waves: [{size: 100%}]\n"),
		"list.yaml":    strings.Replace(spec("  static: [web-1, web-2]\n", "", ""), "policies/latency.yaml", "policies/list.yaml", 1),
		// A policy file holding a list, each on_no_data DESIGN names.
		"policies/list.yaml": `- name: latency-regression
  rollback_when: 'fraction(hosts, .degraded) >= 0.3'
  host_rollback_when: 'host.metrics.error_rate.z > 12'
  on_no_data: fail
- name: hold-on-gaps
  rollback_when: 'fleet.max_score > 9'
  on_no_data: hold
- name: ignore-gaps
  host_rollback_when: 'host.score > 9'
  on_no_data: ignore
`,
	})
	for file, want := range map[string][]string{
		"rollout.yaml": {"canary[web-1] 5m", "wave-1[web-2] 5m", "wave-2[web-3] 10m"},
		// a count takes hosts in target order; no waves: one wave of the rest
		"order.yaml": {"canary[web-9] 5m", "wave-1[web-1 web-5] 5m"},
		// {meta: {k: v}} reads a static host's vars when it has no meta
		"objects.yaml": {"canary[web-2] 5m", "wave-1[web-1 web-3] 5m"},
		// a share rounds up; wave sizes are shares of the hosts after the canary;
		// a wave's monitor defaults to the canary's
		"share.yaml": {"canary[web-1] 10m", "wave-1[web-2 web-3 web-4 web-5 web-6] 2m30s", "wave-2[web-7 web-8 web-9 web-10] 10m"},
		"names.yaml": {"canary[web-4 web-2] 5m", "wave-1[web-1 web-3 web-5 web-6 web-7 web-8 web-9 web-10] 5m"},
		"list.yaml":  {"canary[web-1] 5m", "wave-1[web-2] 5m"},
	} {
		if got := plan(t, filepath.Join(dir, file)); !slices.Equal(got, want) {
			t.Errorf("%s: plan %q, want %q", file, got, want)
		}
	}

	// The keys DESIGN names take each value it names; the rest is
	// refused at its place, and nothing else in the spec changes that.
	base := designSpec
	for _, tc := range []struct {
		old, new string
		problem  string // "" when valid; else a substring of the problem
	}{
		{"scope: wave", "scope: host", ""},
		{"scope: wave", "scope: all", ""},
		{"scope: wave", "scope: fleet", `revert.scope: "fleet" is not one of host, wave, all`},
		{"sensitivity: medium", "sensitivity: low", ""},
		{"sensitivity: medium", "sensitivity: high", ""},
		{"sensitivity: medium", "threshold: 4", ""},
		{"sensitivity: medium", "sensitivity: extreme", "detection.sensitivity"},
		{"interval: 15s", "interval: 1m30s", ""},
		{"interval: 15s", "interval: 15", "a duration needs a unit"},
		{"worse: higher}\n    cpu", "worse: lower}\n    cpu", ""},
		{"worse: higher}\n    cpu", "worse: up}\n    cpu", `"up" is not one of higher, lower`},
		{"name: web-nginx-tuning", "nme: web-nginx-tuning", `unknown key "nme"`},
		{"  monitor: 5m    ", "  monitr: 5m    ", `unknown key "monitr" in canary`},
		{"{size: 50%, monitor: 5m}", "{size: 50%, monitor: 5m, speed: 2}", `unknown key "speed" in waves[0]`},
		{"  forks: 10", "  fork: 10", `unknown key "fork" in apply`},
		{"  known_good: true", "  knowngood: true", `unknown key "knowngood" in revert`},
		{"    delete: ", "    remove: ", `unknown key "remove" in revert.snapshot`},
		{"  host_label: instance", "  hostlabel: instance", `unknown key "hostlabel" in metrics`},
		{"worse: higher}\n    cpu", "worse: higher, step: 1m}\n    cpu", `unknown key "step"`},
		{"  sensitivity: medium", "  sensitivity: medium\n  sensitive: true", `unknown key "sensitive" in detection`},
		{"    rollback_when: 'top_mean", "    rollback_whn: 'top_mean", `unknown key "rollback_whn" in policies[1]`},
		{"  static: [web-1, web-2, web-3]", "  static: [web-1, web-2, web-3]\n  inventory: inventories/prod.ini", "exactly one source"},
		{"  static: [web-1, web-2, web-3]", "  statics: [web-1, web-2, web-3]", `unknown key "statics" in targets`},
		{"name: web-nginx-tuning ", "", `missing required key "name"`},
		{"version: ${GITHUB_SHA}", "version: ${NO_SUCH_VARIABLE_SET}", "NO_SUCH_VARIABLE_SET is not set"},
	} {
		text := strings.Replace(base, tc.old, tc.new, 1)
		if text == base {
			t.Fatalf("%q is not in DESIGN's spec", tc.old)
		}
		file := filepath.Join(dir, "case.yaml")
		if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, errOut := rollguard(t, "validate", "-f", file)
		switch {
		case tc.problem == "" && code != 0:
			t.Errorf("%q -> %q: exit %d, want valid\n%s", tc.old, tc.new, code, errOut)
		case tc.problem != "" && (code != 2 || !strings.Contains(errOut, tc.problem) || !regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(file)+`:\d+:\d+: `).MatchString(errOut)):
			t.Errorf("%q -> %q: exit %d, %q: want 2, file:line:col and %q", tc.old, tc.new, code, errOut, tc.problem)
		}
	}
	// A policy file's unknown key is refused too.
	os.WriteFile(filepath.Join(dir, "policies/latency.yaml"), []byte(designPolicy+"on_nodata: hold\n"), 0o644)
	if code, _, errOut := rollguard(t, "validate", "-f", filepath.Join(dir, "rollout.yaml")); code != 2 || !strings.Contains(errOut, `policies/latency.yaml:5:1: unknown key "on_nodata"`) {
		t.Errorf("a policy file's unknown key: exit %d, %q", code, errOut)
	}
}

// With an Ansible inventory as the target source, canary.hosts {tag: t}
// selects the inventory's group t, and {meta: {k: v}} the hosts whose
// variable k is v (before, neither matched any inventory host).
func TestContractInventoryCanary(t *testing.T) {
	if _, err := exec.LookPath("ansible-inventory"); err != nil {
		if os.Getenv("ROLLGUARD_E2E") == "1" {
			t.Fatal("ROLLGUARD_E2E=1 but ansible-inventory is not installed")
		}
		t.Skip("ansible-inventory not installed")
	}
	inventory := designSpec
	inventory = strings.Replace(inventory, "  static: [web-1, web-2, web-3]", "  inventory: inventories/prod.ini\n  group: web", 1)
	dir := contractDir(t, map[string]string{
		"inventories/prod.ini": "[web]\nweb-1 zone=a\nweb-2 zone=b\nweb-3 zone=b\n[canary]\nweb-3\n[db]\ndb-1\n",
		"tag.yaml":             strings.Replace(inventory, "  hosts: 1   ", "  hosts: {tag: canary}", 1),
		"meta.yaml":            strings.Replace(inventory, "  hosts: 1   ", "  hosts: {meta: {zone: b}}", 1),
	})
	for file, want := range map[string][]string{
		"tag.yaml":  {"canary[web-3] 5m", "wave-1[web-1] 5m", "wave-2[web-2] 10m"},
		"meta.yaml": {"canary[web-2 web-3] 5m", "wave-1[web-1] 5m"},
	} {
		if got := plan(t, filepath.Join(dir, file)); !slices.Equal(got, want) {
			t.Errorf("%s: plan %q, want %q", file, got, want)
		}
	}
}

// Every name DESIGN says a policy can read compiles, with the type DESIGN
// implies; what it holds is what DESIGN says, checked by policies that
// fire on a run where it does not hold.
func TestContractPolicyEnvironment(t *testing.T) {
	spec := func(policies string) string {
		good, err := os.ReadFile("testdata/dryrun/good.yaml")
		if err != nil {
			t.Fatal(err)
		}
		abs, _ := filepath.Abs("testdata")
		s := strings.ReplaceAll(string(good), "../", abs+"/")
		i := strings.Index(s, "policies:\n")
		return s[:i] + "policies:\n" + policies
	}
	names := `  - name: hosts
    rollback_when: 'any(hosts, .name == "" || .wave == "" || .score < 0 || .degraded && !.applied || .failed || len(.metrics) == 0)'
  - name: metric
    rollback_when: 'any(hosts, .metrics.latency_p95.current + .metrics.latency_p95.baseline + .metrics.latency_p95.stddev + .metrics.latency_p95.z + .metrics.latency_p95.ratio + .metrics.latency_p95.delta + .metrics.latency_p95.score + .metrics.latency_p95.samples + .metrics.latency_p95.control > 1e12 || .metrics.cpu.nodata)'
  - name: fleet
    rollback_when: 'fleet.size < 0 || fleet.changed < 0 || fleet.degraded < 0 || fleet.fraction_degraded > 1 || fleet.mean_score < 0 || fleet.max_score < 0'
  - name: stage
    rollback_when: 'wave.name == "" || wave.index < 0 || phase not in ["apply", "monitor"] || elapsed < 0'
  - name: functions
    rollback_when: 'fraction(hosts, .degraded) > 1 || top_mean(hosts, 0.3) > 100 || !all(hosts, .applied) || count(hosts, .failed) > 0 || len(filter(hosts, .score > 100)) > 0 || mean(map(hosts, .score)) > 100 || max(map(hosts, .score)) > 100'
    host_rollback_when: 'host.name == "" || host.wave == "" || host.score > 100 || host.degraded && !host.applied || host.failed || host.metrics.latency_p95.z > 1e9'
`
	// What each name holds, on every tick of three runs (the canary and
	// wave-1 of latency-50 and noisy-host, all of good).
	holds := `  - name: size-is-the-targets
    rollback_when: 'fleet.size != 10'
  - name: changed-is-hosts
    rollback_when: 'fleet.changed != len(hosts) || len(hosts) != [1, 5, 10][wave.index]'
  - name: degraded-counts
    rollback_when: 'fleet.degraded != count(hosts, .degraded) || fleet.max_score != max(map(hosts, .score)) || abs(fleet.mean_score - mean(map(hosts, .score))) > 1e-9 || abs(fleet.fraction_degraded - fleet.degraded / fleet.changed) > 1e-9'
  - name: canary-is-index-0
    rollback_when: '(wave.index == 0) != (wave.name == "canary") || any(hosts, .wave not in ["canary", "wave-1", "wave-2"])'
  - name: score-is-the-largest
    rollback_when: 'any(hosts, .score != max([.metrics.latency_p95.score, .metrics.error_rate.score, .metrics.cpu.score]))'
  - name: degraded-is-over-threshold
    rollback_when: 'any(hosts, .degraded != (.score > 5))'
  - name: ratio-and-delta
    rollback_when: 'any(hosts, abs(.metrics.latency_p95.ratio - .metrics.latency_p95.current / .metrics.latency_p95.baseline) > 1e-9 || abs(.metrics.latency_p95.delta - (.metrics.latency_p95.current - .metrics.latency_p95.baseline)) > 1e-9)'
  - name: samples-and-control
    rollback_when: 'any(hosts, .metrics.latency_p95.samples != 60 || .metrics.latency_p95.nodata || wave.index < 2 && .metrics.latency_p95.control <= 0)'
  - name: elapsed-in-the-stage
    rollback_when: 'elapsed < 0 || elapsed > 600'
  - name: host-is-one-of-hosts
    host_rollback_when: 'none(hosts, .name == host.name)'
`
	dir := contractDir(t, map[string]string{"names.yaml": spec(names), "holds.yaml": spec(holds),
		"typo.yaml":    spec("  - {name: typo, rollback_when: 'fraction(hosts, .degradd) > 0.3'}\n"),
		"number.yaml":  spec("  - {name: number, rollback_when: 'fleet.max_score'}\n"),
		"no-host.yaml": spec("  - {name: no-host, rollback_when: 'host.score > 5'}\n"),
		"fires.yaml":   spec("  - {name: third-wave, rollback_when: 'wave.name == \"wave-2\" && wave.index == 2 && fleet.changed == 10 && phase == \"monitor\" && elapsed >= 120'}\n"),
	})
	if code, _, errOut := rollguard(t, "validate", "-f", filepath.Join(dir, "names.yaml")); code != 0 {
		t.Fatalf("every name of the policy environment: exit %d\n%s", code, errOut)
	}
	for file, want := range map[string]string{"typo.yaml": "degradd", "number.yaml": "expected bool", "no-host.yaml": "host"} {
		path := filepath.Join(dir, file)
		code, _, errOut := rollguard(t, "validate", "-f", path)
		if code != 2 || !regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(path)+`:\d+:\d+: .*`+want).MatchString(errOut) {
			t.Errorf("%s: exit %d, %q: want 2 and the problem at file:line:col", file, code, errOut)
		}
	}
	for _, rec := range []string{"good.jsonl", "latency-50.jsonl", "noisy-host.jsonl"} {
		for _, file := range []string{"names.yaml", "holds.yaml"} {
			code, out, errOut := rollguard(t, "dry-run", "-q", "-f", filepath.Join(dir, file), "--metrics", "testdata/recordings/"+rec, "--change-at", "2024-01-01T12:00:00Z")
			if code != 0 {
				t.Errorf("%s over %s: exit %d, want 0 (no policy fires)\n%s%s", file, rec, code, out, errOut)
			}
		}
	}
	// A policy that holds exactly in wave-2's monitoring period, 2 minutes
	// after its apply, fires there and reverts wave-2 (revert.scope wave).
	out := t.TempDir()
	code, _, errOut := rollguard(t, "dry-run", "-q", "-f", filepath.Join(dir, "fires.yaml"), "--metrics", "testdata/recordings/good.jsonl", "--change-at", "2024-01-01T12:00:00Z", "--report-dir", out)
	if code != 3 {
		t.Fatalf("fires.yaml: exit %d, want 3\n%s", code, errOut)
	}
	r := readReport(t, out)
	if r.Rollback == nil || r.Rollback.Trigger != "third-wave" || !slices.Equal(r.Rollback.Hosts, []string{"web-6", "web-7", "web-8", "web-9", "web-10"}) ||
		!r.Rollback.StartedAt.Equal(time.Date(2024, 1, 1, 12, 22, 0, 0, time.UTC)) {
		t.Errorf("rollback %+v: want third-wave reverting web-6..web-10 at 12:22", r.Rollback)
	}
}

// exportLine is one series in VictoriaMetrics' export format, a NaN as a
// staleness marker (null: what a scraper writes when a scrape fails).
func exportLine(labels map[string]string, values []float64, timestamps []int64) string {
	vs := make([]any, len(values))
	for i, v := range values {
		if !math.IsNaN(v) {
			vs[i] = v
		}
	}
	b, _ := json.Marshal(map[string]any{"metric": labels, "values": vs, "timestamps": timestamps})
	return string(b) + "\n"
}

// A recording in DESIGN's format, written here: __name__ the query's
// name, the host in metrics.host_label, its value metrics.host_value, other
// labels as an export has them. A latency step on web-1 rolls the canary
// back; the same hours without it promote.
func TestContractRecordedMetrics(t *testing.T) {
	start := time.Date(2024, 1, 1, 10, 0, 0, 0, time.UTC)
	write := func(step bool) string {
		var b strings.Builder
		for h := 1; h <= 3; h++ {
			for _, q := range []string{"latency_p95", "error_rate", "cpu"} {
				var values []float64
				var ts []int64
				for i := range 181 { // 10:00 to 13:00 every minute
					at := start.Add(time.Duration(i) * time.Minute)
					v := map[string]float64{"latency_p95": 0.2, "error_rate": 0, "cpu": 0.35}[q] * (1 + 0.03*math.Sin(float64(i*h)))
					if step && h == 1 && q == "latency_p95" && at.After(start.Add(2*time.Hour)) {
						v *= 2
					}
					values = append(values, v)
					ts = append(ts, at.UnixMilli())
				}
				b.WriteString(exportLine(map[string]string{"__name__": q, "job": "node", "host": fmt.Sprintf("web-%d:9100", h)}, values, ts))
			}
		}
		return b.String()
	}
	dir := contractDir(t, map[string]string{"step.jsonl": write(true), "flat.jsonl": write(false)})
	// DESIGN's host_value, "{{.Host.Address}}:9100": a static host's
	// address is its name.
	spec := strings.NewReplacer("  interval: 15s", "  interval: 1m", "  baseline: 30m", "  baseline: 60m",
		"  host_label: instance", "  host_label: host").Replace(designSpec)
	if err := os.WriteFile(filepath.Join(dir, "rollout.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	for rec, want := range map[string]int{"step.jsonl": 3, "flat.jsonl": 0} {
		out := t.TempDir()
		code, stdout, errOut := rollguard(t, "dry-run", "-q", "-f", filepath.Join(dir, "rollout.yaml"), "--metrics", filepath.Join(dir, rec),
			"--change-at", "2024-01-01T12:00:00Z", "--report-dir", out)
		if code != want {
			t.Fatalf("%s: exit %d, want %d\n%s%s", rec, code, want, stdout, errOut)
		}
		r := readReport(t, out)
		if want == 3 && (r.Rollback == nil || !slices.Equal(r.Rollback.Hosts, []string{"web-1"})) {
			t.Errorf("%s: rollback %+v, want web-1", rec, r.Rollback)
		}
		for _, h := range r.Hosts {
			if m := h.Metrics["latency_p95"]; h.Applied && (m.Samples != 60 || m.Baseline == 0) {
				t.Errorf("%s: %s latency_p95 baseline %v of %d samples: the recording's series was not read as %s's", rec, h.Name, m.Baseline, m.Samples, h.Name)
			}
		}
	}
}

// VictoriaMetrics' export may write one series on several lines, one per
// block it reads, in any order: the replay is the same as of the series
// in one line.
func TestContractRecordingSplitSeries(t *testing.T) {
	data, err := os.ReadFile("testdata/recordings/latency-50.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var split strings.Builder
	for line := range strings.Lines(string(data)) {
		var s struct {
			Metric     map[string]string `json:"metric"`
			Values     []float64         `json:"values"`
			Timestamps []int64           `json:"timestamps"`
		}
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatal(err)
		}
		n := len(s.Values) / 3
		// the last block first
		split.WriteString(exportLine(s.Metric, s.Values[2*n:], s.Timestamps[2*n:]))
		split.WriteString(exportLine(s.Metric, s.Values[:n], s.Timestamps[:n]))
		split.WriteString(exportLine(s.Metric, s.Values[n:2*n], s.Timestamps[n:2*n]))
	}
	rec := filepath.Join(t.TempDir(), "split.jsonl")
	if err := os.WriteFile(rec, []byte(split.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	var reports []string
	for _, file := range []string{"testdata/recordings/latency-50.jsonl", rec} {
		dir := t.TempDir()
		code, _, errOut := rollguard(t, "dry-run", "-q", "-f", "testdata/dryrun/latency-50.yaml", "--metrics", file, "--change-at", "2024-01-01T12:00:00Z", "--report-dir", dir)
		if code != 3 {
			t.Fatalf("%s: exit %d, want 3\n%s", file, code, errOut)
		}
		r := readReport(t, dir)
		r.RunID = ""
		b, _ := json.Marshal(r)
		reports = append(reports, string(b))
	}
	if reports[0] != reports[1] {
		t.Errorf("the series split over lines replays differently")
	}
}

// plan --json is DESIGN's document: waves, each with name, hosts and
// monitor, of those types (hosts a list even of one host).
func TestContractPlanJSON(t *testing.T) {
	dir := contractDir(t, nil)
	code, out, _ := rollguard(t, "plan", "-f", filepath.Join(dir, "rollout.yaml"), "--json")
	var doc map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil {
		t.Fatalf("plan --json: exit %d\n%s", code, out)
	}
	waves, ok := doc["waves"].([]any)
	if !ok || len(waves) != 3 {
		t.Fatalf("waves %#v, want a list of 3", doc["waves"])
	}
	for i, w := range waves {
		w, _ := w.(map[string]any)
		for k, kind := range map[string]string{"name": "string", "hosts": "list", "monitor": "string"} {
			if !jsonKind(w[k], kind) {
				t.Errorf("waves[%d].%s is %#v, want a %s", i, k, w[k], kind)
			}
		}
		if m, _ := w["monitor"].(string); m != "" {
			if _, err := time.ParseDuration(m); err != nil {
				t.Errorf("waves[%d].monitor %q is not a Go duration", i, m)
			}
		}
	}
}

// history --json is {"hosts": {"<host>": [records]}}: a list for every
// host asked about, [] when it has none, and reading it creates nothing.
// The newest known-good version is marked in text.
func TestContractHistory(t *testing.T) {
	dir := contractDir(t, nil)
	spec := filepath.Join(dir, "rollout.yaml")
	historyJSON := func(args ...string) map[string][]map[string]any {
		t.Helper()
		code, out, errOut := rollguard(t, append([]string{"history", "-f", spec, "--json"}, args...)...)
		var doc struct {
			Hosts map[string][]map[string]any `json:"hosts"`
		}
		var raw map[string]map[string]any
		if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || json.Unmarshal([]byte(out), &raw) != nil || doc.Hosts == nil {
			t.Fatalf("history --json %v: exit %d, %s%s", args, code, out, errOut)
		}
		for h, recs := range raw["hosts"] {
			if !jsonKind(recs, "list") {
				t.Errorf("history --json %v: hosts[%q] is %#v, want a list", args, h, recs)
			}
		}
		return doc.Hosts
	}
	if got := historyJSON(); len(got) != 0 {
		t.Errorf("no history: %v", got)
	}
	if got := historyJSON("--host", "web-1"); len(got) != 1 || got["web-1"] == nil || len(got["web-1"]) != 0 {
		t.Errorf("no history of web-1: %v, want {\"web-1\": []}", got)
	}
	if _, err := os.Stat(filepath.Join(dir, ".rollguard")); !os.IsNotExist(err) {
		t.Errorf("history created %s/.rollguard (%v)", dir, err)
	}

	// Records as a run writes them.
	store, err := localstate.New(filepath.Join(dir, ".rollguard", "web-nginx-tuning"))
	if err != nil {
		t.Fatal(err)
	}
	h := historyOf(store)
	ctx := context.Background()
	at := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	for i, v := range []string{"v1", "v2", "v3"} {
		if err := h.Record(ctx, "web-1", recordOf(v, fmt.Sprintf("run-%d", i+1), at.Add(time.Duration(i)*time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.MarkKnownGood(ctx, []string{"web-1"}, "v2", "run-2"); err != nil {
		t.Fatal(err)
	}
	recs := historyJSON("--host", "web-1")["web-1"]
	var versions []string
	for _, r := range recs {
		versions = append(versions, fmt.Sprint(r["version"], ":", r["outcome"]))
		for k, kind := range map[string]string{"version": "string", "outcome": "string", "at": "time", "run_id": "string"} {
			if !jsonKind(r[k], kind) {
				t.Errorf("record %v: %s is %#v, want a %s", r, k, r[k], kind)
			}
		}
	}
	if strings.Join(versions, " ") != "v1:applied v2:known_good v3:applied" {
		t.Errorf("web-1's records %v", versions)
	}
	code, out, _ := rollguard(t, "history", "-f", spec)
	if code != 0 || !regexp.MustCompile(`(?m)^web-1\s+v2\s+known_good.*last known-good`).MatchString(out) {
		t.Errorf("history: exit %d, the known-good version is not marked:\n%s", code, out)
	}
}

func historyOf(store *localstate.Store) history.History { return history.History{Store: store} }

func recordOf(version, runID string, at time.Time) history.VersionRecord {
	return history.VersionRecord{Version: version, Playbook: "playbooks/site.yml", At: at, RunID: runID, Outcome: history.VersionApplied}
}

// rollguard schema is a valid draft 2020-12 JSON Schema; it accepts DESIGN's
// spec and policy file, every spec and policy file written here from
// DESIGN and every example of the README, and it agrees with validate on
// what a spec's shape may be.
func TestContractSchema(t *testing.T) {
	code, out, _ := rollguard(t, "schema")
	if code != 0 {
		t.Fatalf("schema: exit %d", code)
	}
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
	if err != nil {
		t.Fatalf("schema is not JSON: %v", err)
	}
	if s, _ := doc.(map[string]any)["$schema"].(string); s != "https://json-schema.org/draft/2020-12/schema" {
		t.Fatalf("$schema %q, want draft 2020-12", s)
	}
	c := jsonschema.NewCompiler()
	meta, err := c.Compile("https://json-schema.org/draft/2020-12/schema")
	if err != nil {
		t.Fatal(err)
	}
	if err := meta.Validate(doc); err != nil {
		t.Fatalf("schema is not a valid draft 2020-12 schema: %v", err)
	}
	if err := c.AddResource("rollguard.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	schema, err := c.Compile("rollguard.schema.json")
	if err != nil {
		t.Fatalf("compile the schema: %v", err)
	}
	// instance reads YAML as the schema's instance, ${VAR} expanded.
	instance := func(text string) any {
		t.Helper()
		var v any
		if err := yaml.Unmarshal([]byte(os.ExpandEnv(text)), &v); err != nil {
			t.Fatalf("%v:\n%s", err, text)
		}
		j, _ := json.Marshal(v)
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
		if err != nil {
			t.Fatal(err)
		}
		return inst
	}
	dir := contractDir(t, nil)
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, f := range append(files, filepath.Join(dir, "policies/latency.yaml")) {
		data, _ := os.ReadFile(f)
		if err := schema.Validate(instance(string(data))); err != nil {
			t.Errorf("%s (DESIGN's) does not match the schema: %v", filepath.Base(f), err)
		}
	}

	// The README's YAML examples: a whole spec or policy file as it is,
	// a part of a spec in DESIGN's spec (its keys replacing DESIGN's),
	// and each must load too.
	t.Setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.example/x")
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	checked := 0
	for i, b := range blocks {
		text := b[1]
		if strings.Contains(text, "uses: rollguard/rollguard") {
			continue // a GitHub workflow step
		}
		// A policy file, a whole spec, or a part of one.
		var top map[string]any
		if err := yaml.Unmarshal([]byte(text), &top); err != nil && !strings.HasPrefix(text, "- ") {
			t.Fatalf("README's YAML example %d: %v", i+1, err)
		}
		isPolicy := strings.Contains(text, "rollback_when:") && top["policies"] == nil
		file := filepath.Join(dir, fmt.Sprintf("readme-%d.yaml", i+1))
		switch {
		case isPolicy:
			file = filepath.Join(dir, "policies/latency.yaml") // DESIGN's spec loads it
		case top["targets"] == nil || top["apply"] == nil:
			var spec map[string]any
			yaml.Unmarshal([]byte(designSpec), &spec)
			for k, v := range top {
				spec[k] = v
			}
			whole, _ := yaml.Marshal(spec)
			text = string(whole)
		}
		os.WriteFile(file, []byte(text), 0o644)
		if err := schema.Validate(instance(text)); err != nil {
			t.Errorf("README's YAML example %d does not match the schema: %v\n%s", i+1, err, b[1])
		}
		if isPolicy {
			file = filepath.Join(dir, "rollout.yaml")
		}
		code, _, errOut := rollguard(t, "validate", "-f", file)
		if code != 0 {
			t.Errorf("README's YAML example %d does not load: %s\n%s", i+1, errOut, b[1])
		}
		checked++
	}
	if checked < 5 {
		t.Errorf("checked %d of the README's YAML examples, want every one (at least 5)", checked)
	}

	// Shape: a spec validate accepts the schema accepts, and one validate
	// refuses for its shape (a type, an enum, a key, a form) the schema
	// refuses. Ranges, files, hosts and expressions are validate's.
	os.WriteFile(filepath.Join(dir, "policies/latency.yaml"), []byte(designPolicy), 0o644)
	for _, tc := range []struct {
		old, new string
		valid    bool
	}{
		{"name: web-nginx-tuning", "name: 2024", true}, // any scalar is text, as written
		{"version: ${GITHUB_SHA}", "version: 42", true},
		{"version: ${GITHUB_SHA}", "version: 1.10", true},
		{"static: [web-1, web-2, web-3]", "static: [web-1, 2, web-3]", true},
		{"host_label: instance", "host_label: 9100", true},
		{"rollback_when: 'top_mean(hosts, 0.30) > 5'", "rollback_when: true", true},
		{"", "", true}, // DESIGN's spec as it is
		{"forks: 10", "forks: ten", false},
		{"forks: 10", `forks: "10"`, false},
		{"hosts: 1  ", "hosts: ten", false},
		{"hosts: 1  ", "hosts: 1.5", false},
		{"monitor: 5m    ", "monitor: 300    ", false},
		{"scope: wave", "scope: fleet", false},
		{"sensitivity: medium", "sensitivity: 5", false},
		{"known_good: true", "known_good: yes", false},
		{"extra_vars: {nginx_worker_connections: 4096}", "extra_vars: [4096]", false},
		{"static: [web-1, web-2, web-3]", "static: web-1", false},
		{"static: [web-1, web-2, web-3]", "static: []", false},
		{"name: web-nginx-tuning", `name: ""`, false},
		{"    delete: ", "    remove: ", false},
		{"    restore: [virsh, snapshot-revert, \"{{.Host.Name}}\", \"rollguard-{{.RunID}}\"]\n", "", false}, // create without restore
		{"url: http://127.0.0.1:8428", "url: 8428", false},
		{"  - {type: webhook, url: \"${ALERT_URL}\"}", "  - {type: email, url: \"${ALERT_URL}\"}", false},
		{"  - {type: webhook, url: \"${ALERT_URL}\"}", "  - {type: webhook}", false},
		{"worse: higher}\n    cpu", "worse: up}\n    cpu", false},
		{"latency_p95: {query:", "latency-p95: {query:", false},
	} {
		text := strings.Replace(designSpec, tc.old, tc.new, 1)
		if text == designSpec && tc.old != tc.new {
			t.Fatalf("%q is not in DESIGN's spec", tc.old)
		}
		file := filepath.Join(dir, "shape.yaml")
		os.WriteFile(file, []byte(text), 0o644)
		code, _, errOut := rollguard(t, "validate", "-f", file)
		serr := schema.Validate(instance(text))
		if (code == 0) != tc.valid || (serr == nil) != tc.valid {
			t.Errorf("%q -> %q: validate exit %d, schema %v; want both to say valid=%v\n%s", tc.old, tc.new, code, serr, tc.valid, errOut)
		}
	}
}
