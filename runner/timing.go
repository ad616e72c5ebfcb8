package runner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Timing is a live run's timeline, by wave name, for a dry run to replay
// (Rollout.Timing): the run's --record file then replays as the run saw
// it. Without it a dry run's applies are instantaneous, and a stage's
// monitoring period starts at the apply's start instead of its end: with
// an apply that took several polls, the replay watches polls before the
// change showed and misses some the live run judged.
type Timing map[string]WaveTiming

// WaveTiming is when one wave of a live run started (its apply_started_at:
// its baseline window ends there) and when its apply ended.
type WaveTiming struct {
	Start, ApplyEnd time.Time
}

// replayedApply is a dry run's apply waiting for its recorded end.
type replayedApply struct {
	out applyOutcome
	end time.Time
}

// ReadTiming reads the waves' timeline of a live run's report.json: each
// wave's apply_started_at and apply_ended_at. A wave that did not start
// is left out; one whose apply did not end (the run was stopped) keeps its
// start alone.
func ReadTiming(file string) (Timing, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("run report: %w", err)
	}
	var doc struct {
		RunID string `json:"run_id"`
		Waves []struct {
			Name           string     `json:"name"`
			ApplyStartedAt *time.Time `json:"apply_started_at"`
			ApplyEndedAt   *time.Time `json:"apply_ended_at"`
		} `json:"waves"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("run report %s%s: %w", file, jsonPos(data, err), err)
	}
	if strings.HasPrefix(doc.RunID, "dry-") {
		return nil, fmt.Errorf("run report %s: run %s is a dry run, whose applies took no time: give a live run's report.json", file, doc.RunID)
	}
	t := Timing{}
	for i, w := range doc.Waves {
		if w.ApplyStartedAt == nil {
			continue
		}
		if w.Name == "" {
			return nil, fmt.Errorf("run report %s: waves[%d] has no name", file, i)
		}
		wt := WaveTiming{Start: *w.ApplyStartedAt}
		if w.ApplyEndedAt != nil {
			if w.ApplyEndedAt.Before(wt.Start) {
				return nil, fmt.Errorf("run report %s: wave %s: apply_ended_at %s is before apply_started_at %s", file, w.Name,
					w.ApplyEndedAt.Format(time.RFC3339Nano), wt.Start.Format(time.RFC3339Nano))
			}
			wt.ApplyEnd = *w.ApplyEndedAt
		}
		t[w.Name] = wt
	}
	if len(t) == 0 {
		return nil, fmt.Errorf("run report %s: no wave started (no apply_started_at): nothing to replay", file)
	}
	return t, nil
}

// Check says whether the timeline fits the plan: its waves must be the
// plan's, by name, and start in the plan's order.
func (t Timing) Check(p *Plan) error {
	var names []string
	var last time.Time
	for _, w := range p.Waves {
		names = append(names, w.Name)
		wt, ok := t[w.Name]
		if !ok {
			continue
		}
		if wt.Start.Before(last) {
			return fmt.Errorf("wave %s starts at %s, before the wave ahead of it in the plan", w.Name, wt.Start.Format(time.RFC3339Nano))
		}
		last = wt.Start
	}
	for name := range t {
		if !slices.Contains(names, name) {
			return fmt.Errorf("its wave %s is not in this plan, whose waves are %s", name, strings.Join(names, ", "))
		}
	}
	return nil
}

// Earliest is the earliest wave start of the timeline: the first apply's
// start, a dry run's --change-at.
func (t Timing) Earliest() time.Time {
	var first time.Time
	for _, wt := range t {
		if first.IsZero() || wt.Start.Before(first) {
			first = wt.Start
		}
	}
	return first
}

// jsonPos is " (line L, column C)" for a JSON decoding error that has an
// offset into data, else "".
func jsonPos(data []byte, err error) string {
	var off int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	}
	if off < 0 || off > int64(len(data)) {
		return ""
	}
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := int(off) - (bytes.LastIndexByte(before, '\n') + 1)
	return fmt.Sprintf(":%d:%d", line, max(col, 1))
}
