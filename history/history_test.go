package history_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/history"
	"github.com/rollguard/rollguard/integrations/localstate"
	"github.com/rollguard/rollguard/ports"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newHistory(t *testing.T) (history.History, *localstate.Store) {
	t.Helper()
	s, err := localstate.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return history.History{Store: s}, s
}

func rec(version, run string, minute int) history.VersionRecord {
	return history.VersionRecord{
		Version:   version,
		Playbook:  "playbooks/site.yml",
		ExtraVars: map[string]any{"nginx_worker_connections": 4096, "mode": version},
		At:        t0.Add(time.Duration(minute) * time.Minute),
		RunID:     run,
		Outcome:   history.VersionApplied,
	}
}

func versions(recs []history.VersionRecord) string {
	var b []string
	for _, r := range recs {
		b = append(b, fmt.Sprintf("%d:%s/%s", r.Seq, r.Version, r.Outcome))
	}
	return strings.Join(b, " ")
}

func TestHistoryRecordsAndKnownGood(t *testing.T) {
	ctx := context.Background()
	h, _ := newHistory(t)

	if _, ok, err := h.LastKnownGood(ctx, "web-1"); ok || err != nil {
		t.Fatalf("LastKnownGood of an empty history: %v, %v", ok, err)
	}
	steps1 := []struct {
		do   func() error
		want map[string]string // host -> records
		good map[string]string // host -> last known-good version ("" none)
	}{
		{
			do: func() error {
				return errors.Join(h.Record(ctx, "web-1", rec("v1", "r1", 0)), h.Record(ctx, "web-2", rec("v1", "r1", 1)))
			},
			want: map[string]string{"web-1": "1:v1/applied", "web-2": "1:v1/applied"},
			good: map[string]string{"web-1": "", "web-2": ""},
		},
		{
			do:   func() error { return h.MarkKnownGood(ctx, []string{"web-1", "web-2"}, "v1", "r1") },
			want: map[string]string{"web-1": "1:v1/known_good", "web-2": "1:v1/known_good"},
			good: map[string]string{"web-1": "v1", "web-2": "v1"},
		},
		{
			do:   func() error { return h.Record(ctx, "web-1", rec("v2", "r2", 10)) },
			want: map[string]string{"web-1": "1:v1/known_good 2:v2/applied", "web-2": "1:v1/known_good"},
			good: map[string]string{"web-1": "v1", "web-2": "v1"},
		},
		{
			do:   func() error { return h.SetOutcome(ctx, []string{"web-1"}, "v2", "r2", history.VersionReverted) },
			want: map[string]string{"web-1": "1:v1/known_good 2:v2/reverted"},
			good: map[string]string{"web-1": "v1"},
		},
		{
			do: func() error {
				return errors.Join(h.Record(ctx, "web-1", rec("v3", "r3", 20)), h.MarkKnownGood(ctx, []string{"web-1"}, "v3", "r3"))
			},
			want: map[string]string{"web-1": "1:v1/known_good 2:v2/reverted 3:v3/known_good"},
			good: map[string]string{"web-1": "v3", "web-2": "v1"},
		},
	}
	for i, st := range steps1 {
		if err := st.do(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		for host, want := range st.want {
			recs, err := h.For(ctx, host)
			if err != nil || versions(recs) != want {
				t.Fatalf("step %d: For(%s) = %s, %v; want %s", i, host, versions(recs), err, want)
			}
		}
		for host, want := range st.good {
			r, ok, err := h.LastKnownGood(ctx, host)
			if err != nil || ok != (want != "") || r.Version != want {
				t.Fatalf("step %d: LastKnownGood(%s) = %s, %v, %v; want %q", i, host, r.Version, ok, err, want)
			}
		}
	}

	// What a known-good revert needs comes back intact.
	good, _, _ := h.LastKnownGood(ctx, "web-2")
	if good.Playbook != "playbooks/site.yml" || good.RunID != "r1" || !good.At.Equal(t0.Add(time.Minute)) ||
		good.ExtraVars["nginx_worker_connections"] != float64(4096) || good.ExtraVars["mode"] != "v1" {
		t.Errorf("known-good record of web-2 = %+v", good)
	}
	hosts, err := h.Hosts(ctx)
	if err != nil || !slices.Equal(hosts, []string{"web-1", "web-2"}) {
		t.Errorf("Hosts = %q, %v", hosts, err)
	}
}

func TestHistoryRejects(t *testing.T) {
	ctx := context.Background()
	h, _ := newHistory(t)
	bad := rec("v1", "r1", 0)
	bad.Outcome = "promoted"
	noVersion := rec("", "r1", 0)
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"empty host", h.Record(ctx, "", rec("v1", "r1", 0)), "empty host"},
		{"empty version", h.Record(ctx, "web-1", noVersion), "empty version"},
		{"bad outcome", h.Record(ctx, "web-1", bad), `outcome "promoted"`},
		{"bad mark", h.SetOutcome(ctx, []string{"web-1"}, "v1", "r1", "fine"), `outcome "fine"`},
		{"mark without record", h.MarkKnownGood(ctx, []string{"web-9"}, "v1", "r1"), "host web-9 has no record of version v1 from run r1"},
	}
	for _, tt := range tests {
		if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, tt.err, tt.want)
		}
	}
	if hosts, _ := h.Hosts(ctx); len(hosts) != 0 {
		t.Errorf("rejected calls wrote histories: %q", hosts)
	}
}

func TestMarkKnownGoodMarksTheOtherHostsWhenOneFails(t *testing.T) {
	ctx := context.Background()
	h, _ := newHistory(t)
	for _, host := range []string{"a", "c"} {
		if err := h.Record(ctx, host, rec("v1", "r1", 0)); err != nil {
			t.Fatal(err)
		}
	}
	err := h.MarkKnownGood(ctx, []string{"a", "b", "c"}, "v1", "r1")
	if err == nil || !strings.Contains(err.Error(), "host b") {
		t.Fatalf("error %v, want one naming host b", err)
	}
	for _, host := range []string{"a", "c"} {
		if _, ok, _ := h.LastKnownGood(ctx, host); !ok {
			t.Errorf("host %s not marked because b failed", host)
		}
	}
}

func TestHistoryCapKeepsTheKnownGood(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		goodAt    int // index of the record marked known-good; -1 none
		wantFirst uint64
		wantGood  string
	}{
		{"no known good", -1, 11, ""},
		{"known good inside the window", 30, 11, "v30"},
		{"known good older than the window", 4, 5, "v4"},
	}
	const total = history.HistoryLimit + 10
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := newHistory(t)
			for i := range total {
				v := fmt.Sprintf("v%d", i)
				if err := h.Record(ctx, "web-1", rec(v, "r", i)); err != nil {
					t.Fatal(err)
				}
				if i == tt.goodAt {
					if err := h.MarkKnownGood(ctx, []string{"web-1"}, v, "r"); err != nil {
						t.Fatal(err)
					}
				}
			}
			recs, err := h.For(ctx, "web-1")
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != history.HistoryLimit {
				t.Errorf("kept %d records, want %d", len(recs), history.HistoryLimit)
			}
			if recs[0].Seq != tt.wantFirst || recs[len(recs)-1].Seq != total {
				t.Errorf("kept seq %d..%d, want %d..%d", recs[0].Seq, recs[len(recs)-1].Seq, tt.wantFirst, total)
			}
			for i := 1; i < len(recs); i++ {
				if recs[i].Seq <= recs[i-1].Seq {
					t.Fatalf("records out of order: %s", versions(recs))
				}
			}
			good, ok, _ := h.LastKnownGood(ctx, "web-1")
			if ok != (tt.wantGood != "") || good.Version != tt.wantGood {
				t.Errorf("LastKnownGood = %s, %v; want %q", good.Version, ok, tt.wantGood)
			}
		})
	}
}

// racingStore runs interfere once, just before the first Put reaches the
// store: another writer slipping in between Record's read and its write.
type racingStore struct {
	ports.StateStore
	interfere func()
	puts      int
}

func (r *racingStore) Put(ctx context.Context, key string, value []byte, version uint64) (uint64, error) {
	r.puts++
	if r.interfere != nil {
		f := r.interfere
		r.interfere = nil
		f()
	}
	return r.StateStore.Put(ctx, key, value, version)
}

func TestHistoryRecordRetriesOnlyAfterAnotherAppend(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		// interfere changes web-1's history behind Record's back.
		interfere   func(other history.History, store ports.StateStore) error
		wantErr     error
		wantHistory string
	}{
		{
			name: "another run appended",
			interfere: func(other history.History, _ ports.StateStore) error {
				return other.Record(ctx, "web-1", rec("v-other", "r-other", 5))
			},
			wantHistory: "1:v1/applied 2:v-other/applied 3:v2/applied",
		},
		{
			name: "another run marked an outcome",
			interfere: func(other history.History, _ ports.StateStore) error {
				return other.MarkKnownGood(ctx, []string{"web-1"}, "v1", "r1")
			},
			wantHistory: "1:v1/known_good 2:v2/applied",
		},
		{
			name: "the history was deleted",
			interfere: func(_ history.History, store ports.StateStore) error {
				_, ver, _ := store.Get(ctx, "history/web-1.json")
				return store.Delete(ctx, "history/web-1.json", ver)
			},
			wantErr:     ports.ErrConflict,
			wantHistory: "",
		},
		{
			name: "the history was replaced",
			interfere: func(_ history.History, store ports.StateStore) error {
				_, ver, _ := store.Get(ctx, "history/web-1.json")
				_, err := store.Put(ctx, "history/web-1.json", []byte(`[{"seq":1,"version":"restored","run_id":"ops","outcome":"known_good"}]`), ver)
				return err
			},
			wantErr:     ports.ErrConflict,
			wantHistory: "1:restored/known_good",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, store := newHistory(t)
			if err := base.Record(ctx, "web-1", rec("v1", "r1", 0)); err != nil {
				t.Fatal(err)
			}
			racing := &racingStore{StateStore: store}
			var interfereErr error
			racing.interfere = func() { interfereErr = tt.interfere(base, store) }
			err := history.History{Store: racing}.Record(ctx, "web-1", rec("v2", "r2", 10))
			if interfereErr != nil {
				t.Fatal(interfereErr)
			}
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Record: %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && racing.puts != 2 {
				t.Errorf("%d writes, want 2 (one lost, one retried)", racing.puts)
			}
			recs, err := base.For(ctx, "web-1")
			if err != nil || versions(recs) != tt.wantHistory {
				t.Errorf("history %q, %v; want %q", versions(recs), err, tt.wantHistory)
			}
		})
	}
}

func TestHistoryDoesNotOverwriteWhatItCannotRead(t *testing.T) {
	ctx := context.Background()
	h, store := newHistory(t)
	if _, err := store.Put(ctx, "history/web-1.json", []byte("not json"), 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Record(ctx, "web-1", rec("v1", "r1", 0)); err == nil || !strings.Contains(err.Error(), "decode") {
		t.Fatalf("Record over a corrupt history: %v, want a decode error", err)
	}
	if v, _, _ := store.Get(ctx, "history/web-1.json"); string(v) != "not json" {
		t.Fatalf("corrupt history overwritten with %q", v)
	}
}

func TestHistoryHostNamesAreEscaped(t *testing.T) {
	ctx := context.Background()
	h, _ := newHistory(t)
	names := []string{"web-1", "rack/7", ".hidden", "ümlaut host", "a%2Fb"}
	for _, n := range names {
		if err := h.Record(ctx, n, rec("v1", "r1", 0)); err != nil {
			t.Fatalf("Record(%q): %v", n, err)
		}
	}
	got, err := h.Hosts(ctx)
	want := slices.Sorted(slices.Values(names))
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("Hosts = %q, %v; want %q", got, err, want)
	}
	for _, n := range names {
		if recs, _ := h.For(ctx, n); len(recs) != 1 {
			t.Errorf("For(%q) = %d records, want 1", n, len(recs))
		}
	}
}
