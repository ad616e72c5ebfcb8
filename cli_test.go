package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/rollguard/rollguard/report"
)

// Every command's help, hidden ones and subcommands included, shows
// examples.
func TestEveryCommandHasExamples(t *testing.T) {
	var walk func(c *cobra.Command)
	seen := 0
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			walk(sub)
		}
		seen++
		path := strings.Fields(c.CommandPath())[1:]
		root := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(append(path, "--help"))
		if err := root.Execute(); err != nil {
			t.Fatalf("%s --help: %v", c.CommandPath(), err)
		}
		help := out.String()
		i := strings.Index(help, "Examples:\n")
		if i < 0 || !strings.Contains(help[i:], "rollguard "+strings.Join(path, " ")) {
			t.Errorf("%s --help has no Examples section using the command:\n%s", c.CommandPath(), help)
		}
	}
	walk(newRoot())
	if seen < 12 {
		t.Errorf("walked %d commands, want every one (at least 12)", seen)
	}
}

// The "Exit codes:" paragraph of a command's help names every exit code
// the command-line contract (README, Commands and exit codes) gives it.
func TestHelpNamesEveryExitCode(t *testing.T) {
	for cmd, codes := range map[string][]string{
		"dry-run": {"0", "1", "2", "3", "4"},
		"run":     {"0", "1", "2", "3", "4"},
		"plan":    {"0", "1", "2", "4"},
	} {
		root := newRoot()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs([]string{cmd, "--help"})
		if err := root.Execute(); err != nil {
			t.Fatalf("%s --help: %v", cmd, err)
		}
		help := out.String()
		i := strings.Index(help, "Exit codes:")
		if i < 0 {
			t.Errorf("%s --help has no Exit codes paragraph", cmd)
			continue
		}
		para, _, _ := strings.Cut(help[i:], "\n\n")
		for _, code := range codes {
			if !regexp.MustCompile(`[:,]\s+` + code + ` `).MatchString(para) {
				t.Errorf("%s --help: exit code %s missing from %q", cmd, code, para)
			}
		}
	}
}

func TestVersion(t *testing.T) {
	code, byFlag, _ := rollguard(t, "--version")
	_, byCommand, _ := rollguard(t, "version")
	if code != 0 || !regexp.MustCompile(`^rollguard \S+\n$`).MatchString(byFlag) || byFlag != byCommand {
		t.Errorf("--version: exit %d, %q; version: %q: want the same one line", code, byFlag, byCommand)
	}
	f := func(ldflags, module, want string) {
		t.Helper()
		bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/rollguard/rollguard", Version: module}}
		if got := versionFrom(ldflags, bi); got != want {
			t.Errorf("versionFrom(%q, module %q) = %q, want %q", ldflags, module, got, want)
		}
	}
	f("v1.3.0", "v1.2.0", "v1.3.0") // -ldflags -X main.version wins
	f("", "v1.2.0", "v1.2.0")       // go install …@v1.2.0
	f("", "v0.0.0-20241129-abcdef", "v0.0.0-20241129-abcdef")
	f("", "(devel)", "dev") // go build without VCS stamping
	if got := versionFrom("", nil); got != "dev" {
		t.Errorf("versionFrom without build info = %q, want dev", got)
	}
}

// --output json prints exactly one JSON document on stdout; the progress
// goes to stderr.
func TestOutputJSON(t *testing.T) {
	decode := func(t *testing.T, out string, v any) {
		t.Helper()
		dec := json.NewDecoder(strings.NewReader(out))
		if err := dec.Decode(v); err != nil {
			t.Fatalf("stdout is not JSON: %v\n%s", err, out)
		}
		if dec.More() {
			t.Fatalf("stdout holds more than one document:\n%s", out)
		}
	}
	t.Run("validate", func(t *testing.T) {
		code, out, _ := rollguard(t, "validate", "-f", "testdata/dryrun/latency-50.yaml", "-o", "json")
		var doc validDoc
		decode(t, out, &doc)
		if code != 0 || !doc.Valid || doc.Rollout != "web-tuning-latency-50" || strings.Join(doc.Queries, ",") != "latency_p95,error_rate,cpu" {
			t.Errorf("exit %d, %+v: want valid, the rollout and its queries in the spec's order", code, doc)
		}
		code, out, errOut := rollguard(t, "validate", "-f", "runner/testdata/many-bad.yaml", "-o", "json")
		var bad errorDoc
		decode(t, out, &bad)
		if code != 2 || bad.ExitCode != 2 || len(bad.Problems) < 5 || bad.Problems[0].Line == 0 || bad.Problems[0].File != "runner/testdata/many-bad.yaml" {
			t.Errorf("exit %d, %+v: want exit 2 and every problem with its file and line", code, bad)
		}
		if !strings.Contains(errOut, "many-bad.yaml:") {
			t.Errorf("the problems are not on stderr too: %q", errOut)
		}
	})
	t.Run("validate warns of a short baseline", func(t *testing.T) {
		data, err := os.ReadFile("testdata/dryrun/latency-50.yaml")
		if err != nil {
			t.Fatal(err)
		}
		abs, err := filepath.Abs("testdata")
		if err != nil {
			t.Fatal(err)
		}
		spec := strings.ReplaceAll(strings.Replace(string(data), "baseline: 60m", "baseline: 10m", 1), "../", abs+"/")
		file := filepath.Join(t.TempDir(), "short.yaml")
		if err := os.WriteFile(file, []byte(spec), 0o644); err != nil {
			t.Fatal(err)
		}
		warning := file + ":21:13: warning: metrics.baseline 10m holds 10 poll(s) at metrics.interval 1m, fewer than 24"
		code, out, errOut := rollguard(t, "validate", "-f", file)
		if code != 0 || !strings.HasPrefix(out, warning) || !strings.Contains(out, file+": valid:") || errOut != "" {
			t.Errorf("exit %d, stdout %q, stderr %q: want exit 0, the warning at metrics.baseline, then valid", code, out, errOut)
		}
		code, out, errOut = rollguard(t, "validate", "-f", file, "-o", "json")
		var doc validDoc
		decode(t, out, &doc)
		if code != 0 || !doc.Valid || len(doc.Warnings) != 1 || doc.Warnings[0].Line != 21 || doc.Warnings[0].Column != 13 ||
			!strings.HasPrefix(errOut, warning) {
			t.Errorf("exit %d, %+v, stderr %q: want valid, one warning at 21:13 in the document and on stderr", code, doc, errOut)
		}
		code, out, errOut = rollguard(t, "validate", "-f", "testdata/dryrun/latency-50.yaml")
		if code != 0 || strings.Contains(out+errOut, "warning") {
			t.Errorf("exit %d, %q %q: a 60-poll baseline draws no warning", code, out, errOut)
		}
	})
	t.Run("plan", func(t *testing.T) {
		code, out, _ := rollguard(t, "plan", "-f", "testdata/dryrun/latency-50.yaml", "-o", "json")
		_, legacy, _ := rollguard(t, "plan", "-f", "testdata/dryrun/latency-50.yaml", "--json")
		var plan struct {
			Rollout string `json:"rollout"`
			Waves   []struct {
				Name    string   `json:"name"`
				Hosts   []string `json:"hosts"`
				Monitor string   `json:"monitor"`
			} `json:"waves"`
		}
		decode(t, out, &plan)
		if code != 0 || out != legacy || plan.Rollout != "web-tuning-latency-50" || len(plan.Waves) != 3 || plan.Waves[0].Name != "canary" || plan.Waves[0].Monitor == "" {
			t.Errorf("exit %d, %+v (same as --json: %v)", code, plan, out == legacy)
		}
	})
	t.Run("dry-run", func(t *testing.T) {
		dir := t.TempDir()
		code, out, errOut := rollguard(t, "dry-run", "-f", "testdata/dryrun/latency-50.yaml", "--metrics", "testdata/recordings/latency-50.jsonl",
			"--change-at", "2024-01-01T12:00:00Z", "--report-dir", dir, "-o", "json")
		var r report.Report
		decode(t, out, &r)
		if code != 3 || r.Outcome != report.OutcomeRolledBack || len(r.Hosts) != 10 {
			t.Errorf("exit %d, outcome %q, %d hosts: want 3, rolled_back, 10 hosts", code, r.Outcome, len(r.Hosts))
		}
		written, err := os.ReadFile(dir + "/report.json")
		var w report.Report
		if err != nil || json.Unmarshal(written, &w) != nil || w.RunID != r.RunID || len(w.Decisions) != len(r.Decisions) {
			t.Errorf("stdout is not the report.json written (%v)", err)
		}
		if !strings.Contains(errOut, "Would roll back") || !strings.Contains(errOut, "canary") {
			t.Errorf("the timeline and the verdict are not on stderr: %q", errOut)
		}
	})
	t.Run("error document", func(t *testing.T) {
		code, out, errOut := rollguard(t, "dry-run", "-f", "testdata/dryrun/good.yaml", "--metrics", "testdata/recordings/nope.jsonl", "--change-at", "1704110400", "-o", "json")
		var doc errorDoc
		decode(t, out, &doc)
		if code != 2 || doc.ExitCode != 2 || !strings.Contains(doc.Error, "nope.jsonl") || !strings.Contains(errOut, "nope.jsonl") {
			t.Errorf("exit %d, %+v, stderr %q: want exit 2 naming the file in both", code, doc, errOut)
		}
	})
	t.Run("bad format", func(t *testing.T) {
		code, _, errOut := rollguard(t, "validate", "-f", "testdata/dryrun/good.yaml", "-o", "yaml")
		if code != 2 || !strings.Contains(errOut, `--output "yaml": want text or json`) {
			t.Errorf("exit %d, %q", code, errOut)
		}
	})
}

// A --change-at the recording cannot replay is bad input naming the
// recording's time range, not a verdict on missing data.
func TestChangeAtOutsideTheRecording(t *testing.T) {
	for _, at := range []string{"2024-02-01T12:00:00Z", "2024-01-01T10:00:00Z", "2023-12-31T23:00:00Z"} {
		code, out, errOut := rollguard(t, "dry-run", "-f", "testdata/dryrun/latency-50.yaml", "--metrics", "testdata/recordings/latency-50.jsonl", "--change-at", at)
		want := "--change-at " + at + " is outside the recording, which runs from 2024-01-01T10:00:00Z to 2024-01-01T14:00:00Z"
		if code != 2 || !strings.Contains(errOut, want) || strings.Contains(out, "Would") {
			t.Errorf("--change-at %s: exit %d, stderr %q: want 2 and %q, no verdict", at, code, errOut, want)
		}
	}
}

// A live run's apply takes time (a playbook over many hosts takes
// minutes), and its stage watches the monitoring period after the apply
// ends. --run-report replays that timeline: the latency-50 recording,
// whose canary rises from 12:01, applied from 11:50 to 12:00, is caught in
// the canary at 12:03, while a replay whose apply takes no time watches
// 11:50-12:00 in the canary and promotes.
func TestDryRunReplaysTheRunsTimeline(t *testing.T) {
	args := []string{"dry-run", "-f", "testdata/dryrun/latency-50.yaml", "--metrics", "testdata/recordings/latency-50.jsonl"}
	if code, out, errOut := rollguard(t, append(args, "--change-at", "2024-01-01T11:50:00Z", "-q")...); code != 0 {
		t.Fatalf("--change-at 11:50: exit %d, want 0 (the canary watched only polls before the rise)\n%s%s", code, out, errOut)
	}
	runReport := filepath.Join(t.TempDir(), "report.json")
	doc := `{"run_id": "20240101T115000Z-1a2b3c4d", "waves": [
  {"name": "canary", "apply_started_at": "2024-01-01T11:50:00Z", "apply_ended_at": "2024-01-01T12:00:00Z"},
  {"name": "wave-1", "apply_started_at": null}]}`
	if err := os.WriteFile(runReport, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := rollguard(t, append(args, "--run-report", runReport, "-o", "json")...)
	var r report.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("exit %d: %v\n%s%s", code, err, out, errOut)
	}
	if code != 3 || r.Outcome != report.OutcomeRolledBack || len(r.Waves) == 0 || r.Waves[0].Outcome != report.WaveFired {
		t.Fatalf("--run-report: exit %d, outcome %q, want 3 and the canary fired\n%s", code, r.Outcome, errOut)
	}
	c := r.Waves[0]
	if c.ApplyStartedAt == nil || c.ApplyEndedAt == nil ||
		!c.ApplyStartedAt.Equal(time.Date(2024, 1, 1, 11, 50, 0, 0, time.UTC)) || !c.ApplyEndedAt.Equal(time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("canary applied from %v to %v, want the run's 11:50 to 12:00", c.ApplyStartedAt, c.ApplyEndedAt)
	}
	var fired time.Time
	for _, d := range r.Decisions {
		if d.Fired {
			fired = d.At
			break
		}
	}
	if want := time.Date(2024, 1, 1, 12, 3, 0, 0, time.UTC); !fired.Equal(want) {
		t.Errorf("fired at %v, want %v\n%s", fired, want, errOut)
	}
}

// A replayed wave starts when the run's did, after what the run spent
// between waves, and its baseline is the window before that start; a wave
// the run did not reach follows the one before it at once.
func TestDryRunReplaysTheRunsWaveStarts(t *testing.T) {
	runReport := filepath.Join(t.TempDir(), "report.json")
	doc := `{"run_id": "20240101T120000Z-1a2b3c4d", "waves": [
  {"name": "canary", "apply_started_at": "2024-01-01T12:00:00Z", "apply_ended_at": "2024-01-01T12:02:00Z"},
  {"name": "wave-1", "apply_started_at": "2024-01-01T12:20:00Z", "apply_ended_at": "2024-01-01T12:21:00Z"}]}`
	if err := os.WriteFile(runReport, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := rollguard(t, "dry-run", "-f", "testdata/dryrun/good.yaml", "--metrics", "testdata/recordings/good.jsonl", "--run-report", runReport, "-o", "json")
	var r report.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 || len(r.Waves) != 3 {
		t.Fatalf("exit %d (%v), want 0 and 3 waves\n%s%s", code, err, out, errOut)
	}
	at := func(h, m int) time.Time { return time.Date(2024, 1, 1, h, m, 0, 0, time.UTC) }
	for i, want := range []struct{ start, from, applied, finished time.Time }{
		{at(12, 0), at(11, 0), at(12, 2), at(12, 12)},
		{at(12, 20), at(11, 20), at(12, 21), at(12, 31)},
		{at(12, 31), at(11, 31), at(12, 31), at(12, 41)},
	} {
		w := r.Waves[i]
		if w.ApplyStartedAt == nil || w.BaselineFrom == nil || w.ApplyEndedAt == nil || w.FinishedAt == nil ||
			!w.ApplyStartedAt.Equal(want.start) || !w.BaselineFrom.Equal(want.from) || !w.ApplyEndedAt.Equal(want.applied) || !w.FinishedAt.Equal(want.finished) {
			t.Errorf("%s: baseline from %v, apply %v to %v, finished %v; want %v, %v to %v, %v", w.Name,
				w.BaselineFrom, w.ApplyStartedAt, w.ApplyEndedAt, w.FinishedAt, want.from, want.start, want.applied, want.finished)
		}
	}
}

// A recorded apply that outlasted this spec's apply.timeout is stopped at
// the timeout, as a run under this spec would have stopped it: the apply is
// broken and the wave's hosts are reverted.
func TestDryRunReplayedApplyPastTheTimeout(t *testing.T) {
	runReport := filepath.Join(t.TempDir(), "report.json")
	doc := `{"run_id": "20240101T110000Z-1a2b3c4d", "waves": [
  {"name": "canary", "apply_started_at": "2024-01-01T11:00:00Z", "apply_ended_at": "2024-01-01T11:45:00Z"}]}`
	if err := os.WriteFile(runReport, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := rollguard(t, "dry-run", "-f", "testdata/dryrun/latency-50.yaml", "--metrics", "testdata/recordings/latency-50.jsonl", "--run-report", runReport, "-o", "json")
	var r report.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("exit %d: %v\n%s%s", code, err, out, errOut)
	}
	if code != 3 || r.Rollback == nil || r.Rollback.Trigger != report.TriggerApplyTimeout || !slices.Equal(r.Rollback.Hosts, []string{"web-1"}) ||
		!strings.Contains(errOut, "apply.timeout (30m) passed: stopping the playbook") {
		t.Fatalf("exit %d, rollback %+v: want 3, the canary reverted on apply-timeout\n%s", code, r.Rollback, errOut)
	}
	if at := r.Rollback.StartedAt; !at.Equal(time.Date(2024, 1, 1, 11, 30, 0, 0, time.UTC)) {
		t.Errorf("rollback started at %v, want 11:30, apply.timeout after the apply's start", at)
	}
}

// --run-report's problems are bad input that name the file (and the line
// and column of a document that is not JSON), before anything is replayed.
func TestDryRunRunReportRefused(t *testing.T) {
	dir := t.TempDir()
	write := func(name, doc string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.json", `{"run_id": "r1", "waves": [{"name": "canary", "apply_started_at": "2024-01-01T12:00:00Z"}]}`)
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"with --change-at", []string{"--run-report", good, "--change-at", "2024-01-01T12:00:00Z"},
			"--change-at and --run-report both say when the first apply started: give one"},
		{"missing", []string{"--run-report", filepath.Join(dir, "nope.json")}, "run report: open " + filepath.Join(dir, "nope.json")},
		{"not JSON", []string{"--run-report", write("bad.json", "{\"run_id\": \"r1\",\n  \"waves\": [}\n")},
			"run report " + filepath.Join(dir, "bad.json") + ":2:13: invalid character '}'"},
		{"a dry run's", []string{"--run-report", write("dry.json", `{"run_id": "dry-1a2b3c4d", "waves": [{"name": "canary", "apply_started_at": "2024-01-01T12:00:00Z"}]}`)},
			"run dry-1a2b3c4d is a dry run, whose applies took no time: give a live run's report.json"},
		{"nothing started", []string{"--run-report", write("none.json", `{"run_id": "r1", "waves": [{"name": "canary", "apply_started_at": null}]}`)},
			"no wave started (no apply_started_at): nothing to replay"},
		{"another plan", []string{"--run-report", write("other.json", `{"run_id": "r1", "waves": [{"name": "canary", "apply_started_at": "2024-01-01T12:00:00Z"}, {"name": "west", "apply_started_at": "2024-01-01T12:10:00Z"}]}`)},
			"--run-report " + filepath.Join(dir, "other.json") + ": its wave west is not in this plan, whose waves are canary, wave-1, wave-2"},
		{"apply ends before it starts", []string{"--run-report", write("order.json", `{"run_id": "r1", "waves": [{"name": "canary", "apply_started_at": "2024-01-01T12:00:00Z", "apply_ended_at": "2024-01-01T11:59:00Z"}]}`)},
			"wave canary: apply_ended_at 2024-01-01T11:59:00Z is before apply_started_at 2024-01-01T12:00:00Z"},
		{"outside the recording", []string{"--run-report", write("late.json", `{"run_id": "r1", "waves": [{"name": "canary", "apply_started_at": "2024-02-01T12:00:00Z"}]}`)},
			"--run-report's first apply_started_at 2024-02-01T12:00:00Z is outside the recording"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := rollguard(t, append([]string{"dry-run", "-f", "testdata/dryrun/latency-50.yaml", "--metrics", "testdata/recordings/latency-50.jsonl"}, tt.args...)...)
			if code != 2 || !strings.Contains(errOut, tt.want) || strings.Contains(out, "Would") {
				t.Errorf("exit %d, stdout %q, stderr %q: want 2 and %q, no verdict", code, out, errOut, tt.want)
			}
		})
	}
}

// A change less than metrics.baseline after the recording's start is
// replayed, with a warning that says how many polls the baseline holds.
func TestDryRunWarnsOfAShortRecording(t *testing.T) {
	const warning = "rollguard: warning: the recording starts 30m before --change-at and metrics.baseline is 1h: the first stage's baseline holds 30 poll(s) at 1m, not 60"
	for _, tt := range []struct {
		at   string
		warn bool
	}{{"2024-01-01T10:30:00Z", true}, {"2024-01-01T11:00:00Z", false}, {"2024-01-01T12:00:00Z", false}} {
		code, out, errOut := rollguard(t, "dry-run", "-f", "testdata/dryrun/good.yaml", "--metrics", "testdata/recordings/good.jsonl", "--change-at", tt.at)
		if code != 0 || !strings.Contains(out, "Would promote") || strings.Contains(errOut, warning) != tt.warn || !tt.warn && errOut != "" {
			t.Errorf("--change-at %s: exit %d, stdout %q, stderr %q: want a promotion, warning %v", tt.at, code, out, errOut, tt.warn)
		}
	}
}

// A --change-at whose stages run past the recording's end: the polls past
// it have no data, and dry-run says so before its verdict (the good
// recording is then rolled back on no data in its last wave).
func TestDryRunWarnsOfARecordingThatEndsEarly(t *testing.T) {
	const warning = "rollguard: warning: the recording ends 25m after --change-at, and the rollout's 3 stage(s) run 30m: the polls past its end have no data, and on_no_data decides the verdict there"
	for _, tt := range []struct {
		at   string
		code int
	}{{"2024-01-01T13:35:00Z", 3}, {"2024-01-01T13:30:00Z", 0}} {
		code, out, errOut := rollguard(t, "dry-run", "-q", "-f", "testdata/dryrun/good.yaml", "--metrics", "testdata/recordings/good.jsonl", "--change-at", tt.at)
		if code != tt.code || strings.Contains(errOut, warning) != (tt.code == 3) {
			t.Errorf("--change-at %s: exit %d, stdout %q, stderr %q: want exit %d, warning %v", tt.at, code, out, errOut, tt.code, tt.code == 3)
		}
	}
}

// The verdict is coloured on a terminal only, never under NO_COLOR or
// TERM=dumb, never into a pipe or a file.
func TestVerdictColour(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	var buf bytes.Buffer
	for _, tc := range []struct {
		name string
		on   bool
	}{
		{"pipe", colourful(w, env())},
		{"buffer", colourful(&buf, env())},
		{"NO_COLOR on a pipe", colourful(w, env("NO_COLOR", "1"))},
		{"TERM=dumb", colourful(w, env("TERM", "dumb"))},
	} {
		if tc.on {
			t.Errorf("%s: colour on", tc.name)
		}
	}
	tty, _ := openPTY(t)
	if !colourful(tty, env()) || colourful(tty, env("NO_COLOR", "1")) {
		t.Errorf("on a terminal: colour %v, under NO_COLOR %v; want on, off", colourful(tty, env()), colourful(tty, env("NO_COLOR", "1")))
	}
	// The binary with its stdout on a terminal: the verdict in red,
	// and plain under NO_COLOR.
	onTerminal := func(env ...string) string {
		t.Helper()
		tty, ctl := openPTY(t)
		cmd := exec.Command(binary, "dry-run", "-q", "-f", "testdata/dryrun/latency-50.yaml", "--metrics", "testdata/recordings/latency-50.jsonl", "--change-at", "2024-01-01T12:00:00Z")
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdout = tty
		if err := cmd.Run(); cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 3 {
			t.Fatalf("dry-run on a terminal: %v, want exit 3", err)
		}
		return readPTY(tty, ctl)
	}
	if out := onTerminal("NO_COLOR=", "TERM=xterm"); !strings.Contains(out, "\x1b[1;31mWould roll back\x1b[0m") {
		t.Errorf("no red verdict on a terminal: %q", out)
	}
	if out := onTerminal("NO_COLOR=1", "TERM=xterm"); strings.Contains(out, "\x1b[") || !strings.Contains(out, "Would roll back") {
		t.Errorf("under NO_COLOR on a terminal: %q, want the verdict without escape codes", out)
	}
	if got := paint(true, report.OutcomeRolledBack, "Rolled back"); got != "\x1b[1;31mRolled back\x1b[0m" {
		t.Errorf("paint = %q", got)
	}
	if got := paint(false, report.OutcomeRolledBack, "Rolled back"); got != "Rolled back" {
		t.Errorf("paint without colour = %q", got)
	}
	_, out, _ := rollguard(t, "dry-run", "-f", "testdata/dryrun/latency-50.yaml", "--metrics", "testdata/recordings/latency-50.jsonl", "--change-at", "2024-01-01T12:00:00Z", "-q")
	if strings.Contains(out, "\x1b[") {
		t.Errorf("escape codes in output to a pipe: %q", out)
	}
}

// openPTY opens a pseudo-terminal: tty is its terminal side, what a
// person's terminal is to rollguard; ctl reads what was written to it.
func openPTY(t *testing.T) (tty, ctl *os.File) {
	t.Helper()
	ctl, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctl.Close() })
	if err := unix.IoctlSetPointerInt(int(ctl.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ctl.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	return tty, ctl
}

// readPTY closes the terminal side and returns everything written to it
// (reading ctl ends with EIO once no terminal side is open).
func readPTY(tty, ctl *os.File) string {
	tty.Close()
	var out bytes.Buffer
	buf := make([]byte, 4096)
	for {
		n, err := ctl.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			return out.String()
		}
	}
}

// history only reads: where no run has written, it says there is no
// history, for the rollout and for one host, and creates no state
// directory (a read-only checkout works too).
func TestHistoryChangesNothing(t *testing.T) {
	dir := t.TempDir()
	spec := filepath.Join(dir, "rollout.yaml")
	files := map[string]string{
		"site.yml": "- hosts: all\n  tasks: []\n",
		"rollout.yaml": `name: web
targets: {static: [web-1, web-2]}
apply: {playbook: site.yml}
metrics:
  queries: {latency_p95: {query: up}}
policies:
  - {name: p, rollback_when: 'top_mean(hosts, 0.30) > 5'}
`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{}, {"--host", "web-1"}, {"--json"}, {"--host", "web-1", "--json"}} {
		code, out, errOut := rollguard(t, append([]string{"history", "-f", spec}, args...)...)
		if code != 0 {
			t.Fatalf("history %v: exit %d: %s", args, code, errOut)
		}
		want := "no history yet for rollout \"web\""
		if len(args) > 0 && args[0] == "--host" {
			want = "no history yet for host \"web-1\" of rollout \"web\""
		}
		if slices.Contains(args, "--json") {
			var doc struct{ Hosts map[string][]any }
			if err := json.Unmarshal([]byte(out), &doc); err != nil || len(doc.Hosts["web-1"]) != 0 {
				t.Errorf("history %v: %q (%v), want no record", args, out, err)
			}
		} else if !strings.Contains(out, want) {
			t.Errorf("history %v printed %q, want %q", args, out, want)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(files) {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("history left %v in the spec's directory, want only %d files it had", names, len(files))
	}
}

// A policy whose expression never changes (`rollback_when: true`, inline
// or in a policy file) is valid and warned about where it is written:
// validate prints the warning and exits 0, -o json lists it, and plan
// prints it on stderr, as every command that loads the spec does.
func TestConstantPolicyIsWarnedAbout(t *testing.T) {
	dir, playbook := t.TempDir(), sitePlaybook(t)
	files := map[string]string{
		"rollout.yaml": "name: web\ntargets: {static: [web-1, web-2]}\napply: {playbook: " + playbook + ", version: v1}\n" +
			"metrics:\n  queries: {q: {query: up}}\npolicies:\n  - name: always\n    rollback_when: true\n  - file: never.yaml\n" +
			"  - {name: fine, rollback_when: 'top_mean(hosts, 0.30) > 5'}\n",
		"never.yaml": "name: never\nhost_rollback_when: '1 > 2'\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	spec := filepath.Join(dir, "rollout.yaml")
	const reads = "it reads nothing of the rollout (hosts, host, fleet, wave, phase, elapsed), so the policy "
	want := spec + `:8:20: warning: rollback_when of policy "always" is always true: ` + reads + "rolls back every rollout\n" +
		filepath.Join(dir, "never.yaml") + `:2:22: warning: host_rollback_when of policy "never" is always false: ` + reads + "never reverts a host\n"
	code, out, errOut := rollguard(t, "validate", "-f", spec)
	if code != 0 || !strings.HasPrefix(out, want) || !strings.Contains(out, spec+": valid:") || errOut != "" {
		t.Errorf("validate: exit %d, stdout %q, stderr %q; want exit 0, then\n%s", code, out, errOut, want)
	}
	code, out, _ = rollguard(t, "validate", "-f", spec, "-o", "json")
	var doc validDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != 0 || !doc.Valid || len(doc.Warnings) != 2 ||
		doc.Warnings[0].Line != 8 || doc.Warnings[0].Column != 20 || doc.Warnings[1].File != filepath.Join(dir, "never.yaml") {
		t.Errorf("validate -o json: exit %d, %+v (%v); want valid with both warnings placed", code, doc, err)
	}
	code, _, errOut = rollguard(t, "plan", "-f", spec)
	if code != 0 || !strings.HasPrefix(errOut, want) {
		t.Errorf("plan: exit %d, stderr %q; want exit 0 and the warnings", code, errOut)
	}
}
