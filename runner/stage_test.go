package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
)

// A stage passes only if its hosts carry the change: each case scripts
// the change playbook's per-host results (every other host changed, the
// revert playbook always succeeds) and checks the exit, the playbook runs
// (what was touched), the reason, and what report.json and the journal
// say of the hosts.
func TestStageJudgement(t *testing.T) {
	failed := func(msg string, changed ...string) *ports.HostResult {
		return &ports.HostResult{Status: ports.HostFailed, Message: msg, ChangedTasks: changed}
	}
	unreachable := func(changed ...string) *ports.HostResult {
		return &ports.HostResult{Status: ports.HostUnreachable, Message: "ssh: connect to host 10.0.0.1 port 22: Connection refused", ChangedTasks: changed}
	}
	unmatched := &ports.HostResult{Status: ports.HostUnmatched, Message: "the play matched no host: `hosts: web`, but the limit was web-1"}
	everywhere := func(r *ports.HostResult) map[string]*ports.HostResult {
		return map[string]*ports.HostResult{"web-1": r, "web-2": r, "web-3": r, "web-4": r}
	}
	withRevert := func(extra string) string {
		return strings.Replace(execSpec, "verify: 1m}", "verify: 1m, "+extra+"}", 1)
	}
	tests := []struct {
		name string
		spec string
		// site is the change's result per host (absent: changed).
		site map[string]*ports.HostResult
		// fail is the change's error on the canary.
		fail error
		// waitRevert holds the change's playbook until a revert ran.
		waitRevert bool
		exit       int
		runs       []string
		reason     []string
		hosts      map[string]reportedHost
		// applyEnd is the canary's apply-end journal detail.
		applyEnd string
		// unrecorded hosts have no version in the history: they never
		// received it.
		unrecorded []string
		// md are lines report.md holds (report.html says the same).
		md []string
		// telemetry is what rollguard's own metrics heard of hosts
		// applied and reverted.
		telemetry []string
	}{
		{
			name: "a play failing on every host stops at the canary, which is reverted",
			site: everywhere(failed(`task "Check": boom`, "Write app.conf")),
			exit: 3, runs: []string{"site.yml: web-1", "revert.yml: web-1"},
			reason: []string{"canary did not apply on 1 of 1 hosts (the canary tolerates none): web-1 failed: task \"Check\": boom"},
			hosts:  map[string]reportedHost{"web-1": {ports.HostFailed, true, true}, "web-2": {"", false, false}},
		},
		{
			name: "a play failing on every host before changing anything halts at the canary",
			site: everywhere(failed(`task "Check": boom`)),
			exit: 4, runs: []string{"site.yml: web-1"},
			reason: []string{"web-1 failed: task \"Check\": boom", "nothing this stage changed is left to revert: a person must decide"},
			hosts:  map[string]reportedHost{"web-1": {ports.HostFailed, false, false}},
		},
		{
			name: "a play that matched no host halts, naming the pattern and the limit",
			site: everywhere(unmatched),
			exit: 4, runs: []string{"site.yml: web-1"},
			reason:     []string{"web-1 unmatched: the play matched no host: `hosts: web`, but the limit was web-1"},
			hosts:      map[string]reportedHost{"web-1": {ports.HostUnmatched, false, false}},
			applyEnd:   "unmatched unchanged: web-1",
			unrecorded: []string{"web-1"},
			md: []string{"**Did not apply:** web-1 unmatched.",
				"| web-1 | canary | **unmatched** | the play matched no host: `hosts: web`, but the limit was web-1 | no play matched it; left as it was |"},
		},
		{
			name: "an unreachable canary is reported unreachable, never reverted",
			site: map[string]*ports.HostResult{"web-1": unreachable()},
			exit: 4, runs: []string{"site.yml: web-1"},
			reason:   []string{"web-1 unreachable: ssh: connect to host 10.0.0.1 port 22: Connection refused"},
			hosts:    map[string]reportedHost{"web-1": {ports.HostUnreachable, false, false}},
			applyEnd: "unreachable unchanged: web-1",
		},
		{
			name: "a canary unreachable after changing something is a halt: its state is unknown",
			site: map[string]*ports.HostResult{"web-1": unreachable("Write app.conf")},
			exit: 4, runs: []string{"site.yml: web-1"},
			reason:   []string{"web-1 became unreachable after the play changed something: not reverted, state unknown"},
			hosts:    map[string]reportedHost{"web-1": {ports.HostUnreachable, false, false}},
			applyEnd: "unreachable: web-1",
			md:       []string{"| web-1 | canary | **unreachable** | ssh: connect to host 10.0.0.1 port 22: Connection refused | unreachable after changing something: not reverted"},
		},
		{
			name: "max_failed 1: one failed host of wave-1 is reverted by name, the rollout goes on",
			spec: withRevert("max_failed: 1"),
			site: map[string]*ports.HostResult{"web-3": failed("boom", "Write app.conf")},
			exit: 0, runs: []string{"site.yml: web-1", "site.yml: web-2,web-3,web-4", "revert.yml: web-3"},
			hosts:     map[string]reportedHost{"web-3": {ports.HostFailed, true, true}, "web-4": {ports.HostChanged, true, false}},
			telemetry: []string{"applied canary +", "applied wave-1 +++", "reverted apply-failed +"},
		},
		{
			name: "max_failed 1: an unreachable host of wave-1 is tolerated and not reverted",
			spec: withRevert("max_failed: 1"),
			site: map[string]*ports.HostResult{"web-3": unreachable()},
			exit: 0, runs: []string{"site.yml: web-1", "site.yml: web-2,web-3,web-4"},
			hosts: map[string]reportedHost{"web-3": {ports.HostUnreachable, false, false}},
		},
		{
			name: "max_failed 1: two failed hosts stop wave-1, which is reverted; the canary keeps the change",
			spec: withRevert("max_failed: 1"),
			site: map[string]*ports.HostResult{"web-2": failed("boom", "Write app.conf"), "web-3": failed("boom", "Write app.conf")},
			exit: 3, runs: []string{"site.yml: web-1", "site.yml: web-2,web-3,web-4", "revert.yml: web-2,web-3,web-4"},
			reason: []string{"wave-1 did not apply on 2 of 3 hosts (revert.max_failed: 1): web-2, web-3 failed: boom"},
			hosts:  map[string]reportedHost{"web-1": {ports.HostChanged, true, false}, "web-4": {ports.HostChanged, true, true}},
		},
		{
			name: "max_failed 50% of 3 hosts is 1: a skipped and an unmatched host stop wave-1",
			spec: withRevert("max_failed: 50%"),
			site: map[string]*ports.HostResult{"web-2": {Status: ports.HostSkipped, Message: "every task was skipped on the host"}, "web-3": unmatched},
			exit: 3, runs: []string{"site.yml: web-1", "site.yml: web-2,web-3,web-4", "revert.yml: web-4"},
			reason:     []string{"wave-1 did not apply on 2 of 3 hosts (revert.max_failed: 50% of 3 hosts is 1): web-2 skipped: every task was skipped on the host; web-3 unmatched"},
			hosts:      map[string]reportedHost{"web-2": {ports.HostSkipped, false, false}, "web-4": {ports.HostChanged, true, true}},
			unrecorded: []string{"web-2", "web-3"},
			md: []string{"**Did not apply:** web-2 skipped, web-3 unmatched.", "| web-3 | wave-1 | unmatched | no: no play matched it; left as it was |",
				"| web-4 | wave-1 | changed | yes: wave-1 did not apply on 2 of 3 hosts"},
			telemetry: []string{"applied canary +", "applied wave-1 +", "reverted apply-failed +"},
		},
		{
			name: "max_failed 100%: a wave where every host failed still does not pass",
			spec: withRevert("max_failed: 100%"),
			site: map[string]*ports.HostResult{"web-2": failed("boom", "x"), "web-3": failed("boom", "x"), "web-4": failed("boom", "x")},
			exit: 3, runs: []string{"site.yml: web-1", "site.yml: web-2,web-3,web-4", "revert.yml: web-2,web-3,web-4"},
			reason: []string{"no host of wave-1 carries the change: web-2, web-3, web-4 failed: boom"},
		},
		{
			name:       "a host policy reverting the only canary host during its apply: the canary does not pass",
			spec:       execSpec + "  - name: not-web-1\n    host_rollback_when: 'host.name == \"web-1\" && phase == \"apply\"'\n",
			waitRevert: true,
			exit:       3, runs: []string{"revert.yml: web-1", "site.yml: web-1"},
			reason: []string{"no host of canary carries the change: web-1 host policy not-web-1", "reverted already"},
		},
		{
			name: "an apply that times out says so and reverts what it may have changed",
			site: map[string]*ports.HostResult{"web-1": {Status: ports.HostSkipped}},
			fail: fmt.Errorf("apply site.yml: stopped after 30m0s (apply.timeout): %w", context.DeadlineExceeded),
			exit: 3, runs: []string{"site.yml: web-1", "revert.yml: web-1"},
			reason: []string{"apply-timeout fired in wave canary: the playbook timed out: it ran past apply.timeout (30m) and was stopped"},
		},
		{
			name: "a host policy reverting the only canary host while it is monitored: the canary does not pass",
			spec: execSpec + "  - name: not-web-1\n    host_rollback_when: 'host.name == \"web-1\" && phase == \"monitor\"'\n",
			exit: 3, runs: []string{"site.yml: web-1", "revert.yml: web-1"},
			reason: []string{"no host of canary carries the change at the end of its monitoring: web-1 host policy not-web-1"},
			hosts:  map[string]reportedHost{"web-1": {ports.HostChanged, true, true}},
		},
		{
			name: "host policies reverting every host of wave-1: the rollout ends and the canary keeps the change (revert.scope: wave)",
			spec: execSpec + "  - name: not-wave-1\n    host_rollback_when: 'host.wave == \"wave-1\" && phase == \"monitor\"'\n",
			exit: 3, runs: []string{"site.yml: web-1", "site.yml: web-2,web-3,web-4", "revert.yml: web-2,web-3,web-4"},
			reason: []string{"no host of wave-1 carries the change at the end of its monitoring: web-2, web-3, web-4 host policy not-wave-1", "reverted already"},
			hosts:  map[string]reportedHost{"web-1": {ports.HostChanged, true, false}, "web-2": {ports.HostChanged, true, true}},
		},
		{
			name: "host policies reverting every host of wave-1: with revert.scope: all the canary is reverted too",
			spec: withRevert("scope: all") + "  - name: not-wave-1\n    host_rollback_when: 'host.wave == \"wave-1\" && phase == \"monitor\"'\n",
			exit: 3, runs: []string{"site.yml: web-1", "site.yml: web-2,web-3,web-4", "revert.yml: web-2,web-3,web-4", "revert.yml: web-1"},
			reason: []string{"host-policy fired in wave wave-1: no host of wave-1 carries the change at the end of its monitoring: web-2, web-3, web-4 host policy not-wave-1"},
			hosts:  map[string]reportedHost{"web-1": {ports.HostChanged, true, true}, "web-2": {ports.HostChanged, true, true}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := tc.spec
			if spec == "" {
				spec = execSpec
			}
			reverted := make(chan struct{})
			ro, app, store := execRollout(t, spec, func(req ports.ApplyRequest) ports.ApplyResult {
				res := changedAll(req)
				if strings.HasSuffix(req.Playbook, "revert.yml") {
					if tc.waitRevert {
						close(reverted)
					}
					return res
				}
				if tc.waitRevert {
					<-reverted
				}
				for i, h := range res.Hosts {
					if r := tc.site[h.Host]; r != nil {
						res.Hosts[i] = *r
						res.Hosts[i].Host = h.Host
					}
				}
				return res
			})
			app.fail = func(req ports.ApplyRequest) error {
				if strings.HasSuffix(req.Playbook, "site.yml") && slices.Equal(req.Limit, []string{"web-1"}) {
					return tc.fail
				}
				return nil
			}
			tel := &recordedTelemetry{}
			ro.Telemetry = tel
			var out strings.Builder
			ro.Out = &out
			res, err := ro.Execute(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			r := res.Report
			if r.Waves[0].Outcome != report.WavePassed && strings.Contains(out.String(), "canary passed") {
				// The timeline never says passed of a stage that ended the run.
				t.Errorf("the timeline says the canary passed, and the report says it %s:\n%s", r.Waves[0].Outcome, out.String())
			}
			if tc.telemetry != nil {
				var hosts []string
				for _, c := range tel.calls {
					if strings.HasPrefix(c, "applied ") || strings.HasPrefix(c, "reverted ") {
						hosts = append(hosts, c)
					}
				}
				if !slices.Equal(hosts, tc.telemetry) {
					t.Errorf("telemetry heard %q, want %q", hosts, tc.telemetry)
				}
			}
			if res.ExitCode != tc.exit {
				t.Errorf("exit %d (%s: %s), want %d", res.ExitCode, r.Outcome, r.Reason, tc.exit)
			}
			if tc.waitRevert {
				// The two playbooks run at once: their order is not known.
				slices.Sort(app.runs)
			}
			if !slices.Equal(app.runs, tc.runs) {
				t.Errorf("playbook runs %q, want %q", app.runs, tc.runs)
			}
			for _, want := range tc.reason {
				if !strings.Contains(r.Reason, want) {
					t.Errorf("reason %q\nlacks %q", r.Reason, want)
				}
			}
			got := reportHosts(t, r)
			for name, want := range tc.hosts {
				if got[name] != want {
					t.Errorf("report.json says %s is %+v, want %+v", name, got[name], want)
				}
			}
			for _, h := range tc.unrecorded {
				if recs, err := ro.History.For(t.Context(), h); err != nil || len(recs) != 0 {
					t.Errorf("history of %s, which never received the version: %+v, %v", h, recs, err)
				}
			}
			md, page := report.Markdown(r), html.UnescapeString(report.HTML(r))
			for _, want := range tc.md {
				if !strings.Contains(md, want) {
					t.Errorf("report.md lacks %q:\n%s", want, md)
				}
			}
			for name, want := range tc.hosts {
				// A host left as it was is never called reverted.
				if !want.Reverted && (strings.Contains(md, name+" reverted") || strings.Contains(page, name+" (reverted)")) {
					t.Errorf("the pages call %s, which was left as it was, reverted", name)
				}
			}
			if len(tc.md) > 0 && !strings.Contains(page, "Did not apply: ") {
				t.Errorf("report.html does not name the hosts that did not apply")
			}
			if tc.applyEnd != "" {
				j, err := OpenJournal(t.Context(), store)
				if err != nil {
					t.Fatal(err)
				}
				found := false
				for _, e := range j.Doc().Entries {
					found = found || e.Step == JournalApplyEnd && e.Wave == "canary" && e.Detail == tc.applyEnd
				}
				if !found {
					t.Errorf("the journal's canary apply-end does not say %q: %+v", tc.applyEnd, j.Doc().Entries)
				}
			}
		})
	}
}

// reportedHost is what report.json says of a host.
type reportedHost struct {
	Status   string `json:"status"`
	Applied  bool   `json:"applied"`
	Reverted bool   `json:"reverted"`
}

// reportHosts writes r as report.json and reads back what it says of
// each host.
func reportHosts(t *testing.T, r *report.Report) map[string]reportedHost {
	t.Helper()
	dir := t.TempDir()
	if err := report.WriteReport(dir, r); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Hosts []json.RawMessage `json:"hosts"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]reportedHost{}
	for _, raw := range doc.Hosts {
		var name struct{ Name string }
		var s reportedHost
		if err := errors.Join(json.Unmarshal(raw, &name), json.Unmarshal(raw, &s)); err != nil {
			t.Fatal(err)
		}
		out[name.Name] = s
	}
	return out
}

// emptyFor answers like flatMetrics, but the baseline (Range) of the
// hosts it names is empty, as with rate(x[1s]) on a 1 s scrape.
type emptyFor map[string]bool

func (e emptyFor) Instant(ctx context.Context, q ports.Query, keys []string, at time.Time, out []float64) error {
	return flatMetrics{}.Instant(ctx, q, keys, at, out)
}

func (e emptyFor) Range(ctx context.Context, q ports.Query, keys []string, from, to time.Time, step time.Duration) ([]ports.Samples, error) {
	out, err := flatMetrics{}.Range(ctx, q, keys, from, to, step)
	for i, k := range keys {
		if e[k] {
			out[i] = ports.Samples{}
		}
	}
	return out, err
}

// A host whose baseline is empty is not changed: the canary's stops the
// run before anything is applied (exit 1), a later wave's stops that
// wave before its apply (exit 4, the canary keeps the change); the reason
// names the host, the query and the window.
func TestEmptyBaseline(t *testing.T) {
	f := func(empty string, exit int, runs, reason []string) {
		t.Helper()
		ro, app, _ := execRollout(t, execSpec, changedAll)
		ro.Metrics = emptyFor{empty: true}
		res, err := ro.Execute(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if r := res.Report; res.ExitCode != exit {
			t.Errorf("%s without a baseline: exit %d (%s: %s), want %d", empty, res.ExitCode, r.Outcome, r.Reason, exit)
		}
		if !slices.Equal(app.runs, runs) {
			t.Errorf("%s without a baseline: playbook runs %q, want %q", empty, app.runs, runs)
		}
		for _, want := range reason {
			if !strings.Contains(res.Report.Reason, want) {
				t.Errorf("reason %q\nlacks %q", res.Report.Reason, want)
			}
		}
	}
	window := "over [2024-01-01T11:30:00Z, 2024-01-01T12:00:00Z) (metrics.baseline 30m, every 15s)"
	f("web-1", 1, nil, []string{"canary not started: no baseline: query latency (latency) returned no sample for web-1 (instance=\"web-1\"), " + window,
		"no host was changed"})
	f("web-3", 4, []string{"site.yml: web-1"}, []string{"wave-1 not started: no baseline: query latency (latency) returned no sample for web-3 (instance=\"web-3\")",
		"1 hosts of earlier waves keep the change (web-1): a person must decide"})
}

// Each playbook gets its own variables: the change gets apply's extra
// vars, forks and vault file; the revert gets revert.extra_vars and none
// of the change's (extra vars override everything in Ansible, so the
// change's would override the revert's own values), and its forks and
// vault file, or apply's when it sets none.
func TestPlaybookRequests(t *testing.T) {
	const apply = "apply: {playbook: playbooks/site.yml, version: v2, forks: 7, vault_password_file: vault/apply.pw, extra_vars: {version: v2, port: 8080}}"
	f := func(revert string, want map[string]ports.ApplyRequest) {
		t.Helper()
		spec := strings.Replace(execSpec, "apply: {playbook: playbooks/site.yml, version: v2}", apply, 1)
		spec = strings.Replace(spec, "revert: {playbook: playbooks/revert.yml, verify: 1m}", revert, 1)
		var mu sync.Mutex
		got := map[string]ports.ApplyRequest{}
		ro, _, _ := execRollout(t, spec, func(req ports.ApplyRequest) ports.ApplyResult {
			mu.Lock()
			got[filepath.Base(req.Playbook)] = req
			mu.Unlock()
			res := changedAll(req)
			if filepath.Base(req.Playbook) == "site.yml" {
				// The canary's play fails after its write: it is reverted.
				res.Hosts[0] = ports.HostResult{Host: req.Limit[0], Status: ports.HostFailed, Message: "check failed", ChangedTasks: []string{"write"}}
			}
			return res
		})
		res, err := ro.Execute(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode != 3 {
			t.Fatalf("%s: exit %d (%s), want 3 after the canary's revert", revert, res.ExitCode, res.Report.Reason)
		}
		for pb, w := range want {
			g, ok := got[pb]
			switch {
			case !ok:
				t.Errorf("%s: %s did not run", revert, pb)
			case !reflect.DeepEqual(g.ExtraVars, w.ExtraVars) || g.Forks != w.Forks || filepath.Base(g.VaultPasswordFile) != w.VaultPasswordFile:
				t.Errorf("%s: %s ran with extra vars %v, forks %d, vault file %q; want %v, %d, %q", revert, pb,
					g.ExtraVars, g.Forks, g.VaultPasswordFile, w.ExtraVars, w.Forks, w.VaultPasswordFile)
			}
		}
	}
	change := ports.ApplyRequest{ExtraVars: map[string]any{"version": "v2", "port": 8080}, Forks: 7, VaultPasswordFile: "apply.pw"}
	f("revert: {playbook: playbooks/revert.yml, verify: 1m}", map[string]ports.ApplyRequest{
		"site.yml":   change,
		"revert.yml": {Forks: 7, VaultPasswordFile: "apply.pw"},
	})
	f("revert: {playbook: playbooks/revert.yml, verify: 1m, forks: 2, vault_password_file: vault/revert.pw, extra_vars: {restore: prev}}", map[string]ports.ApplyRequest{
		"site.yml":   change,
		"revert.yml": {ExtraVars: map[string]any{"restore": "prev"}, Forks: 2, VaultPasswordFile: "revert.pw"},
	})
}
