package runner

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/rollguard/rollguard/history"
)

// FuzzJournal reads any bytes as a journal, the way a resumed run reads
// one from a state store (a file, Consul KV, Nomad Variables, where a
// person or a crash may have left anything): either an error that says
// the journal is corrupt, or a journal whose unfinished run resumes, and
// aborts, to a verdict under a simulated clock. Never a panic.
func FuzzJournal(f *testing.F) {
	t0 := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	seed := JournalDoc{RunID: "run-0", Rollout: "exec", Version: "v2", StartedAt: t0,
		Plan: []JournalWave{{Name: "canary", Hosts: []string{"web-1"}}, {Name: "wave-1", Hosts: []string{"web-2", "web-3", "web-4"}}}}
	for _, entries := range [][]JournalEntry{
		nil,
		{{Step: JournalApplyStart, Wave: "canary", Hosts: []string{"web-1"}, Start: t0}, {Step: JournalPlaybook, Detail: "here:1"}},
		{{Step: JournalApplyStart, Wave: "canary", Hosts: []string{"web-1"}, Start: t0}, {Step: JournalApplyEnd, Wave: "canary"},
			{Step: JournalWavePassed, Wave: "canary", Hosts: []string{"web-1"}}, {Step: JournalApplyStart, Wave: "wave-1", Hosts: []string{"web-2"}, Start: t0.Add(time.Minute)},
			{Step: JournalRevertStart, Hosts: []string{"web-2"}, Scope: ScopeHost}},
		{{Step: JournalApplyStart, Wave: "canary", Hosts: []string{"web-1"}, Start: t0}, {Step: JournalRevertStart, Hosts: []string{"web-1"}, Scope: "fleet"},
			{Step: JournalRevertEnd, Hosts: []string{"web-1"}, Scope: "fleet"}},
		{{Step: JournalSnapshot, Wave: "nope", Hosts: []string{"ghost"}}, {Step: JournalApplyStart, Wave: "wave-1", Hosts: []string{"web-9", "web-9"}}},
	} {
		doc := seed
		doc.Entries = entries
		data, _ := json.Marshal(doc)
		f.Add(data)
	}
	f.Add([]byte(`{"run_id":"r","plan":[{"name":"canary","hosts":["web-1","web-1"]},{"name":"canary","hosts":[]}],"entries":[{"step":"apply-start","wave":"canary","hosts":["web-1"]}]}`))
	f.Add([]byte(`{"run_id":"r","finished":true}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		store := newMemStore()
		if _, err := store.Put(t.Context(), journalKey, data, 0); err != nil {
			t.Fatal(err)
		}
		j, err := OpenJournal(t.Context(), store)
		if err != nil || !j.Unfinished() {
			return
		}
		doc := j.Doc()
		doc.playbooksHere()
		// A plan bigger than this is not what a fuzzer's journal tests.
		hosts := 0
		for _, w := range doc.Plan {
			hosts += len(w.Hosts)
		}
		if hosts > 40 || len(doc.Plan) > 8 || len(doc.Entries) > 200 {
			return
		}
		for _, abort := range []bool{false, true} {
			ro, _, _ := execRollout(t, execSpec, changedAll)
			plan, err := PlanFromJournal(ro.Spec, doc, ro.Plan.Hosts)
			if err != nil {
				return
			}
			j, err := OpenJournal(t.Context(), store)
			if err != nil {
				t.Fatal(err)
			}
			ro.Plan, ro.Journal, ro.Resume, ro.Abort, ro.RunID = plan, j, j.Doc().ResumeState(), abort, doc.RunID
			ro.History = &history.History{Store: newMemStore()}
			type result struct {
				res *Result
				err error
			}
			done := make(chan result, 1)
			go func() {
				res, err := ro.Execute(t.Context())
				done <- result{res, err}
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(3 * time.Second):
				t.Fatalf("resume (abort %v) did not end within 3 s", abort)
			}
			res, err := r.res, r.err
			if err != nil {
				return // refused before acting (a plan the engine cannot take)
			}
			if res.Report == nil || res.Report.Outcome == "" {
				t.Fatalf("resume (abort %v) ended without an outcome", abort)
			}
			// Put the journal back as the fuzzer wrote it for the abort.
			store = newMemStore()
			store.Put(t.Context(), journalKey, data, 0)
		}
	})
}
