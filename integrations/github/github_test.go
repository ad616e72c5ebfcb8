package github

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// env is a fake environment.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// parseOutputs reads a $GITHUB_OUTPUT file the way the Actions runner
// does: name=value lines and name<<DELIMITER blocks.
func parseOutputs(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		if name, delim, ok := strings.Cut(line, "<<"); ok && !strings.Contains(name, "=") {
			var val []string
			closed := false
			for sc.Scan() {
				if sc.Text() == delim {
					closed = true
					break
				}
				val = append(val, sc.Text())
			}
			if !closed {
				t.Fatalf("output %s: delimiter %s never closes", name, delim)
			}
			out[name] = strings.Join(val, "\n")
			continue
		}
		name, val, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("bad output line %q", line)
		}
		out[name] = val
	}
	return out
}

func TestInput(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		in   string
		want string
	}{
		{"plain, trimmed", map[string]string{"INPUT_SPEC": "  rollout.yaml\n"}, "spec", "rollout.yaml"},
		{"hyphen kept, as the runner sets it", map[string]string{"INPUT_REPORT-DIR": "out"}, "report-dir", "out"},
		{"underscore fallback", map[string]string{"INPUT_REPORT_DIR": "out2"}, "report-dir", "out2"},
		{"hyphenated wins over fallback", map[string]string{"INPUT_REPORT-DIR": "a", "INPUT_REPORT_DIR": "b"}, "report-dir", "a"},
		{"spaces become underscores", map[string]string{"INPUT_MY_INPUT": "x"}, "my input", "x"},
		{"unset", map[string]string{}, "spec", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Input(env(tt.env), tt.in); got != tt.want {
				t.Errorf("Input(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestReadInputs(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		wantArgv []string
		wantErr  []string
	}{
		{
			name:     "defaults: run with a report dir",
			env:      map[string]string{"INPUT_SPEC": "rollout.yaml"},
			wantArgv: []string{"run", "-f", "rollout.yaml", "--report-dir", "rollguard-report"},
		},
		{
			name: "dry-run with quoted args",
			env: map[string]string{"INPUT_SPEC": "deploy/rollout.yaml", "INPUT_COMMAND": "dry-run", "INPUT_REPORT-DIR": "out",
				"INPUT_ARGS": `--metrics "rec dir/rec.jsonl" --change-at 2025-01-01T00:00:00Z -q`},
			wantArgv: []string{"dry-run", "-f", "deploy/rollout.yaml", "--report-dir", "out", "--metrics", "rec dir/rec.jsonl", "--change-at", "2025-01-01T00:00:00Z", "-q"},
		},
		{
			name:     "validate takes no report dir",
			env:      map[string]string{"INPUT_SPEC": "r.yaml", "INPUT_COMMAND": "validate", "INPUT_REPORT-DIR": "ignored"},
			wantArgv: []string{"validate", "-f", "r.yaml"},
		},
		{
			name:     "plan with --json",
			env:      map[string]string{"INPUT_SPEC": "r.yaml", "INPUT_COMMAND": "plan", "INPUT_ARGS": "--json"},
			wantArgv: []string{"plan", "-f", "r.yaml", "--json"},
		},
		{
			name:    "every problem at once",
			env:     map[string]string{"INPUT_COMMAND": "destroy", "INPUT_ARGS": `--x "open`},
			wantErr: []string{"input spec is required", `input command "destroy"`, "input args: unterminated quote"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := ReadInputs(env(tt.env))
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("ReadInputs accepted %v", tt.env)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := in.Argv(); !slices.Equal(got, tt.wantArgv) {
				t.Errorf("argv %q, want %q", got, tt.wantArgv)
			}
		})
	}
}

func TestSplitArgs(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{"", nil, false},
		{"  a  b\tc\n d ", []string{"a", "b", "c", "d"}, false},
		{`'a b' "c d" e\ f`, []string{"a b", "c d", "e f"}, false},
		{`'it''s' "say \"hi\" \n"`, []string{"its", `say "hi" \n`}, false},
		{`x="1 2"y`, []string{"x=1 2y"}, false},
		{`'' ""`, []string{"", ""}, false},
		{"a \\\nb", []string{"a", "b"}, false},
		{`'$HOME' "$HOME"`, []string{"$HOME", "$HOME"}, false}, // no expansion
		{`"open`, nil, true},
		{`'open`, nil, true},
		{`trailing\`, nil, true},
	}
	for _, tt := range tests {
		got, err := SplitArgs(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("SplitArgs(%q) error %v, want error: %t", tt.in, err, tt.wantErr)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("SplitArgs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestWriteOutputs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "output")
	if err := os.WriteFile(path, []byte("earlier=step\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	outputs := []Output{
		{Name: "outcome", Value: "rolled_back"},
		{Name: "multi", Value: "line one\nEOF\nghadelimiter_x\n\nlast"},
		{Name: "empty", Value: ""},
	}
	if err := WriteOutputs(path, outputs); err != nil {
		t.Fatal(err)
	}
	got := parseOutputs(t, path)
	want := map[string]string{"earlier": "step", "outcome": "rolled_back", "multi": "line one\nEOF\nghadelimiter_x\n\nlast", "empty": ""}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("outputs %q, want %q", got, want)
	}
	for _, bad := range []string{"", "a=b", "two\nlines", "x<<y"} {
		if err := WriteOutputs(path, []Output{{Name: bad, Value: "v"}}); err == nil {
			t.Errorf("output name %q accepted", bad)
		}
	}
	if err := WriteOutputs("", outputs); err == nil {
		t.Error("WriteOutputs without a path succeeded")
	}
}

func TestAppendSummary(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "summary.md")
	if err := AppendSummary(path, "# one", "cut"); err != nil {
		t.Fatal(err)
	}
	if err := AppendSummary(path, "# two\n", "cut"); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if string(data) != "# one\n# two\n" {
		t.Errorf("summary %q, want both parts, each ending a line", data)
	}

	// Too big: cut at a line, with the note, within the limit.
	big := filepath.Join(dir, "big.md")
	line := strings.Repeat("x", 99) + "\n"
	md := strings.Repeat(line, SummaryLimit/len(line)+100)
	if err := AppendSummary(big, md, "see report.md"); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(big)
	if len(data) > SummaryLimit {
		t.Errorf("summary of %d bytes, over GitHub's %d", len(data), SummaryLimit)
	}
	if !strings.HasSuffix(string(data), "\n> see report.md\n") {
		t.Errorf("truncated summary ends %q", data[len(data)-40:])
	}
	body := strings.TrimSuffix(string(data), "\n> see report.md\n")
	if !strings.HasSuffix(body, line) || len(body)%len(line) != 0 {
		t.Error("the summary was not cut at a line boundary")
	}
	full := filepath.Join(dir, "full.md")
	if err := os.WriteFile(full, make([]byte, SummaryLimit-5), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := AppendSummary(full, "# more than five bytes", "cut"); err == nil {
		t.Error("appending to a full summary succeeded")
	}
}

func TestRunContext(t *testing.T) {
	gh := map[string]string{
		"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "acme/fleet", "GITHUB_RUN_ID": "123",
		"GITHUB_SHA": "abc123", "GITHUB_RUN_ATTEMPT": "2", "GITHUB_REF": "refs/heads/main",
	}
	tests := []struct {
		name    string
		env     map[string]string
		runURL  string
		context map[string]string
	}{
		{
			name: "github.com by default", env: gh, runURL: "https://github.com/acme/fleet/actions/runs/123",
			context: map[string]string{
				"ci": "github-actions", "repository": "acme/fleet", "run_id": "123", "sha": "abc123", "run_attempt": "2",
				"ref": "refs/heads/main", "run_url": "https://github.com/acme/fleet/actions/runs/123",
				"commit_url": "https://github.com/acme/fleet/commit/abc123",
			},
		},
		{
			name:   "GitHub Enterprise server, trailing slash",
			env:    map[string]string{"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://ghe.acme.io/", "GITHUB_REPOSITORY": "ops/fleet", "GITHUB_RUN_ID": "9"},
			runURL: "https://ghe.acme.io/ops/fleet/actions/runs/9",
			context: map[string]string{
				"ci": "github-actions", "repository": "ops/fleet", "run_id": "9", "run_url": "https://ghe.acme.io/ops/fleet/actions/runs/9",
			},
		},
		{
			name: "outside Actions", env: map[string]string{"GITHUB_REPOSITORY": "acme/fleet", "GITHUB_RUN_ID": "1"},
			runURL: "https://github.com/acme/fleet/actions/runs/1", context: nil,
		},
		{name: "no run id", env: map[string]string{"GITHUB_ACTIONS": "true"}, runURL: "", context: map[string]string{"ci": "github-actions"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RunURL(env(tt.env)); got != tt.runURL {
				t.Errorf("RunURL = %q, want %q", got, tt.runURL)
			}
			if got := RunContext(env(tt.env)); !reflect.DeepEqual(got, tt.context) {
				t.Errorf("RunContext = %v, want %v", got, tt.context)
			}
		})
	}
}

// fakeCLI stands in for rollguard: it records the argv and, for run and
// dry-run, writes a report with the given outcome.
type fakeCLI struct {
	argv    []string
	code    int
	outcome string // "" = write no report
	stdout  string // printed on stdout
}

func (f *fakeCLI) run(_ context.Context, argv []string, stdout io.Writer) int {
	f.argv = argv
	io.WriteString(stdout, f.stdout)
	if f.outcome != "" {
		dir := argv[slices.Index(argv, "--report-dir")+1]
		_ = os.MkdirAll(dir, 0o755)
		_ = os.WriteFile(filepath.Join(dir, "report.json"), fmt.Appendf(nil, `{"run_id":"r1","outcome":%q}`, f.outcome), 0o644)
		_ = os.WriteFile(filepath.Join(dir, "report.md"), []byte("# rollguard: "+f.outcome+"\n"), 0o644)
	}
	return f.code
}

func TestStep(t *testing.T) {
	tests := []struct {
		name        string
		inputs      map[string]string
		cli         fakeCLI
		staleReport bool // a report.json from an earlier run is in the report dir
		wantRan     bool
		wantOut     map[string]string
		wantSummary string
		wantErr     string
		facts       SpecFacts // what Inspect says of the spec
		wantArgv    []string
		wantStdout  string
	}{
		{
			name: "run rolled back: outcome from report.json, report.md in the summary",
			cli:  fakeCLI{code: 3, outcome: "rolled_back"}, wantRan: true,
			wantOut:     map[string]string{"outcome": "rolled_back", "exit-code": "3", "report-dir": "REPORT"},
			wantSummary: "# rollguard: rolled_back\n",
		},
		{
			name: "run failed before writing a report: a stale report does not speak",
			cli:  fakeCLI{code: 1}, staleReport: true, wantRan: true,
			wantOut:     map[string]string{"outcome": "error", "exit-code": "1", "report-dir": "REPORT"},
			wantSummary: "### rollguard run `rollout.yaml`\n\n**error** (exit code 1)\n",
		},
		{
			name:   "validate invalid",
			inputs: map[string]string{"INPUT_COMMAND": "validate"},
			cli:    fakeCLI{code: 2}, wantRan: true,
			wantOut:     map[string]string{"outcome": "invalid", "exit-code": "2", "report-dir": ""},
			wantSummary: "### rollguard validate `rollout.yaml`\n\n**invalid** (exit code 2)\n",
		},
		{
			name:   "plan ok: the plan in the summary",
			inputs: map[string]string{"INPUT_COMMAND": "plan"},
			cli:    fakeCLI{code: 0, stdout: "── canary: 1 hosts (web-1), monitor 5m\n"}, wantRan: true,
			wantOut:     map[string]string{"outcome": "planned", "exit-code": "0", "report-dir": ""},
			wantSummary: "### rollguard plan `rollout.yaml`\n\n**planned** (exit code 0)\n\n```\n── canary: 1 hosts (web-1), monitor 5m\n```\n",
		},
		{
			name:   "run with a local state store in CI: a warning first",
			inputs: map[string]string{"GITHUB_ACTIONS": "true"},
			facts:  SpecFacts{StateStore: "local", StateDir: ".rollguard"},
			cli:    fakeCLI{code: 0, outcome: "promoted"}, wantRan: true,
			wantOut:     map[string]string{"outcome": "promoted", "exit-code": "0", "report-dir": "REPORT"},
			wantSummary: "> [!WARNING]\n> state.store is local: the journal, the history and the lock live in .rollguard, in this job's workspace, which is gone when the job ends. A later job cannot resume or revert this run, nor knows the known-good version. Use state.store: consul or nomad.\n\n# rollguard: promoted\n",
			wantStdout:  "::warning title=rollguard state is local::state.store is local",
		},
		{
			name:   "run with state in Consul: no warning",
			inputs: map[string]string{"GITHUB_ACTIONS": "true"},
			facts:  SpecFacts{StateStore: "consul"},
			cli:    fakeCLI{code: 0, outcome: "promoted"}, wantRan: true,
			wantOut:     map[string]string{"outcome": "promoted", "exit-code": "0", "report-dir": "REPORT"},
			wantSummary: "# rollguard: promoted\n",
		},
		{
			name:   "validate for a pull request",
			inputs: map[string]string{"INPUT_COMMAND": "validate", "INPUT_ALLOW-UNSET-ENV": "true"},
			cli:    fakeCLI{code: 0}, wantRan: true, wantArgv: []string{"validate", "-f", "rollout.yaml", "--allow-unset-env"},
			wantOut: map[string]string{"outcome": "valid", "exit-code": "0", "report-dir": ""},
		},
		{
			name:    "bad inputs: nothing runs, exit 2",
			inputs:  map[string]string{"INPUT_COMMAND": "yolo"},
			wantOut: map[string]string{"outcome": "invalid", "exit-code": "2", "report-dir": ""},
			wantErr: `input command "yolo"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			report := filepath.Join(dir, "report")
			vars := map[string]string{
				"INPUT_SPEC": "rollout.yaml", "INPUT_REPORT-DIR": report,
				"GITHUB_OUTPUT": filepath.Join(dir, "output"), "GITHUB_STEP_SUMMARY": filepath.Join(dir, "summary"),
			}
			for k, v := range tt.inputs {
				vars[k] = v
			}
			if tt.staleReport {
				_ = os.MkdirAll(report, 0o755)
				_ = os.WriteFile(filepath.Join(report, "report.json"), []byte(`{"outcome":"promoted"}`), 0o644)
				_ = os.WriteFile(filepath.Join(report, "report.md"), []byte("# old\n"), 0o644)
			}
			cli := tt.cli
			var stdout strings.Builder
			res, err := Step(t.Context(), env(vars), Options{Run: cli.run, Stdout: &stdout,
				Inspect: func(string) (SpecFacts, error) { return tt.facts, nil }})
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout %q lacks %q", stdout.String(), tt.wantStdout)
			}
			if tt.wantArgv != nil && !slices.Equal(cli.argv, tt.wantArgv) {
				t.Errorf("argv %q, want %q", cli.argv, tt.wantArgv)
			}
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Step: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Step error %v, want %q", err, tt.wantErr)
			}
			if ran := cli.argv != nil; ran != tt.wantRan {
				t.Errorf("command ran: %t, want %t", ran, tt.wantRan)
			}
			want := map[string]string{}
			for k, v := range tt.wantOut {
				want[k] = strings.ReplaceAll(v, "REPORT", report)
			}
			if got := parseOutputs(t, vars["GITHUB_OUTPUT"]); !reflect.DeepEqual(got, want) {
				t.Errorf("outputs %q, want %q", got, want)
			}
			if fmt.Sprint(res.ExitCode) != want["exit-code"] || res.Outcome != want["outcome"] {
				t.Errorf("result %+v disagrees with the outputs %v", res, want)
			}
			summary, _ := os.ReadFile(vars["GITHUB_STEP_SUMMARY"])
			if tt.wantSummary != "" && string(summary) != tt.wantSummary {
				t.Errorf("summary %q, want %q", summary, tt.wantSummary)
			}
			if len(summary) == 0 {
				t.Error("nothing in the step summary")
			}
		})
	}
}
