package main

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollguard/rollguard/report"
)

// binary is the rollguard binary built once for the end-to-end tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rollguard-e2e-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "rollguard")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// rollguard runs the built binary and returns its exit code and output.
func rollguard(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run rollguard %v: %v", args, err)
	}
	return code, stdout.String(), stderr.String()
}

func readReport(t *testing.T, dir string) report.Report {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatalf("report.json: %v", err)
	}
	var r report.Report
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	// The contract's keys (DESIGN.md) are all there, whatever their
	// values, at every level, each of its JSON type: a string, a number,
	// a bool, a list, an object, a time (an RFC 3339 string); "?" allows
	// null (a wave not started has no times, a run without a rollback
	// has "rollback": null).
	var raw map[string]any
	json.Unmarshal(data, &raw)
	has := func(where string, obj any, keys ...string) {
		m, ok := obj.(map[string]any)
		if !ok {
			t.Errorf("report.json %s is %T, want an object", where, obj)
			return
		}
		for _, kt := range keys {
			k, kind, _ := strings.Cut(kt, ":")
			v, ok := m[k]
			if !ok {
				t.Errorf("report.json %s lacks %q", where, k)
				continue
			}
			if kind != "" && !jsonKind(v, kind) {
				t.Errorf("report.json %s.%s is %#v, want %s", where, k, v, kind)
			}
		}
	}
	has("", raw, "run_id:string", "name:string", "outcome:string", "started_at:time", "finished_at:time", "waves:list", "hosts:list", "decisions:list", "rollback:object?")
	if o, _ := raw["outcome"].(string); !slices.Contains([]string{"promoted", "rolled_back", "halted", "error"}, o) {
		t.Errorf("report.json outcome %q, want promoted, rolled_back, halted or error", o)
	}
	each := func(key string, keys ...string) {
		list, _ := raw[key].([]any)
		for i, e := range list {
			has(fmt.Sprintf("%s[%d]", key, i), e, keys...)
		}
	}
	each("waves", "name:string", "index:integer", "hosts:list", "outcome:string", "apply_started_at:time?", "finished_at:time?")
	each("hosts", "name:string", "wave:string", "applied:bool", "changed_tasks:list", "reverted:bool", "snapshot:string", "max_score:number", "metrics:object")
	each("decisions", "at:time", "policy:string", "scope:string", "host:string", "fired:bool", "reason:string", "values:object")
	for key, lists := range map[string][]string{"waves": {"hosts"}, "hosts": {"changed_tasks"}} {
		list, _ := raw[key].([]any)
		for i, e := range list {
			e, _ := e.(map[string]any)
			for _, l := range lists {
				items, _ := e[l].([]any)
				for j, item := range items {
					if !jsonKind(item, "string") {
						t.Errorf("report.json %s[%d].%s[%d] is %#v, want a string", key, i, l, j, item)
					}
				}
			}
		}
	}
	hosts, _ := raw["hosts"].([]any)
	for i, h := range hosts {
		h, _ := h.(map[string]any)
		metrics, _ := h["metrics"].(map[string]any)
		for q, m := range metrics {
			has(fmt.Sprintf("hosts[%d].metrics.%s", i, q), m, "baseline:number", "stddev:number", "current:number", "z:number", "score:number", "samples:integer")
		}
	}
	decisions, _ := raw["decisions"].([]any)
	for i, d := range decisions {
		d, _ := d.(map[string]any)
		if s := d["scope"]; s != "fleet" && s != "host" {
			t.Errorf("report.json decisions[%d].scope %v, want fleet or host", i, s)
		}
		if d["scope"] == "host" && d["host"] == "" {
			t.Errorf("report.json decisions[%d] judged a host but names none", i)
		}
		values, _ := d["values"].(map[string]any)
		for k, v := range values {
			if !jsonKind(v, "number") {
				t.Errorf("report.json decisions[%d].values[%q] is %#v, want a number", i, k, v)
			}
		}
	}
	if rb := raw["rollback"]; rb != nil {
		has("rollback", rb, "trigger:string", "reason:string", "hosts:list", "methods:list", "started_at:time", "finished_at:time", "verified:bool")
	}
	for _, f := range []string{"report.md", "report.html"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s missing or empty: %v", f, err)
		}
	}
	return r
}

// jsonKind says whether v, decoded from JSON into any, is of kind:
// string, number, integer, bool, list, object or time (an RFC 3339
// string), with a trailing "?" also null.
func jsonKind(v any, kind string) bool {
	if k, ok := strings.CutSuffix(kind, "?"); ok {
		if v == nil {
			return true
		}
		kind = k
	}
	switch kind {
	case "string":
		_, ok := v.(string)
		return ok
	case "number":
		_, ok := v.(float64)
		return ok
	case "integer":
		f, ok := v.(float64)
		return ok && f == math.Trunc(f)
	case "bool":
		_, ok := v.(bool)
		return ok
	case "list":
		_, ok := v.([]any)
		return ok
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "time":
		s, ok := v.(string)
		_, err := time.Parse(time.RFC3339Nano, s)
		return ok && err == nil
	}
	panic("jsonKind: unknown kind " + kind)
}

// dryRunScenario is one spec of testdata/dryrun over its recording, and
// what a dry run of it must decide.
type dryRunScenario struct {
	spec, metrics string
	exit          int
	outcome       string
	reverted      []string // hosts reverted, in any order
	trigger       string   // substring of rollback.trigger
	reason        string   // substring of the outcome's reason
	notChanged    []string // hosts that must never have been applied
	verdict       string   // in the verdict line the dry run prints
}

var dryRunScenarios = []dryRunScenario{
	{spec: "good", metrics: "good.jsonl", exit: 0, outcome: "promoted"},
	{spec: "latency-50", metrics: "latency-50.jsonl", exit: 3, outcome: "rolled_back", reverted: []string{"web-1"},
		notChanged: []string{"web-2", "web-10"}},
	{spec: "latency-50-freeze", metrics: "latency-50.jsonl", exit: 4, outcome: "halted", reason: "freeze",
		notChanged: []string{"web-2", "web-10"}},
	{spec: "errors-from-zero", metrics: "errors-from-zero.jsonl", exit: 3, outcome: "rolled_back", reverted: []string{"web-1"},
		notChanged: []string{"web-2"}},
	{spec: "availability", metrics: "good.jsonl", exit: 0, outcome: "promoted"},
	{spec: "availability", metrics: "availability-drop.jsonl", exit: 3, outcome: "rolled_back", reverted: []string{"web-1"},
		notChanged: []string{"web-2"}},
	{spec: "traffic-shift", metrics: "traffic-shift.jsonl.gz", exit: 0, outcome: "promoted"},
	// The verdict line names the host a host policy reverted: "9 hosts
	// carry the change" alone left the tenth unexplained.
	{spec: "noisy-host", metrics: "noisy-host.jsonl", exit: 0, outcome: "promoted", reverted: []string{"web-7"}, trigger: "host-policy",
		verdict: "Would promote: web-tuning-noisy-host — every wave passed; 9 hosts carry the change; web-7 reverted (host policy extreme-host: host.metrics.error_rate.z = "},
	{spec: "nodata-fail", metrics: "nodata.jsonl", exit: 3, outcome: "rolled_back", reverted: []string{"web-1"}, reason: "on_no_data: fail"},
	{spec: "nodata-hold", metrics: "nodata.jsonl", exit: 3, outcome: "rolled_back", reverted: []string{"web-1"}, reason: "on_no_data: hold"},
	{spec: "nodata-ignore", metrics: "nodata.jsonl", exit: 0, outcome: "promoted"},
}

func TestDryRunScenarios(t *testing.T) {
	for _, tc := range dryRunScenarios {
		t.Run(tc.spec, func(t *testing.T) {
			_, errOut := tc.check(t, "testdata/dryrun/"+tc.spec+".yaml")
			if errOut != "" {
				t.Errorf("stderr %q, want nothing", errOut)
			}
		})
	}
}

// The recordings hold a sample a minute. Polled every 15 s, as a live run
// over a 1-minute scrape interval polls, every scenario is decided as at
// 1-minute polls, and dry-run says that each sample is judged 4 times.
// (Before the replay read a series as a live query reads it, the polls
// between two samples had no data and the baseline had none of the
// detector's pairs: good, traffic-shift, noisy-host and nodata-ignore
// rolled back.)
func TestDryRunScenariosPolledFasterThanRecorded(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"playbooks", "policies"} {
		abs, err := filepath.Abs(filepath.Join("testdata", d))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(abs, filepath.Join(root, d)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(root, "dryrun"), 0o755); err != nil {
		t.Fatal(err)
	}
	const warning = "rollguard: warning: the recording has a sample of latency_p95, error_rate, cpu every 1m, and metrics.interval is 15s: a poll between two samples reads the last one again, as a live query does, so each sample is judged as about 4 polls in a row; metrics.interval: 1m judges each once\n"
	for _, tc := range dryRunScenarios {
		t.Run(tc.spec, func(t *testing.T) {
			spec, err := os.ReadFile(filepath.Join("testdata/dryrun", tc.spec+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			fast := strings.Replace(string(spec), "interval: 1m\n", "interval: 15s\n", 1)
			if fast == string(spec) {
				t.Fatalf("%s.yaml has no 'interval: 1m' to rewrite", tc.spec)
			}
			path := filepath.Join(root, "dryrun", tc.spec+".yaml")
			if err := os.WriteFile(path, []byte(fast), 0o644); err != nil {
				t.Fatal(err)
			}
			want := warning
			if tc.spec == "availability" {
				want = strings.Replace(warning, "latency_p95, error_rate, cpu", "latency_p95, availability", 1)
			}
			if _, errOut := tc.check(t, path); errOut != want {
				t.Errorf("stderr %q, want %q", errOut, want)
			}
		})
	}
}

// A latency that reads +Inf (histogram_quantile when every request is past
// the top bucket) is the worst it can be, not missing: the canary is rolled
// back on it whatever on_no_data says, and the report is written (JSON has
// no infinity). It was no data: promoted under on_no_data: ignore, and
// with --report-dir the run ended in exit 1 without a report.
func TestDryRunInfiniteLatencyIsARegression(t *testing.T) {
	raw, err := os.ReadFile("testdata/recordings/good.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2024, 1, 1, 12, 1, 0, 0, time.UTC).UnixMilli()
	var out bytes.Buffer
	infinite := 0
	for line := range strings.Lines(string(raw)) {
		var s struct {
			Metric     map[string]string `json:"metric"`
			Values     []any             `json:"values"`
			Timestamps []int64           `json:"timestamps"`
		}
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatal(err)
		}
		if s.Metric["__name__"] == "latency_p95" && s.Metric["instance"] == "web-1" {
			for i, ts := range s.Timestamps {
				if ts >= from {
					s.Values[i] = "+Inf"
					infinite++
				}
			}
		}
		b, _ := json.Marshal(s)
		out.Write(append(b, '\n'))
	}
	if infinite == 0 {
		t.Fatal("no sample made infinite")
	}
	rec := filepath.Join(t.TempDir(), "latency-inf.jsonl")
	if err := os.WriteFile(rec, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{"good", "nodata-ignore"} {
		t.Run(spec, func(t *testing.T) {
			dir := t.TempDir()
			code, stdout, errOut := rollguard(t, "dry-run", "-f", "testdata/dryrun/"+spec+".yaml", "--metrics", rec,
				"--change-at", "2024-01-01T12:00:00Z", "--report-dir", dir)
			if code != 3 {
				t.Fatalf("exit %d, want 3\nstdout:\n%s\nstderr:\n%s", code, stdout, errOut)
			}
			r := readReport(t, dir)
			if r.Outcome != "rolled_back" || r.Rollback == nil || !slices.Equal(r.Rollback.Hosts, []string{"web-1"}) || strings.Contains(r.Reason, "no data") {
				t.Errorf("outcome %s (%s), rollback %+v: want web-1 rolled back on its latency, not on no data", r.Outcome, r.Reason, r.Rollback)
			}
		})
	}
}

// check dry-runs spec over the scenario's recording, checks the verdict
// and the report, and returns stdout and stderr.
func (tc dryRunScenario) check(t *testing.T, spec string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	code, out, errOut := rollguard(t, "dry-run", "-f", spec, "--metrics", "testdata/recordings/"+tc.metrics,
		"--change-at", "2024-01-01T12:00:00Z", "--report-dir", dir)
	if code != tc.exit {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.exit, out, errOut)
	}
	r := readReport(t, dir)
	if r.Outcome != tc.outcome {
		t.Errorf("outcome %q, want %q", r.Outcome, tc.outcome)
	}
	if !r.DryRun {
		t.Errorf("dry_run is false")
	}
	var reverted []string
	for _, h := range r.Hosts {
		if h.Reverted {
			reverted = append(reverted, h.Name)
		}
		if slices.Contains(tc.notChanged, h.Name) && h.Applied {
			t.Errorf("host %s was applied, but the rollout must have stopped before it", h.Name)
		}
	}
	slices.Sort(reverted)
	want := slices.Clone(tc.reverted)
	slices.Sort(want)
	if !slices.Equal(reverted, want) {
		t.Errorf("reverted hosts %v, want %v\n%s", reverted, want, out)
	}
	if len(tc.reverted) > 0 {
		if r.Rollback == nil {
			t.Fatalf("no rollback in report")
		}
		if tc.trigger != "" && !strings.Contains(r.Rollback.Trigger, tc.trigger) {
			t.Errorf("rollback trigger %q, want it to contain %q", r.Rollback.Trigger, tc.trigger)
		}
	}
	if tc.verdict != "" && !strings.Contains(out, tc.verdict) {
		t.Errorf("stdout lacks the verdict %q:\n%s", tc.verdict, out)
	}
	if tc.reason != "" && !strings.Contains(r.Reason, tc.reason) {
		t.Errorf("reason %q, want it to contain %q", r.Reason, tc.reason)
	}
	if tc.outcome == "rolled_back" {
		fired := false
		for _, d := range r.Decisions {
			fired = fired || d.Fired
		}
		if !fired {
			t.Errorf("rolled back without a fired decision")
		}
	}
	return out, errOut
}

func TestDryRunBadInput(t *testing.T) {
	// Recordings that do not read: each problem at file:line:column.
	dir := t.TempDir()
	badRec := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const line1 = `{"metric":{"__name__":"latency_p95","instance":"web-1"},"values":[0.2],"timestamps":[1704110400000]}` + "\n"
	badValue := badRec("value.jsonl", line1+`{"metric":{"__name__":"cpu","instance":"web-1"},"values":[0.2,"high"],"timestamps":[1704110400000,1704110460000]}`+"\n")
	badCount := badRec("count.jsonl", line1+line1+`  {"metric":{"__name__":"cpu","instance":"web-1"},"values":[1,2],"timestamps":[1704110400000]}`+"\n")
	badType := badRec("type.jsonl", `{"metric":{"__name__":"cpu"},"values":[1],"timestamps":["now"]}`+"\n")
	empty := badRec("empty.jsonl", "")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no change-at", []string{"dry-run", "-f", "testdata/dryrun/good.yaml", "--metrics", "testdata/recordings/good.jsonl"}, "--change-at is required"},
		{"bad change-at", []string{"dry-run", "-f", "testdata/dryrun/good.yaml", "--metrics", "testdata/recordings/good.jsonl", "--change-at", "noon"}, "RFC 3339"},
		{"change-at in milliseconds", []string{"dry-run", "-f", "testdata/dryrun/good.yaml", "--metrics", "testdata/recordings/good.jsonl", "--change-at", "1704110400000"},
			"--change-at 1704110400000 as unix seconds is in the year 55971: give seconds (1704110400), not milliseconds"},
		{"missing recording", []string{"dry-run", "-f", "testdata/dryrun/good.yaml", "--metrics", "testdata/recordings/nope.jsonl", "--change-at", "1704110400"}, "nope.jsonl"},
		{"unknown flag", []string{"dry-run", "--bogus"}, "unknown flag"},
		{"recording not JSON", dryRunWith("testdata/dryrun/good.yaml"), "testdata/dryrun/good.yaml:1:1: recording: invalid character '#' looking for beginning of value"},
		{"recording value not a number", dryRunWith(badValue), badValue + `:2:64: recording: value "high" is not a number`},
		{"recording values and timestamps", dryRunWith(badCount), badCount + `:3:51: recording: series cpu{instance="web-1"} has 2 values but 1 timestamps`},
		{"recording timestamp a string", dryRunWith(badType), badType + ":1:43: recording: timestamps: got a JSON string, want a number"},
		{"recording empty", dryRunWith(empty), "recording " + empty + " has no samples"},
		{"recording a directory", dryRunWith("testdata/recordings"), "recording testdata/recordings is a directory, not a file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := rollguard(t, tc.args...)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr: %s", code, errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q does not mention %q", errOut, tc.want)
			}
		})
	}
}

// dryRunWith is a dry run of the good scenario over the recording rec.
func dryRunWith(rec string) []string {
	return []string{"dry-run", "-f", "testdata/dryrun/good.yaml", "--metrics", rec, "--change-at", "1704110400"}
}

func TestValidateCommand(t *testing.T) {
	code, out, errOut := rollguard(t, "validate", "-f", "testdata/dryrun/good.yaml")
	if code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("good spec: exit %d, %q %q", code, out, errOut)
	}
	code, _, errOut = rollguard(t, "validate", "-f", "runner/testdata/many-bad.yaml")
	if code != 2 {
		t.Fatalf("bad spec: exit %d, want 2", code)
	}
	located := regexp.MustCompile(`(?m)^runner/testdata/many-bad\.yaml:\d+:\d+: `)
	if n := len(located.FindAllString(errOut, -1)); n < 5 {
		t.Errorf("%d problems reported with file:line:col, want every one (at least 5):\n%s", n, errOut)
	}
	if !strings.Contains(errOut, `unknown key "monitr" in canary (did you mean "monitor"?)`) {
		t.Errorf("the typo is not reported with a suggestion:\n%s", errOut)
	}
	// A spec that cannot be read names the file once, and why.
	for path, want := range map[string]string{
		"testdata":  "rollguard: read spec testdata: is a directory\n",
		"nope.yaml": "rollguard: read spec nope.yaml: no such file or directory\n",
	} {
		if code, _, errOut := rollguard(t, "validate", "-f", path); code != 2 || errOut != want {
			t.Errorf("validate -f %s: exit %d, %q; want 2, %q", path, code, errOut, want)
		}
	}
}

// The commands that change nothing leave the spec's directory as it
// was, valid spec or not: no state directory, lock or report appears.
func TestReadOnlyCommandsChangeNothing(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"dryrun", "playbooks", "policies"} {
		if err := os.CopyFS(filepath.Join(dir, d), os.DirFS(filepath.Join("testdata", d))); err != nil {
			t.Fatal(err)
		}
	}
	good := filepath.Join(dir, "dryrun", "good.yaml")
	bad := filepath.Join(dir, "dryrun", "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: x\nnope: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	files := func() []string {
		var out []string
		filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
			out = append(out, p)
			return err
		})
		return out
	}
	before := files()
	rec := "testdata/recordings/good.jsonl"
	for _, spec := range []string{good, bad} {
		for _, args := range [][]string{
			{"validate", "-f", spec},
			{"plan", "-f", spec},
			{"history", "-f", spec},
			{"history", "-f", spec, "--json"},
			{"dry-run", "-f", spec, "--metrics", rec, "--change-at", "2024-01-01T12:00:00Z", "-q"},
		} {
			rollguard(t, args...)
			if after := files(); !slices.Equal(before, after) {
				t.Fatalf("%v changed the spec's directory:\nbefore %v\nafter  %v", args, before, after)
			}
		}
	}
	code, out, _ := rollguard(t, "history", "-f", good)
	if code != 0 || !strings.Contains(out, "no history yet") {
		t.Errorf("history of a rollout never run: exit %d, %q", code, out)
	}
}

func TestSchemaCommand(t *testing.T) {
	code, out, _ := rollguard(t, "schema")
	var schema map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &schema) != nil {
		t.Fatalf("schema: exit %d, not JSON", code)
	}
	defs, _ := schema["$defs"].(map[string]any)
	if defs["rollout"] == nil || defs["policy_file"] == nil {
		t.Errorf("schema $defs lack rollout or policy_file: %v", slices.Collect(maps.Keys(defs)))
	}
}

// Nothing changes in good.jsonl: the README's policies, the seed rule
// top_mean(hosts, 0.30) > 5 among them, promote every replay of it, with
// the change at every 5 minutes from 11:00 to 13:25 (30 replays, each with
// its own baseline hour and its own half hour of waves); so does the
// availability scenario, whose availability sits just under 100% with its
// tolerance at 1 point.
func TestSeedRulePromotesEveryNoChangeReplay(t *testing.T) {
	at := time.Date(2024, 1, 1, 11, 0, 0, 0, time.UTC)
	for _, spec := range []string{"good", "availability"} {
		for i := range 30 {
			change := at.Add(time.Duration(5*i) * time.Minute).Format(time.RFC3339)
			code, stdout, stderr := rollguard(t, "dry-run", "-f", "testdata/dryrun/"+spec+".yaml",
				"--metrics", "testdata/recordings/good.jsonl", "--change-at", change, "-q")
			if code != 0 {
				t.Errorf("%s, change at %s: exit %d, want 0 (promoted)\n%s%s", spec, change, code, stdout, stderr)
			}
		}
	}
}

// rollguard demo copies the playbooks embedded in the binary.
func TestDemoEmbedsThePlaybooks(t *testing.T) {
	for _, f := range []string{"site.yml", "revert.yml"} {
		if _, err := playbooks.Open("testdata/playbooks/" + f); err != nil {
			t.Errorf("embedded playbooks: %v", err)
		}
	}
}

// Never silent: validate, plan and dry-run refuse a stage too short to roll
// back a clear step (exit 2, at the stage's monitor), naming the smallest
// monitor that can; nothing runs.
func TestShortStageIsRefused(t *testing.T) {
	good, err := os.ReadFile("testdata/dryrun/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec := strings.Replace(string(good), "  monitor: 10m\n", "  monitor: 2m\n", 1)
	path := filepath.Join("testdata", "dryrun", "short-canary.tmp.yaml")
	if err := os.WriteFile(path, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(path) })
	want := path + ":8:12: canary.monitor 2m is too short to roll back a clear step: at metrics.interval 1m it holds 2 poll(s), and a decision needs 3 (two polls in a row, the second after detection.warmup 2m (2 poll(s))); the smallest monitor that can is 3m"
	for _, args := range [][]string{
		{"validate", "-f", path},
		{"plan", "-f", path},
		{"dry-run", "-f", path, "--metrics", "testdata/recordings/good.jsonl", "--change-at", "2024-01-01T12:00:00Z"},
	} {
		code, out, errOut := rollguard(t, args...)
		if code != 2 || !strings.Contains(errOut, want) {
			t.Errorf("%s: exit %d, want 2 with\n  %s\ngot\n%s%s", args[0], code, want, out, errOut)
		}
	}
}

// brokenPipe runs the binary with stdout and stderr the write ends of
// pipes whose readers are closed: every write there fails with EPIPE.
// It returns the exit code (-1 when a signal ended the process).
func brokenPipe(t *testing.T, env []string, args ...string) int {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer w.Close()
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.Env = append(os.Environ(), env...)
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode()
	case err != nil:
		t.Fatalf("rollguard %v: %v", args, err)
	}
	return 0
}

// With stdout closed (its reader gone), a dry run replays to its end and
// writes its whole report: progress output cannot end a run.
func TestDryRunBrokenPipe(t *testing.T) {
	dir := t.TempDir()
	code := brokenPipe(t, nil, "dry-run", "-f", "testdata/dryrun/latency-50.yaml", "--metrics", "testdata/recordings/latency-50.jsonl",
		"--change-at", "2024-01-01T12:00:00Z", "--report-dir", dir)
	if code != 3 {
		t.Fatalf("exit %d with stdout a broken pipe, want 3 (would roll back) as with a reader", code)
	}
	r := readReport(t, dir)
	if r.Outcome != report.OutcomeRolledBack || r.FinishedAt.IsZero() || len(r.Timeline) == 0 {
		t.Errorf("report: outcome %q, finished %v, %d timeline lines", r.Outcome, r.FinishedAt, len(r.Timeline))
	}
}

// sparsePods are TrainTicket pods of the Nezha data set whose latency has
// no value in the minutes they serve no request (up to 2 to 8 minutes in
// a row; evaluation/testdata/nezha, MIT).
var sparsePods = []string{
	"ts-auth-service-7f8d7d756d-kzp47", "ts-verification-code-service-7b6dc75c45-r66rb",
	"ts-travel-service-64469b5b48-5rjvb", "ts-travel2-service-5c66d57d58-zxw8n",
	"ts-order-other-service-6cdbf9b4cc-swvb5", "ts-order-service-5b67c48447-fj8b7",
}

// sparseRecording writes the pods' server_latency_p90_s as a recording
// (query latency, hosts svc-1..svc-6; a minute without a value has no
// sample) and returns its path and its first and last unix second.
func sparseRecording(t *testing.T, dir string) (string, int64, int64) {
	t.Helper()
	var b strings.Builder
	var first, last int64
	for i, pod := range sparsePods {
		rows := readGzipCSV(t, filepath.Join("evaluation/testdata/nezha/train_ticket/2023-01-30/pods", pod+".csv.gz"))
		col := slices.Index(rows[0], "server_latency_p90_s")
		var ts []int64
		var vs []float64
		for _, row := range rows[1:] {
			sec, err := strconv.ParseInt(row[0], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			if first == 0 || sec < first {
				first = sec
			}
			last = max(last, sec)
			v, err := strconv.ParseFloat(row[col], 64)
			if row[col] == "" || err != nil || math.IsNaN(v) {
				continue
			}
			ts, vs = append(ts, sec*1000), append(vs, v)
		}
		b.WriteString(exportLine(map[string]string{"__name__": "latency", "instance": fmt.Sprintf("svc-%d", i+1)}, vs, ts))
	}
	path := filepath.Join(dir, "sparse.jsonl")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, first, last
}

func readGzipCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(z).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// jumpstarterServices are ten JumpStarter services whose m00 and m18 have
// one daily shape, watched as ten replicas of one service (m18: a deep
// night trough, 0.42 of its median at 03:00, 0.64 at 01:00).
var jumpstarterServices = []string{"service00", "service01", "service03", "service05", "service07", "service08", "service09", "service10", "service13", "service14"}

// jumpstarterRecording writes to path a recording of the committed
// JumpStarter copy (evaluation/testdata/jumpstarter, MIT; 5-minute polls):
// column col of each of services as query name (see csvRecording).
func jumpstarterRecording(t *testing.T, path, name, col string, services []string, from, to, at int, f func(h, i int, v float64) (float64, bool)) int64 {
	t.Helper()
	files := make([]string, len(services))
	for h, svc := range services {
		files[h] = filepath.Join("evaluation/testdata/jumpstarter/hosts", svc+".csv.gz")
	}
	return csvRecording(t, path, name, col, files, from, to, at, f)
}

// csvRecording writes to path a recording of column col of each of the
// committed gzipped CSVs files (a unix second in the first column, one
// row a poll) as query name on host h01, h02, …, over rows [from, to),
// each value v of host index h at row i passed through f (nil: as it
// is; an empty or unreadable cell is NaN), which returns the value to
// write (NaN: a staleness marker) or false for no sample. It returns the
// unix second of row at.
func csvRecording(t *testing.T, path, name, col string, files []string, from, to, at int, f func(h, i int, v float64) (float64, bool)) int64 {
	t.Helper()
	var b strings.Builder
	var atSec int64
	for h, file := range files {
		rows := cachedCSV(t, file)
		c := slices.Index(rows[0], col)
		var ts []int64
		var vs []float64
		for i := from; i < to; i++ {
			sec, err := strconv.ParseInt(rows[1+i][0], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			if i == at {
				atSec = sec
			}
			v, err := strconv.ParseFloat(rows[1+i][c], 64)
			if err != nil {
				v = math.NaN()
			}
			keep := true
			if f != nil {
				v, keep = f(h, i, v)
			}
			if keep {
				ts, vs = append(ts, sec*1000), append(vs, v)
			}
		}
		b.WriteString(exportLine(map[string]string{"__name__": name, "instance": fmt.Sprintf("h%02d", h+1)}, vs, ts))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return atSec
}

// cachedCSV reads a committed gzipped CSV once per test binary.
func cachedCSV(t *testing.T, path string) [][]string {
	t.Helper()
	csvCache.Lock()
	defer csvCache.Unlock()
	if rows, ok := csvCache.rows[path]; ok {
		return rows
	}
	rows := readGzipCSV(t, path)
	csvCache.rows[path] = rows
	return rows
}

var csvCache = struct {
	sync.Mutex
	rows map[string][][]string
}{rows: map[string][][]string{}}

// A service that serves no request in some minutes has no latency then:
// a silence as long as ones its baseline window holds is that metric's
// own, and on_no_data counts only the ticks beyond it. Replayed with no
// change every 10 minutes over real sparse latency (Nezha's TrainTicket),
// 5 of 60 rollouts rolled back on "no data for 4 consecutive ticks" when
// every silent tick counted; now only a silence longer than the host's
// baseline held does (2).
func TestDryRunSparseLatencyIsNotNoData(t *testing.T) {
	spec := writeSpec(t, `name: sparse
targets:
  static: [svc-1, svc-2, svc-3, svc-4, svc-5, svc-6]
canary:
  hosts: 1
  monitor: 10m
waves:
  - {size: 100%}
apply:
  playbook: playbooks/site.yml
metrics:
  interval: 1m
  baseline: 2h
  queries:
    latency: {query: latency}
policies:
  - name: seed
    rollback_when: 'top_mean(hosts, 0.30) > 5'
`)
	rec, first, last := sparseRecording(t, filepath.Dir(spec))
	runs, noData := 0, 0
	for at := first + 7200; at <= last-1800; at += 600 {
		runs++
		code, out, errOut := rollguard(t, "dry-run", "-f", spec, "--metrics", rec, "--change-at", strconv.FormatInt(at, 10), "-q")
		if code != 0 && code != 3 {
			t.Fatalf("change at %d: exit %d\n%s%s", at, code, out, errOut)
		}
		if strings.Contains(out, "no data for") {
			noData++
			t.Logf("change at %d: %s", at, strings.TrimSpace(out))
		}
	}
	if runs != 60 || noData > 2 {
		t.Errorf("%d of %d no-change rollouts rolled back on no data, want at most 2 of 60", noData, runs)
	}
}

// bornRecording writes the m00 latency of JumpStarter services 00 to 09
// as a recording of query lat, hosts h01..h10, over rows [at-60, at+30) of
// the data, the change at row at. h01, the canary, was born 60 minutes
// before the change: its series begins 12 polls before it, and its first
// two polls are a cold start (x1.5); after the change it runs at step
// times its level. It returns the recording's path and the change's unix
// second.
func bornRecording(t *testing.T, dir string, at int, step float64) (string, int64) {
	t.Helper()
	services := make([]string, 10)
	for h := range services {
		services[h] = fmt.Sprintf("service%02d", h)
	}
	path := filepath.Join(dir, fmt.Sprintf("born-%d-%v.jsonl", at, step))
	change := jumpstarterRecording(t, path, "lat", "m00", services, at-60, at+30, at, func(h, i int, v float64) (float64, bool) {
		switch {
		case math.IsNaN(v) || (h == 0 && i < at-12):
			return v, false
		case h == 0 && i < at-10:
			return v * 1.5, true
		case h == 0 && i >= at:
			return v * step, true
		}
		return v, true
	})
	return path, change
}

// A canary born 60 minutes before the change (12 polls of its 4-hour
// baseline window) whose first two polls were a cold start within the
// warm-up (10 minutes, two polls): the warm-up is left out of its
// baseline, as after an apply, so x1.5 after the change rolls it back, and
// its no-change twin is promoted. With the cold start in its baseline, the
// canary's spread and self-calibration took it as normal and x1.5 was
// promoted.
func TestDryRunBornCanaryColdStartIsNotItsBaseline(t *testing.T) {
	spec := writeSpec(t, `name: born
targets:
  static: [h01, h02, h03, h04, h05, h06, h07, h08, h09, h10]
canary:
  hosts: 1
  monitor: 20m
waves:
  - {size: 50%, monitor: 20m}
  - {size: 100%, monitor: 20m}
apply:
  playbook: playbooks/site.yml
metrics:
  interval: 5m
  queries:
    lat: {query: lat, worse: higher}
detection:
  warmup: 10m
policies:
  - name: latency-regression
    rollback_when: 'fraction(hosts, .degraded) >= 0.3'
  - name: fleet-threshold
    rollback_when: 'top_mean(hosts, 0.30) > 5'
`)
	dir := filepath.Dir(spec)
	caught, promoted, n := 0, 0, 0
	for at := 700; at < 7000; at += 700 {
		n++
		for _, step := range []float64{1.5, 1} {
			rec, change := bornRecording(t, dir, at, step)
			code, out, errOut := rollguard(t, "dry-run", "-f", spec, "--metrics", rec, "--change-at", strconv.FormatInt(change, 10), "-q")
			switch {
			case code == 3 && step > 1:
				caught++
			case code == 0 && step == 1:
				promoted++
			case code != 0 && code != 3:
				t.Fatalf("row %d, x%v: exit %d\n%s%s", at, step, code, out, errOut)
			default:
				t.Logf("row %d, x%v: exit %d: %s", at, step, code, strings.TrimSpace(out))
			}
		}
	}
	t.Logf("x1.5 rolled back %d of %d, no change promoted %d of %d", caught, n, promoted, n)
	if caught < n-1 || promoted < n-1 {
		t.Errorf("x1.5 rolled back %d of %d, no change promoted %d of %d: want at least %d of each", caught, n, promoted, n, n-1)
	}
}

// A query that reads a counter without rate() draws a warning on stderr
// and in report.json and report.md, once, naming the query and a host; a
// flat series and a noisy gauge do not. The counter is JumpStarter's m18
// (a request count per poll, evaluation/testdata/jumpstarter, MIT) summed
// from a start that differs per host, the gauge its m00 latency, the flat
// series a constant. The warning changes no decision: the counter's
// baseline is the level it was judged as before.
func TestDryRunCounterWithoutRateWarns(t *testing.T) {
	spec := writeSpec(t, `name: counter
targets:
  static: [h01, h02, h03, h04]
canary:
  hosts: 1
  monitor: 10m
waves:
  - {size: 100%, monitor: 10m}
apply:
  playbook: playbooks/site.yml
metrics:
  interval: 5m
  queries:
    requests: {query: 'sum by (instance) (http_requests_total)', worse: lower}
    latency: {query: latency}
    queue: {query: queue_depth}
policies:
  - name: seed
    rollback_when: 'top_mean(hosts, 0.30) > 5'
`)
	dir := filepath.Dir(spec)
	const at = 2000
	var b strings.Builder
	var change int64
	for h := range 4 {
		rows := readGzipCSV(t, filepath.Join("evaluation/testdata/jumpstarter/hosts", fmt.Sprintf("service%02d.csv.gz", h)))
		req, lat := slices.Index(rows[0], "m18"), slices.Index(rows[0], "m00")
		var ts []int64
		var total, latency, flat []float64
		sum := float64(1e6 * (h + 1))
		for i := at - 60; i < at+30; i++ {
			row := rows[1+i]
			sec, _ := strconv.ParseInt(row[0], 10, 64)
			if i == at {
				change = sec
			}
			r, err1 := strconv.ParseFloat(row[req], 64)
			l, err2 := strconv.ParseFloat(row[lat], 64)
			if err1 != nil || err2 != nil {
				t.Fatalf("row %d: %v %v", i, err1, err2)
			}
			sum += r
			ts = append(ts, sec*1000)
			total, latency, flat = append(total, sum), append(latency, l), append(flat, 3)
		}
		host := fmt.Sprintf("h%02d", h+1)
		b.WriteString(exportLine(map[string]string{"__name__": "requests", "instance": host}, total, ts))
		b.WriteString(exportLine(map[string]string{"__name__": "latency", "instance": host}, latency, ts))
		b.WriteString(exportLine(map[string]string{"__name__": "queue", "instance": host}, flat, ts))
	}
	rec := filepath.Join(dir, "counter.jsonl")
	if err := os.WriteFile(rec, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	code, stdout, stderr := rollguard(t, "dry-run", "-f", spec, "--metrics", rec, "--change-at", strconv.FormatInt(change, 10), "-q", "--report-dir", out)
	if code != 0 && code != 3 {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	var warned []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, "reads as a counter") {
			warned = append(warned, l)
		}
	}
	if len(warned) != 1 || !strings.HasPrefix(warned[0], "rollguard: warning: query requests (sum by (instance) (http_requests_total)) reads as a counter: its baseline on h01 ") ||
		!strings.Contains(warned[0], "rate(") {
		t.Fatalf("want one counter warning naming requests and h01 with rate(...), got %d:\n%s", len(warned), stderr)
	}
	r := readReport(t, out)
	if len(r.Warnings) != 1 || "rollguard: warning: "+r.Warnings[0] != warned[0] {
		t.Errorf("report.json warnings %q, want the one printed", r.Warnings)
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil || !strings.Contains(string(md), "**Warning:** query requests") {
		t.Errorf("report.md lacks the warning (%v)", err)
	}
	html, err := os.ReadFile(filepath.Join(out, "report.html"))
	if err != nil || !strings.Contains(string(html), "Warning: query requests") {
		t.Errorf("report.html lacks the warning (%v)", err)
	}
}

// restartRecording is ten look-alike JumpStarter services (real 5-minute
// noise, the committed copy's metric m00) as h01..h10 over the 4 hours
// before row at and 100 minutes after, h01's exporter missing the poll
// right after the change (restarted with the apply: a staleness marker),
// and h01 changed by change(i, v) on the polls after it (i = 2 is the
// first it reports).
func restartRecording(t *testing.T, dir string, at int, change func(i int, v float64) float64) (string, int64) {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("restart-%d.jsonl", at))
	changeAt := jumpstarterRecording(t, path, "m00", "m00", jumpstarterServices, at-48, at+20, at, func(h, r int, v float64) (float64, bool) {
		if i := r - at; h == 0 && i == 1 {
			return math.NaN(), true
		} else if h == 0 && i > 1 {
			return change(i, v), true
		}
		return v, true
	})
	return path, changeAt
}

// A canary whose exporter restarts with the apply and misses the first
// poll after it, at 5-minute polls with a 10-minute canary: the period
// ends on the first poll it reports, and one poll never decides. x1.5 on
// it is rolled back once it has had the polls a decision needs (it passed
// on that one poll, and the rollout promoted: at these four offsets, and
// at 28 of 29 offsets 233 rows apart across the series, where 22 roll
// back now); its no-change twin,
// whose first poll is a x2 cold start (the one poll the 2m warm-up covers
// at 5m), promotes.
func TestDryRunRestartGapIsNoPass(t *testing.T) {
	spec := writeSpec(t, `name: restart
targets:
  static: [h01, h02, h03, h04, h05, h06, h07, h08, h09, h10]
canary:
  hosts: 1
  monitor: 10m
waves:
  - {size: 50%, monitor: 20m}
  - {size: 100%, monitor: 20m}
apply:
  playbook: playbooks/site.yml
metrics:
  interval: 5m
  queries:
    m00: {query: m00, worse: higher}
policies:
  - name: latency-regression
    rollback_when: 'fraction(hosts, .degraded) >= 0.3'
  - name: fleet-threshold
    rollback_when: 'top_mean(hosts, 0.30) > 5'
`)
	for _, at := range []int{300, 1232, 2630, 4261} {
		for _, tt := range []struct {
			name   string
			change func(i int, v float64) float64
			code   int
			want   string
		}{
			{"x1.5", func(_ int, v float64) float64 { return 1.5 * v }, 3, "fired in wave canary"},
			{"no change, x2 cold start", func(i int, v float64) float64 {
				if i == 2 {
					return 2 * v
				}
				return v
			}, 0, "Would promote"},
		} {
			rec, changeAt := restartRecording(t, filepath.Dir(spec), at, tt.change)
			code, out, errOut := rollguard(t, "dry-run", "-f", spec, "--metrics", rec, "--change-at", strconv.FormatInt(changeAt, 10))
			if code != tt.code || !strings.Contains(out, tt.want) {
				t.Errorf("row %d, %s: exit %d, want %d with %q\n%s%s", at, tt.name, code, tt.code, tt.want, lastLines(out, 12), errOut)
			}
		}
	}
}

// lastLines is s's last n lines.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n") + "\n"
}

// troughRecording writes a recording of JumpStarter's m18 (query latency,
// hosts h01..h10, one per jumpstarterServices service) over rows [from,
// to) of the committed copy, the first two hosts times factor over rows
// [bad, bad+12), and returns its path and the unix second of row bad.
func troughRecording(t *testing.T, dir string, from, to, bad int, factor float64) (string, int64) {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("trough-%d-%v.jsonl", bad, factor))
	at := jumpstarterRecording(t, path, "latency", "m18", jumpstarterServices, from, to, bad, func(h, i int, v float64) (float64, bool) {
		if h < 2 && i >= bad && i < bad+12 {
			v *= factor
		}
		return v, !math.IsNaN(v)
	})
	return path, at
}

// obPods are ten OnlineBoutique pods of the Nezha data set
// (evaluation/testdata/nezha, MIT; 1-minute polls), services whose p90
// latencies range from 4.6 ms to 0.5 s, as hosts h01-h10.
var obPods = []string{
	"adservice-5f6585d649-fnmft", "emailservice-55fdc5b988-f6xth", "paymentservice-9cdb6588f-554sm",
	"productcatalogservice-668d5f85fb-wckp8", "recommendationservice-6cfdd55578-gfj6q", "shippingservice-7b598fc7d-lmggd",
	"cartservice-579f59597d-wc2lz", "checkoutservice-578fcf4766-9csqn", "frontend-579b9bff58-t2dbm", "currencyservice-cf787dd48-vpjrd",
}

// obRecording writes to path a recording of the pods' server_latency_p90_s
// as query latency on hosts h01, h02, …, over rows [from, to) of the
// committed copy, each value of host index h at row i passed through f
// (a row without a value has no sample), and returns the unix second of
// row at.
func obRecording(t *testing.T, path string, from, to, at int, f func(h, i int, v float64) float64) int64 {
	t.Helper()
	files := make([]string, len(obPods))
	for h, pod := range obPods {
		files[h] = filepath.Join("evaluation/testdata/nezha/online_boutique/2022-08-22/pods", pod+".csv.gz")
	}
	return csvRecording(t, path, "latency", "server_latency_p90_s", files, from, to, at, func(h, i int, v float64) (float64, bool) {
		if math.IsNaN(v) {
			return 0, false
		}
		return f(h, i, v), true
	})
}

// obWaveSpec is a rollout of obPods at 1-minute polls: a canary of one pod,
// then waves of 50% and 100%, 10 minutes each, a 30-minute baseline and
// the README's share rule.
func obWaveSpec(t *testing.T) string {
	t.Helper()
	return writeSpec(t, `name: ob
targets:
  static: [h01, h02, h03, h04, h05, h06, h07, h08, h09, h10]
canary:
  hosts: 1
  monitor: 10m
waves:
  - {size: 50%, monitor: 10m}
  - {size: 100%, monitor: 10m}
apply:
  playbook: playbooks/site.yml
metrics:
  interval: 1m
  baseline: 30m
  queries:
    latency: {query: latency}
policies:
  - name: share
    rollback_when: 'fraction(hosts, .degraded) >= 0.3'
`)
}

// obApply is the row at which host index h of obWaveSpec is applied when
// the change is at row at.
func obApply(h, at int) int {
	switch {
	case h == 0:
		return at
	case h <= 5:
		return at + 10
	}
	return at + 20
}

// A cold start that outlasts the 2-minute warm-up: every pod's latency 2,
// 1.67 and 1.33 times its own on the 3 polls after its apply, then as it
// was (OnlineBoutique, 12 change times in the quiet window). The warm-up
// holds the first two; the third paired with the second made a burst on
// the pods whose latency barely moves, and 7 of 12 rolled back. A host
// whose every poll after the warm-up has fallen below the one before by
// more than the tolerance and its noise is settling, and no burst is made
// of its polls while it falls: 0 of 12. A step of 1.5 times on every pod
// from its apply is still rolled back (12 of 12 before and now), and the
// no-change twins promote (0 of 12 rolled back).
func TestDryRunColdStartPastTheWarmupPromotes(t *testing.T) {
	spec := obWaveSpec(t)
	counts := map[string]int{}
	const n = 12
	for k := range n {
		at := 330 + 70*k
		for _, shape := range []string{"no change", "cold start", "x1.5"} {
			rec := filepath.Join(filepath.Dir(spec), fmt.Sprintf("ob-%d-%s.jsonl", at, strings.ReplaceAll(shape, " ", "-")))
			sec := obRecording(t, rec, at-40, at+40, at, func(h, i int, v float64) float64 {
				j := i - obApply(h, at)
				switch {
				case shape == "cold start" && j >= 1 && j <= 3:
					return v * (1 + float64(4-j)/3)
				case shape == "x1.5" && j >= 1:
					return v * 1.5
				}
				return v
			})
			code, out, errOut := rollguard(t, "dry-run", "-f", spec, "--metrics", rec, "--change-at", strconv.FormatInt(sec, 10), "-q")
			if code != 0 && code != 3 {
				t.Fatalf("%s at row %d: exit %d\n%s%s", shape, at, code, out, errOut)
			}
			if code == 3 {
				counts[shape]++
				if shape != "x1.5" {
					t.Logf("%s at row %d: %s", shape, at, strings.TrimSpace(out))
				}
			}
		}
	}
	t.Logf("rolled back of %d: %v", n, counts)
	if counts["cold start"] > 1 || counts["no change"] > 1 || counts["x1.5"] < n-1 {
		t.Errorf("rolled back: cold start %d, no change %d, x1.5 %d of %d; want at most 1, at most 1, at least %d",
			counts["cold start"], counts["no change"], counts["x1.5"], n, n-1)
	}
}

// replicaSpec writes the ten replicas' rollout: 2 canaries monitored for
// canary, then the rest in one 30-minute wave, the seed rule.
func replicaSpec(t *testing.T, canary string) string {
	t.Helper()
	return writeSpec(t, `name: replicas
targets:
  static: [h01, h02, h03, h04, h05, h06, h07, h08, h09, h10]
canary:
  hosts: 2
  monitor: `+canary+`
waves:
  - {size: 100%, monitor: 30m}
apply:
  playbook: playbooks/site.yml
metrics:
  interval: 5m
  queries:
    latency: {query: latency}
policies:
  - name: seed
    rollback_when: 'top_mean(hosts, 0.30) > 5'
`)
}

// checkReplicaChanges replays the ten replicas (troughRecording) changed
// at row 288*day + row of each of 21 days, two canaries factor times worse
// for their hour-long stage beside a no-change twin, with the README's
// seed rule and a canary stage of the given monitor, and fails unless at
// least minCaught of the changes were caught and no twin rolled back;
// what names the changes in its messages.
func checkReplicaChanges(t *testing.T, what, canary string, row int, factor float64, minCaught int) {
	t.Helper()
	spec := replicaSpec(t, canary)
	caught, falseAlarms := 0, 0
	for day := 1; day <= 21; day++ {
		bad := 288*day + row
		for _, f := range []float64{1, factor} {
			rec, at := troughRecording(t, filepath.Dir(spec), bad-60, bad+30, bad, f)
			code, out, errOut := rollguard(t, "dry-run", "-f", spec, "--metrics", rec, "--change-at", strconv.FormatInt(at, 10), "-q")
			if code != 0 && code != 3 {
				t.Fatalf("day %d x%v: exit %d\n%s%s", day, f, code, out, errOut)
			}
			switch {
			case code == 3 && f == 1:
				falseAlarms++
				t.Logf("day %d, no change: %s", day, strings.TrimSpace(out))
			case code == 3:
				caught++
			}
		}
	}
	t.Logf("%s caught %d of 21, no-change rollouts rolled back %d", what, caught, falseAlarms)
	if caught < minCaught || falseAlarms > 0 {
		t.Errorf("%s caught %d of 21, no-change rollouts rolled back %d; want at least %d and 0", what, caught, falseAlarms, minCaught)
	}
}

// A change made on the daily rise: the same ten replicas changed at 07:00,
// when the fleet climbs through the hour, two canaries 1.2 times worse
// (twice the tolerance) for their hour-long stage. Against the host's own
// 4-hour baseline every host's hour reads worse (the rise), so the
// comparison with the untouched hosts decides; it compared the canary's
// polls taken back by the fleet's level with its baseline as observed,
// whose polls the rise spreads over the quiet night's values and the
// climbing morning's, and 1.2 times was inside that: 1 of 21 days rolled
// back. Its baseline is taken back by the fleet poll by poll now, as the
// window is (policies' didBaselines): 21 of 21. The no-change twins:
// 0 of 21 before and now.
func TestDryRunRiseChangeAgainstTheFleet(t *testing.T) {
	checkReplicaChanges(t, "rise changes", "1h", 84, 1.2, 18) // 07:00
}

// The same rise with the README's 10-minute canary at 5-minute polls: the
// warm-up's poll and one more, so only the burst can decide, on the two
// polls together, and the canaries 1.5 times the fleet's level (their
// ratio to the untouched hosts within 3% through the baseline) passed on
// every day: the burst's comparison with the fleet was bounded by the
// canary's own baseline, whose largest pair is the rise's top, twice its
// median. Bounded by the baseline taken back by the fleet poll by poll,
// as the window test's is: 21 of 21, the no-change twins 0 of 21 before
// and now.
func TestDryRunRiseStepOnATenMinuteCanary(t *testing.T) {
	checkReplicaChanges(t, "rise steps on a 10-minute canary", "10m", 84, 1.5, 18) // 07:00
}

// The trough change with the README's 10-minute canary: the warm-up's
// poll and one more, so only the burst can decide. The burst judged the
// canaries against their own median, which holds the evening, and 1.5
// times a trough value is under it: 0 of 21 days rolled back. It judges
// them against the stricter reference the CUSUM and the window test use
// (their median moved by the untouched hosts' fall, which they shared)
// now, and the comparison with the fleet must still agree: 18 of 21 (21
// with the read below). The no-change twins: 0 of 21 before and now.
func TestDryRunTroughStepOnATenMinuteCanary(t *testing.T) {
	checkReplicaChanges(t, "trough steps on a 10-minute canary", "10m", 12, 1.5, 18) // 01:00
}

// Deeper in the night (02:00), the canaries fell with the fleet through
// their 4-hour baseline, whose spread as observed is the fall's: 1.5
// times the fleet's level is inside the burst's bound, against the median
// or the stricter reference alike, and 0 of 21 days rolled back. The
// burst's comparison with the canaries' own history also reads each poll
// taken back by the untouched hosts' level just before the change,
// against the baseline taken back by them (the window test's second
// read): 21 of 21. The no-change twins: 0 of 21 before and now.
func TestDryRunSharedDriftStepOnATenMinuteCanary(t *testing.T) {
	checkReplicaChanges(t, "steps after a shared fall on a 10-minute canary", "10m", 24, 1.5, 18) // 02:00
}

// A traffic surge that comes with the change on every host, canaries and
// untouched alike, each by its own share (v times s^a, a from 0.7 to 1.3
// across the ten replicas, the canaries' 1.15 and 1.05, inside the
// untouched hosts' range), made at 07:00 with the 10-minute canary:
// nothing changed on the canaries that did not on the fleet, so the canary
// stage may not roll back. Bounded by the relative baseline's spread
// alone, the burst against the fleet read the canaries' share as a step:
// 23 of the 42 canary stages rolled back (c140bea); bounded also by how
// far the untouched hosts' own moves spread at that poll, 1 (×1.3 on day
// 14), as none before the burst against the fleet. The 100% wave after
// it has no untouched host left, and a doubling of every host there is a
// doubling (4 of 21 at ×2, before and now): logged, not counted.
func TestDryRunSurgeOnTheRise(t *testing.T) {
	// h01-h02 the canaries, h03-h10 the untouched hosts.
	surgeShares := []float64{1.15, 1.05, 0.7, 0.78, 0.87, 0.95, 1, 1.1, 1.2, 1.3}
	spec := replicaSpec(t, "10m")
	total := 0
	for _, surge := range []float64{1.3, 2} {
		rolledBack := 0
		for day := 1; day <= 21; day++ {
			at := 288*day + 84 // 07:00
			path := filepath.Join(filepath.Dir(spec), fmt.Sprintf("surge-%d-%v.jsonl", at, surge))
			sec := jumpstarterRecording(t, path, "latency", "m18", jumpstarterServices, at-60, at+30, at, func(h, i int, v float64) (float64, bool) {
				if i >= at {
					v *= math.Pow(surge, surgeShares[h])
				}
				return v, !math.IsNaN(v)
			})
			code, out, errOut := rollguard(t, "dry-run", "-f", spec, "--metrics", path, "--change-at", strconv.FormatInt(sec, 10), "-q")
			switch code {
			case 0:
			case 3:
				t.Logf("x%v day %d: %s", surge, day, strings.TrimSpace(out))
				if strings.Contains(out, "in wave canary") {
					rolledBack++
				}
			default:
				t.Fatalf("x%v day %d: exit %d\n%s%s", surge, day, code, out, errOut)
			}
		}
		total += rolledBack
	}
	if total > 1 {
		t.Errorf("a surge on every host at 07:00 rolled back %d of 42 canary stages, want at most 1", total)
	}
}

// A change made in the daily trough: ten replicas of one service (real
// JumpStarter noise), two canaries 1.5 times worse for their hour-long
// stage, changed at 01:00, when the fleet has fallen to about 0.6 of the
// 4-hour baseline's median (the baseline holds the evening). 1.5 times a
// trough value is still under the canary's own median, so every poll's
// excess over its own baseline was negative and 0 of 21 days rolled back;
// against its median moved by the untouched hosts' fall just before the
// change (it fell with them) the canaries are degraded: 19 of 21, and 21
// since the burst reads the stricter reference too. The no-change twins
// must not roll back (0 of 21, before and now).
func TestDryRunTroughChangeAgainstTheFleet(t *testing.T) {
	checkReplicaChanges(t, "trough changes", "1h", 12, 1.5, 15) // 01:00
}
