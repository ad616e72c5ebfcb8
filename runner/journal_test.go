package runner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
)

// memStore is an in-memory ports.StateStore with check-and-set.
type memStore struct {
	mu sync.Mutex
	// fail, when set, makes every Put fail from then on (a store that
	// stopped answering).
	fail error
	vals map[string][]byte
	vers map[string]uint64
	next uint64
}

func newMemStore() *memStore {
	return &memStore{vals: map[string][]byte{}, vers: map[string]uint64{}}
}

// setFail makes every Put fail with err from now on (nil: answer again).
func (m *memStore) setFail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fail = err
}

func (m *memStore) Get(_ context.Context, key string) ([]byte, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.vals[key], m.vers[key], nil
}

func (m *memStore) Put(_ context.Context, key string, value []byte, version uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return 0, m.fail
	}
	if m.vers[key] != version {
		return 0, ports.ErrConflict
	}
	m.next++
	m.vals[key], m.vers[key] = value, m.next
	return m.next, nil
}

func (m *memStore) List(context.Context, string) ([]string, error) { return nil, nil }

func (m *memStore) Delete(_ context.Context, key string, version uint64) error { return nil }

func TestJournalResumeState(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	j, err := OpenJournal(ctx, store)
	if err != nil || j.Unfinished() {
		t.Fatalf("empty store: %v, unfinished %v", err, j.Unfinished())
	}
	t0 := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	plan := []JournalWave{{Name: "canary", Hosts: []string{"web-1"}}, {Name: "wave-1", Hosts: []string{"web-2", "web-3"}}}
	if err := j.Begin(ctx, JournalDoc{RunID: "r1", Rollout: "web", Version: "v1", StartedAt: t0, Plan: plan}); err != nil {
		t.Fatal(err)
	}
	w := func(e JournalEntry) {
		t.Helper()
		if err := j.Write(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	w(JournalEntry{Step: JournalApplyStart, Wave: "canary", Hosts: []string{"web-1"}, Start: t0})
	w(JournalEntry{Step: JournalApplyEnd, Wave: "canary"})
	w(JournalEntry{Step: JournalWavePassed, Wave: "canary", Hosts: []string{"web-1"}})
	w(JournalEntry{Step: JournalApplyStart, Wave: "wave-1", Hosts: []string{"web-2", "web-3"}, Start: t0.Add(5 * time.Minute)})
	w(JournalEntry{Step: JournalRevertStart, Hosts: []string{"web-3"}, Scope: ScopeHost})
	w(JournalEntry{Step: JournalRevertEnd, Hosts: []string{"web-3"}, Scope: ScopeHost})

	// A second process reads what the first one wrote.
	j2, err := OpenJournal(ctx, store)
	if err != nil || !j2.Unfinished() {
		t.Fatalf("reopened: %v, unfinished %v", err, j2.Unfinished())
	}
	rs := j2.Doc().ResumeState()
	if _, ok := rs.Passed["canary"]; !ok || rs.Current != "wave-1" || rs.Applied {
		t.Errorf("passed %v, current %q, applied %v: want canary passed, wave-1 under way, its apply not ended", rs.Passed, rs.Current, rs.Applied)
	}
	if !rs.Reverted["web-3"] || rs.Reverting != nil {
		t.Errorf("reverted %v, reverting %v: want web-3's host revert finished", rs.Reverted, rs.Reverting)
	}
	if !slices.Equal(rs.Changed, []string{"web-1", "web-2", "web-3"}) {
		t.Errorf("changed %v", rs.Changed)
	}

	// The first process writes again: it lost the journal to the second
	// one only if the second wrote; here the second writes first.
	if err := j2.Write(ctx, JournalEntry{Step: JournalApplyEnd, Wave: "wave-1"}); err != nil {
		t.Fatal(err)
	}
	err = j.Write(ctx, JournalEntry{Step: JournalWavePassed, Wave: "wave-1"})
	if !errors.Is(err, ports.ErrConflict) || !strings.Contains(err.Error(), "another process") {
		t.Errorf("stale writer: %v, want a conflict that says another process owns the run", err)
	}

	if err := j2.Write(ctx, JournalEntry{Step: JournalRunEnd, Detail: report.OutcomePromoted}); err != nil {
		t.Fatal(err)
	}
	j3, _ := OpenJournal(ctx, store)
	if j3.Unfinished() || j3.Doc().Outcome != report.OutcomePromoted {
		t.Errorf("finished journal: unfinished %v, outcome %q", j3.Unfinished(), j3.Doc().Outcome)
	}
	if err := j3.Begin(ctx, JournalDoc{RunID: "r2", Rollout: "web", Version: "v1", StartedAt: t0}); err != nil {
		t.Errorf("a new run after a finished one: %v", err)
	}
}

func TestJournalBeginRefusesAnUnfinishedRun(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	j, _ := OpenJournal(ctx, store)
	j.Begin(ctx, JournalDoc{RunID: "r1", Rollout: "web", Version: "v1"})
	j2, _ := OpenJournal(ctx, store)
	if err := j2.Begin(ctx, JournalDoc{RunID: "r2", Rollout: "web", Version: "v1"}); err == nil || !strings.Contains(err.Error(), "r1") {
		t.Errorf("Begin over an unfinished run: %v", err)
	}
}

// A journal never stores a run without a version: history and known-good
// reverts name versions.
func TestJournalBeginRefusesAnEmptyVersion(t *testing.T) {
	ctx := context.Background()
	store := newMemStore()
	j, _ := OpenJournal(ctx, store)
	if err := j.Begin(ctx, JournalDoc{RunID: "r1", Rollout: "web"}); err == nil || !strings.Contains(err.Error(), "no version") {
		t.Errorf("Begin without a version: %v, want an error", err)
	}
	if data, _, _ := store.Get(ctx, journalKey); data != nil {
		t.Errorf("the journal was written: %s", data)
	}
}

// A journal whose steps name a host outside its plan is refused before a
// resume could revert the wrong host (FuzzJournal found the resume
// reverting host 0 for a name it did not know).
func TestOpenJournalRefusesForeignHosts(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
	for name, doc := range map[string]string{
		"host outside the plan": `{"run_id":"r","started_at":"2024-01-01T12:00:00Z","plan":[{"name":"canary","hosts":["web-1"]}],"entries":[{"step":"revert-start","hosts":["web-9"]}]}`,
		"wave outside the plan": `{"run_id":"r","started_at":"2024-01-01T12:00:00Z","plan":[{"name":"canary","hosts":["web-1"]}],"entries":[{"step":"wave-passed","wave":"w"}]}`,
		"host twice":            `{"run_id":"r","started_at":"2024-01-01T12:00:00Z","plan":[{"name":"canary","hosts":["web-1"]},{"name":"w","hosts":["web-1"]}]}`,
		"wave before the run":   `{"run_id":"r","started_at":"2024-01-01T12:00:00Z","plan":[{"name":"canary","hosts":["web-1"]}],"entries":[{"step":"apply-start","wave":"canary","hosts":["web-1"]}]}`,
	} {
		store := newMemStore()
		store.Put(ctx, journalKey, []byte(doc), 0)
		if _, err := OpenJournal(ctx, store); err == nil || !strings.Contains(err.Error(), "corrupt") {
			t.Errorf("%s: %v, want the journal refused as corrupt", name, err)
		}
	}
	_ = t0
}

// An entry written before its step acts is dropped when the store does
// not take it (the step does not act); an entry recorded after an action
// stays and reaches the store with the next write that succeeds.
func TestJournalWriteDropsRecordKeeps(t *testing.T) {
	ctx := t.Context()
	store := newMemStore()
	j, err := OpenJournal(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Begin(ctx, JournalDoc{RunID: "r1", Rollout: "x", Version: "v2", Plan: []JournalWave{{Name: "canary", Hosts: []string{"web-1"}}}}); err != nil {
		t.Fatal(err)
	}
	store.setFail(errors.New("503"))
	if err := j.Record(ctx, JournalEntry{Step: JournalApplyEnd, Wave: "canary"}); err == nil {
		t.Fatal("Record succeeded with the store failing")
	}
	if err := j.Write(ctx, JournalEntry{Step: JournalRevertStart, Hosts: []string{"web-1"}}); err == nil {
		t.Fatal("Write succeeded with the store failing")
	}
	store.setFail(nil)
	if err := j.Write(ctx, JournalEntry{Step: JournalWavePassed, Wave: "canary"}); err != nil {
		t.Fatal(err)
	}
	back, err := OpenJournal(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, e := range back.Doc().Entries {
		steps = append(steps, fmt.Sprintf("%d:%s", e.Seq, e.Step))
	}
	if want := []string{"1:run-start", "2:" + JournalApplyEnd, "3:" + JournalWavePassed}; !slices.Equal(steps, want) {
		t.Errorf("stored entries %q, want %q", steps, want)
	}
}
