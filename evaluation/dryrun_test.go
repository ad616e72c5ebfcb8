package evaluation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/policies"
)

// TestDryRunDecidesAsTheHarness replays a sample of every data set's and
// protocol's cases through `rollguard dry-run`, as a user replays a
// recording, and checks that it rolls back at the same poll as the
// harness, or promotes as it does: the harness's figures are what the
// command decides on the same data. Each case's values go into a
// recording in VictoriaMetrics' export format, a missing poll as a
// staleness marker (null: what a scraper writes when a scrape fails).
// Skipped: a case whose rollout holds on a gap in the metrics and whose
// change moves a later stage's hosts (the harness moves that change with
// the stage's late apply; a recording cannot).
func TestDryRunDecidesAsTheHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the rollguard binary")
	}
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "rollguard")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/rollguard/rollguard").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	judge := NewRollguard("medium", seedRule, dir)
	at := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	n := map[string]int{}
	compared, holds, skipped := 0, 0, 0
	var differ []string
	for _, c := range cases(t) {
		if !judge.Applies(c) {
			continue
		}
		// Every 10th case of each data set, protocol and kind, at most
		// 20 (every protocol, regressions and no change), and every
		// labelled case of JumpStarter and Nezha, whose data have gaps
		// (in baselines, and fleet-wide ones that hold a rollout).
		k := c.Dataset + "/" + c.Protocol + "/" + c.Kind
		gaps := strings.HasPrefix(c.Kind, "labelled") && c.Dataset != "nab"
		if n[k]++; !gaps && (n[k]%10 != 1 || n[k] > 20*10) {
			continue
		}
		held := false
		judge.Trace = func(_ *policies.Engine, s, k int) { held = held || k > c.Stages[s].Polls }
		want := judge.Decide(c.Materialize())
		judge.Trace = nil
		if held && slices.ContainsFunc(c.effects, func(e effect) bool { return c.stageOf(e.From) > 0 }) {
			skipped++
			continue
		}
		l, err := judge.spec(c)
		if err != nil {
			t.Fatal(err)
		}
		rec := filepath.Join(dir, fmt.Sprintf("case-%d.jsonl", compared))
		if err := writeRecording(rec, c, at, holdSlack(c, l.spec)+1); err != nil {
			t.Fatal(err)
		}
		got, err := dryRun(bin, l.path, rec, at, c)
		if err != nil {
			t.Fatalf("%s: %v", c.ID, err)
		}
		compared++
		if held {
			holds++
		}
		if got != want {
			differ = append(differ, fmt.Sprintf("%s: dry-run %d, harness %d", c.ID, got, want))
		}
	}
	t.Logf("%d cases compared (%d held on a gap), %d skipped (held, with a later stage's change)", compared, holds, skipped)
	if compared < 500 || holds < 5 {
		t.Errorf("only %d cases compared, %d of them held", compared, holds)
	}
	if len(differ) > 0 {
		t.Errorf("%d of %d cases decided otherwise by dry-run (poll of the rollback, 0: promoted):\n%s", len(differ), compared, strings.Join(differ, "\n"))
	}
}

// writeRecording writes c's values, and extra polls past its stages (as
// many as holds can take it, and one), as a recording whose first
// monitored poll ends at at: poll i (0-based) is stamped a second before
// at + (i+1) intervals, so that the tick at the end of its interval reads
// it.
func writeRecording(path string, c *Case, at time.Time, extra int) error {
	v := c.materialize(c.effects, extra)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for h := range c.hosts {
		for m, mt := range c.Metrics() {
			var vals []any
			var ts []int64
			for i := -c.Baseline; i < v.Extent(); i++ {
				var x any = v.Value(h, m, i)
				if math.IsNaN(x.(float64)) {
					x = nil // a staleness marker
				}
				vals = append(vals, x)
				ts = append(ts, at.Add(time.Duration(i+1)*c.Interval-time.Second).UnixMilli())
			}
			line := map[string]any{"metric": map[string]string{"__name__": mt.Name, "instance": fmt.Sprintf("h%d", h+1)}, "values": vals, "timestamps": ts}
			if err := enc.Encode(line); err != nil {
				return err
			}
		}
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// dryRun runs the dry run of spec over rec and returns the monitored poll
// (1-based) at which it rolled back, 0 when it promoted or rolled back
// only in a wave past c's stages (a canary protocol's rest of the fleet).
func dryRun(bin, spec, rec string, at time.Time, c *Case) (int, error) {
	cmd := exec.Command(bin, "dry-run", "-q", "-f", spec, "--metrics", rec, "--change-at", at.Format(time.RFC3339), "-o", "json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		return 0, err
	}
	var r struct {
		Reason    string `json:"reason"`
		Decisions []struct {
			At    time.Time `json:"at"`
			Wave  string    `json:"wave"`
			Fired bool      `json:"fired"`
		} `json:"decisions"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		return 0, fmt.Errorf("exit %d, report: %v\n%s", code, err, stderr.String())
	}
	switch code {
	case 0, 3:
	case 4:
		// Past c's stages, the rest of a canary protocol's fleet may
		// not start (an application-wide metric only the canary has):
		// c's rollout passed.
		if wave, _, _ := strings.Cut(r.Reason, " not started"); waveStage(wave) < len(c.Stages) {
			return 0, fmt.Errorf("halted within the case's stages: %s", r.Reason)
		}
		return 0, nil
	default:
		return 0, fmt.Errorf("exit %d: %s", code, stderr.String())
	}
	for _, d := range r.Decisions {
		if !d.Fired {
			continue
		}
		if waveStage(d.Wave) >= len(c.Stages) {
			return 0, nil
		}
		return int(d.At.Sub(at) / c.Interval), nil
	}
	return 0, nil
}

// waveStage is the stage a dry run's wave name stands for: canary 0,
// wave-N N.
func waveStage(wave string) int {
	n := 0
	if w, ok := strings.CutPrefix(wave, "wave-"); ok {
		fmt.Sscan(w, &n)
	}
	return n
}
