package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	capi "github.com/hashicorp/consul/api"
	napi "github.com/hashicorp/nomad/api"

	"github.com/rollguard/rollguard/demo"
	"github.com/rollguard/rollguard/history"
	"github.com/rollguard/rollguard/integrations/consul"
	"github.com/rollguard/rollguard/integrations/consul/consultest"
	"github.com/rollguard/rollguard/integrations/nomad"
	"github.com/rollguard/rollguard/integrations/nomad/nomadtest"
	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
	"github.com/rollguard/rollguard/runner"
)

// sharedStore is one shared state backend as the test sees it: a fake
// agent, the environment that points rollguard at it, rollguard's own
// store adapter reading it, and its lock.
type sharedStore struct {
	env   []string
	store ports.StateStore
	// holder is the lock's holder, false when the lock is free.
	holder func() (ports.Holder, bool)
	// lapse makes a dead holder's lock lapse, as its TTL passing would.
	lapse func()
	// unexpected lists the requests the fake does not model.
	unexpected func() []string
}

// newConsulStore starts a fake Consul agent and reads it with rollguard's
// Consul KV store and session lock key.
func newConsulStore(t *testing.T, rollout, token string) sharedStore {
	fake := consultest.New(token)
	t.Cleanup(fake.Close)
	c, err := consul.New(&capi.Config{Address: fake.URL, Token: token}, nil)
	if err != nil {
		t.Fatal(err)
	}
	store, err := consul.NewKVStore(c, rollout, consul.KVOptions{})
	if err != nil {
		t.Fatal(err)
	}
	key := consul.NewLocker(c, consul.LockOptions{}).LockKey(rollout)
	return sharedStore{
		env: fake.Env(), store: store, unexpected: fake.Unexpected,
		holder: func() (ports.Holder, bool) {
			var h ports.Holder
			pair := fake.KV(key)
			if pair == nil || pair.Session == "" {
				return h, false
			}
			if err := json.Unmarshal(pair.Value, &h); err != nil {
				t.Errorf("lock key %s holds %q: %v", key, pair.Value, err)
			}
			return h, true
		},
		// Consul invalidates a session whose TTL lapsed without a
		// renewal; its "delete" behaviour deletes the lock key.
		lapse: func() {
			for _, id := range fake.Sessions() {
				fake.Invalidate(id)
			}
		},
	}
}

// newNomadStore starts a fake Nomad agent and reads it with rollguard's
// Nomad Variables store and lease lock variable.
func newNomadStore(t *testing.T, rollout, token string) sharedStore {
	fake := nomadtest.New(token)
	t.Cleanup(fake.Close)
	c, err := nomad.New(&napi.Config{Address: fake.URL, SecretID: token}, nil)
	if err != nil {
		t.Fatal(err)
	}
	store, err := nomad.NewVarStore(c, rollout, "", "")
	if err != nil {
		t.Fatal(err)
	}
	path := nomad.NewVarLocker(c, nomad.VarLockOptions{}).LockPath(rollout)
	return sharedStore{
		env: fake.Env(), store: store, unexpected: fake.Unexpected,
		holder: func() (ports.Holder, bool) {
			var h ports.Holder
			v := fake.Get(path)
			if v == nil {
				return h, false
			}
			if err := json.Unmarshal([]byte(v.Items["holder"]), &h); err != nil {
				t.Errorf("lock variable %s holds %v: %v", path, v.Items, err)
			}
			return h, true
		},
		// The lease's expiry passes without a renewal: move it into
		// the past rather than wait out the minute.
		lapse: func() {
			v := fake.Get(path)
			if v == nil {
				return
			}
			v.Items["expires"] = time.Now().Add(-time.Second).UTC().Format(time.RFC3339Nano)
			fake.Set(path, v.Items)
		},
	}
}

var runIDLine = regexp.MustCompile(`(?m)^rollguard run (\S+): rollout `)

// testSharedStateResume runs a bad change with its journal, history and
// lock in Consul KV, then in Nomad Variables (fake agents over HTTP, read
// back through rollguard's own adapters): a second process started while
// the first holds the lock is refused and names it; the first is killed at
// its canary's first monitoring tick; a new process resumes the same run
// from the shared journal, rolls the canary back and leaves the store
// finished, the history saying reverted, and the lock free.
func testSharedStateResume(t *testing.T, l *live) {
	parent := l.t
	defer func() { l.t, l.extraEnv = parent, nil }()
	backends := []struct {
		name, canary, token string
		open                func(t *testing.T, rollout, token string) sharedStore
	}{
		{"consul", l.hosts[1], "s3cr3t-e2e-consul-token", newConsulStore},
		{"nomad", l.hosts[2], "s3cr3t-e2e-nomad-token", newNomadStore},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			l.t = t
			rollout := "shared-" + b.name
			st := b.open(t, rollout, b.token)
			l.extraEnv = st.env
			confs := l.confs()
			version := b.name[:1] + "1"
			spec := l.spec(demo.SpecOptions{Name: rollout, Version: version, Canary: []string{b.canary}, StateStore: b.name,
				ExtraVars: map[string]string{"latency_factor": "2.5", "error_share": "0.03"}})

			// The first process: while it monitors its canary, a second
			// one is refused; then it is killed.
			var refused struct {
				ran            bool
				code           int
				stdout, stderr string
			}
			code, _, out1 := l.run(spec, func(line string) bool {
				if !monitorTick.MatchString(line) {
					return false
				}
				refused.ran = true
				refused.code, refused.stdout, refused.stderr = rollguardEnv(t, st.env, "run", "-f", spec, "--report-dir", t.TempDir())
				return true
			})
			if code != -1 || !refused.ran {
				t.Fatalf("the first run was not killed at its first monitoring tick (exit %d)\n%s", code, out1)
			}
			m := runIDLine.FindStringSubmatch(out1)
			if m == nil {
				t.Fatalf("the first run did not print its run id\n%s", out1)
			}
			runID := m[1]
			if refused.code != 1 || !strings.Contains(refused.stderr, runID) {
				t.Errorf("a second run while the first held the lock: exit %d, stderr %q; want 1 naming run %s", refused.code, refused.stderr, runID)
			}

			doc := readJournal(t, l, st.store)
			if doc.Finished || doc.RunID != runID || doc.Rollout != rollout {
				t.Fatalf("journal in the store after the kill: run %q of %q, finished %v; want the unfinished run %s of %s", doc.RunID, doc.Rollout, doc.Finished, runID, rollout)
			}
			h, held := st.holder()
			if !held || h.RunID != runID {
				t.Fatalf("lock after the kill: held %v by run %q; want it still held by the dead run %s", held, h.RunID, runID)
			}
			st.lapse()

			// The second process resumes the same run from the store.
			code, r, out2 := l.run(spec, nil)
			if code != 3 || r.Outcome != report.OutcomeRolledBack {
				t.Fatalf("resumed: exit %d, outcome %q (%s)\nfirst:\n%s\nresumed:\n%s", code, r.Outcome, r.Reason, out1, out2)
			}
			if !strings.Contains(out2, "resuming the unfinished run "+runID) || r.RunID != runID {
				t.Errorf("the second process did not resume run %s (report says %s)\n%s", runID, r.RunID, out2)
			}
			for _, host := range l.hosts {
				if got := l.conf(host); got != confs[host] {
					t.Errorf("%s ends with\n%s\nwant its previous config\n%s", host, got, confs[host])
				}
			}
			doc = readJournal(t, l, st.store)
			if !doc.Finished || doc.Outcome != report.OutcomeRolledBack || doc.RunID != r.RunID {
				t.Errorf("journal in the store: run %s, finished %v, outcome %q; want run %s finished %s", doc.RunID, doc.Finished, doc.Outcome, r.RunID, report.OutcomeRolledBack)
			}
			store := history.History{Store: st.store}
			for _, host := range l.hosts {
				recs, err := store.For(l.ctx, host)
				if err != nil {
					t.Fatalf("history of %s: %v", host, err)
				}
				// The version was applied once (the resumed run does not
				// record it again) and that record says reverted.
				i, n := -1, 0
				for j := range recs {
					if recs[j].Version == version {
						i, n = j, n+1
					}
				}
				switch {
				case host == b.canary && (n != 1 || recs[i].Outcome != history.VersionReverted || recs[i].RunID != runID):
					t.Errorf("history of the canary %s: %+v; want %s reverted by run %s\nfirst:\n%s\nresumed:\n%s", host, recs, version, runID, out1, out2)
				case host != b.canary && i >= 0:
					t.Errorf("history of %s records %s (%s), which only the canary received", host, version, recs[i].Outcome)
				}
			}
			// `rollguard history` reads the same store.
			hcode, hist, herr := rollguardEnv(t, st.env, "history", "-f", spec, "--host", b.canary, "--json")
			if hcode != 0 || !strings.Contains(hist, `"outcome": "reverted"`) || !strings.Contains(hist, runID) {
				t.Errorf("rollguard history --host %s: exit %d, %s%s; want the reverted record of run %s", b.canary, hcode, hist, herr, runID)
			}
			if h, held := st.holder(); held {
				t.Errorf("the lock is still held by run %s (%s) after the resumed run ended", h.RunID, h.Host)
			}
			for what, text := range map[string]string{"first run": out1, "refused run": refused.stdout + refused.stderr, "resumed run": out2, "history command": hist + herr} {
				if strings.Contains(text, b.token) {
					t.Errorf("the %s printed the %s token", what, b.name)
				}
			}
			for _, u := range st.unexpected() {
				t.Errorf("fake %s: request outside the modelled API: %s", b.name, u)
			}
		})
	}
}

// readJournal reads the journal through the runner, from the shared store.
func readJournal(t *testing.T, l *live, store ports.StateStore) *runner.JournalDoc {
	t.Helper()
	j, err := runner.OpenJournal(l.ctx, store)
	if err != nil {
		t.Fatalf("journal in the shared store: %v", err)
	}
	return j.Doc()
}
