package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rollguard/rollguard/history"
	"github.com/rollguard/rollguard/policies"
	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
)

// This file reverts hosts: the revert methods tried in order (revert
// playbook, last known-good version, snapshot), then the verification
// that the hosts' metrics came back into their baseline band.

// revertHosts reverts hosts by name with the configured methods, verifies
// the revert in a live run, and records it in the report. The last
// rollback in the report is the one that ended the run.
// hostLevel says the rollout goes on after it (a host policy, a failed
// host); the journal keeps that, so a resumed run knows whether the run
// was ending. A host-level revert is verified at the run's later polls
// (verifyLater); its revert-end is journaled once the methods ran.
func (x *execution) revertHosts(ctx context.Context, names []string, reason, trigger string, hostLevel bool) *report.Rollback {
	rb := &report.Rollback{Trigger: trigger, Reason: reason, Scope: ScopeHost, Hosts: nonNil(names), Methods: []report.Method{},
		StartedAt: x.Clock.Now(), HostLevel: hostLevel}
	// What changed next to what degraded, read before the revert
	// restarts the hosts' detectors.
	attribution := x.attribution(names)
	verifyingLater := false
	scope := "fleet"
	if hostLevel {
		scope = ScopeHost
	}
	if len(names) > 0 {
		// Journaled before it acts, like every step: a revert the
		// journal does not know of would leave a resumed run trusting
		// hosts that no longer carry the change.
		if err := x.journalMust(ctx, JournalEntry{Step: JournalRevertStart, Hosts: names, Scope: scope, Detail: trigger + ": " + reason}); err != nil {
			return x.revertNotJournaled(ctx, rb, names, reason, err, attribution)
		}
		x.tel.HostsReverted(trigger, len(names))
		x.notJournaled = slices.DeleteFunc(x.notJournaled, func(n string) bool { return slices.Contains(names, n) })
	}
	for _, n := range names {
		i := x.index[n]
		x.exclude(i)
		x.hosts[i].reverted = true
		x.hosts[i].revertReason = reason
	}
	switch {
	case len(names) == 0:
		rb.Verified = true
		rb.Verification = "nothing to revert"
	case x.dry():
		m := "revert-playbook"
		if x.Spec.Revert.Playbook == "" {
			m = "none configured"
		}
		rb.Methods = append(rb.Methods, report.Method{Name: m, Hosts: names, OK: true, Detail: "dry run: not executed"})
		rb.Verification = "dry run: a recording cannot show the effect of a revert"
	default:
		// A host-level revert is verified while the rollout goes on: the
		// stage's own polls watch the host come back (verifyLater).
		switch reverted := x.revertLive(ctx, names, rb); {
		case reverted && hostLevel:
			x.verifyLater(rb, attribution)
			verifyingLater = true
		case reverted:
			x.verify(ctx, rb)
		}
	}
	rb.FinishedAt = x.Clock.Now()
	x.report.Rollback = rb
	x.report.Rollbacks = append(x.report.Rollbacks, rb)
	if len(names) > 0 {
		x.journal(ctx, JournalEntry{Step: JournalRevertEnd, Hosts: names, Scope: scope, Detail: rb.Verification})
		x.recordOutcome(ctx, names, history.VersionReverted)
		wave := x.hosts[x.index[names[0]]].wave
		x.alert(ctx, ports.EventRollback, wave, names, fmt.Sprintf("%s: %s; reverted %s", trigger, reason, abbreviate(names, 8)), nil, attribution)
		if !x.dry() && !rb.Verified && !verifyingLater {
			x.alert(ctx, ports.EventVerifyFailed, wave, names, rb.Verification, nil, attribution)
		}
	}
	return rb
}

// revertNotJournaled is a revert that does not run because the state
// store did not take its journal entry: the hosts keep the change, as the
// journal says, and are named in the report, the output and an alert. The
// run ends halted (rollout.go's journalLost) unless a later revert of the
// same hosts gets journaled.
func (x *execution) revertNotJournaled(ctx context.Context, rb *report.Rollback, names []string, reason string, err error, attribution []string) *report.Rollback {
	why := fmt.Sprintf("not reverted: the journal could not record the revert (%v); %s keep the change, as the journal says", err, strings.Join(names, ", "))
	x.logf("   NOT REVERTED: %s", why)
	x.log.Error("revert not journaled", "hosts", names, "err", err)
	rb.Methods = append(rb.Methods, report.Method{Name: "none", Hosts: names, OK: false, Detail: why})
	rb.Verification = why
	rb.FinishedAt = x.Clock.Now()
	for _, n := range names {
		x.hosts[x.index[n]].revertReason = fmt.Sprintf("due for revert (%s), %s", reason, why)
		if !slices.Contains(x.notJournaled, n) {
			x.notJournaled = append(x.notJournaled, n)
		}
	}
	x.notJournaledErr = err
	x.report.Rollback = rb
	x.report.Rollbacks = append(x.report.Rollbacks, rb)
	wave := x.hosts[x.index[names[0]]].wave
	x.alert(ctx, ports.EventVerifyFailed, wave, names, why, nil, attribution)
	return rb
}

// revertLive runs the revert methods in order: the revert playbook, the
// last known-good version, the snapshot. Each later method only gets the
// hosts the earlier ones could not revert; every attempt is in the
// report. It says whether every host was reverted, and so is to be
// verified.
func (x *execution) revertLive(ctx context.Context, names []string, rb *report.Rollback) bool {
	// A revert must run even when the run was interrupted: it gets its
	// own context, bounded by the apply timeout.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), x.applyTimeout())
	defer cancel()
	left := names
	for _, m := range x.revertMethods() {
		if len(left) == 0 {
			break
		}
		x.logf("   revert by %s: %s", m.name, abbreviate(left, 8))
		ok, failed, detail := m.run(rctx, left)
		rb.Methods = append(rb.Methods, report.Method{Name: m.name, Hosts: slices.Clone(left), OK: len(failed) == 0 && len(ok) > 0, Detail: detail})
		left = failed
	}
	if len(left) > 0 {
		rb.Methods = append(rb.Methods, report.Method{Name: "none left", Hosts: left, OK: false, Detail: "no revert method succeeded on these hosts: they may keep the change"})
		rb.Verification = fmt.Sprintf("not verified: %s could not be reverted", strings.Join(left, ", "))
		x.logf("   revert FAILED on %s", strings.Join(left, ", "))
		return false
	}
	return true
}

func (x *execution) applyTimeout() time.Duration {
	if t := x.Spec.Apply.Timeout.D(); t > 0 {
		return t
	}
	return 30 * time.Minute
}

// defaultVerify is revert.verify when the spec does not set it: as long
// as the detector needs to see a reverted host back in its band, twice.
//
//	verify = W + 2 x smoothing x interval
//
// W is the longest range window of the queries (the 1m of
// rate(...[1m]), the 5m of a [5m:30s] subquery): only a poll that long
// after the revert reads none of the changed behaviour. Then smoothing
// polls fill the detector's moving average with such polls (it restarts
// empty when the host is reverted), and as many again let one noisy poll
// pass without failing the verification. With the medium preset
// (smoothing 2), 15 s polls and rate(...[1m]): 1m + 4 x 15s = 2m.
func defaultVerify(s *Spec) Duration {
	smoothing := 2
	if cfg, err := detectorConfig(s); err == nil {
		smoothing = cfg.Smoothing
	}
	var window time.Duration
	for _, q := range s.Metrics.Queries {
		window = max(window, rangeWindow(q.Query))
	}
	return Duration(window + time.Duration(2*smoothing)*s.Metrics.Interval.D())
}

// rangeSelector matches a PromQL range or subquery window: [1m], [90s],
// [1h30m], [5m:30s].
var rangeSelector = regexp.MustCompile(`\[\s*((?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w|y))+)\s*(?::[^\]]*)?\]`)

// rangeWindow is the longest range window written in a PromQL query (0
// when it has none).
func rangeWindow(query string) time.Duration {
	var longest time.Duration
	for _, m := range rangeSelector.FindAllStringSubmatch(query, -1) {
		if d, ok := promDuration(m[1]); ok {
			longest = max(longest, d)
		}
	}
	return longest
}

// promDuration parses a PromQL duration: Go's units plus d, w and y.
func promDuration(s string) (time.Duration, bool) {
	units := map[string]time.Duration{"ms": time.Millisecond, "s": time.Second, "m": time.Minute, "h": time.Hour,
		"d": 24 * time.Hour, "w": 7 * 24 * time.Hour, "y": 365 * 24 * time.Hour}
	var total time.Duration
	for _, part := range promDurationPart.FindAllStringSubmatch(s, -1) {
		v, err := strconv.ParseFloat(part[1], 64)
		if err != nil {
			return 0, false
		}
		total += time.Duration(v * float64(units[part[2]]))
	}
	return total, total > 0
}

var promDurationPart = regexp.MustCompile(`(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)`)

// verify watches reverted hosts until every metric is back in its
// baseline band, for at most revert.verify (verifyLimit). Its polls also
// serve the host-level reverts verified while the rollout goes on.
func (x *execution) verify(ctx context.Context, rb *report.Rollback) {
	x.logf("   reverted %s; verifying", abbreviate(rb.Hosts, 8))
	rb.VerifyStartedAt = ptr(x.Clock.Now())
	x.pollUntil(ctx, func() bool { return x.verifyPoll(rb) }, func(err error) {
		rb.Verification = "not verified: " + err.Error()
	})
}

// verifyLimit is how long a verification may take: revert.verify, or
// defaultVerify when unset.
func (x *execution) verifyLimit() time.Duration {
	if limit := x.Spec.Revert.Verify.D(); limit > 0 {
		return limit
	}
	return defaultVerify(x.Spec).D()
}

// verifyPoll judges rb's verification (begun at its VerifyStartedAt) at
// the poll the engine just took: it says whether the verification ended
// (verified, or verifyLimit passed without) and writes its outcome into
// the rollback.
func (x *execution) verifyPoll(rb *report.Rollback) bool {
	var out []string
	for _, n := range rb.Hosts {
		if !x.eng.InBand(x.index[n]) {
			out = append(out, n)
		}
	}
	elapsed := x.Clock.Now().Sub(*rb.VerifyStartedAt)
	switch {
	case len(out) == 0:
		rb.Verified = true
		rb.Verification = fmt.Sprintf("every metric of %d hosts back in its baseline band after %s", len(rb.Hosts), fmtDuration(elapsed))
		x.logf("   %s verified after %s", abbreviate(rb.Hosts, 8), fmtDuration(elapsed))
	case elapsed >= x.verifyLimit():
		rb.Verification = fmt.Sprintf("not verified: after %s still outside the baseline band: %s", fmtDuration(elapsed), abbreviate(out, 8))
		x.logf("   NOT verified: %s", rb.Verification)
	default:
		return false
	}
	rb.FinishedAt = x.Clock.Now()
	return true
}

// pollUntil polls the metrics every interval, on its grid, until done
// says so after a poll. Every poll also judges the host-level reverts
// under verification (verifyingPoll). A revert must be verified even
// when the run was interrupted: the polls do not end with ctx; failed
// hears the clock's error, if it has one.
func (x *execution) pollUntil(ctx context.Context, done func() bool, failed func(error)) {
	vctx := context.WithoutCancel(ctx)
	tick := newTicker(x.Clock, x.Spec.Metrics.Interval.D())
	for {
		if err := tick.wait(vctx); err != nil {
			failed(err)
			return
		}
		now := x.Clock.Now()
		x.observe(vctx, now)
		x.eng.Tick(policies.PhaseMonitor, 0)
		x.verifyingPoll(vctx, now)
		if done() {
			return
		}
	}
}

// pendingVerify is a host-level revert under verification while the
// rollout goes on, and what its alert says, should it fail.
type pendingVerify struct {
	rb          *report.Rollback
	attribution []string
}

// verifyLater starts the verification of a host-level revert, judged at
// every later poll of the run (verifyingPoll): the rollout goes on, and
// every other host is judged meanwhile. A run that ends first finishes
// it (finishVerifying).
func (x *execution) verifyLater(rb *report.Rollback, attribution []string) {
	rb.VerifyStartedAt = ptr(x.Clock.Now())
	rb.Verification = "under way while the rollout goes on"
	x.logf("   reverted %s; verifying while the rollout goes on (up to %s)", abbreviate(rb.Hosts, 8), fmtDuration(x.verifyLimit()))
	x.verifying = append(x.verifying, pendingVerify{rb, attribution})
}

// verifyingPoll judges the verifications under way at the poll the
// engine took at polled, those that began before it; a failed one is
// alerted.
func (x *execution) verifyingPoll(ctx context.Context, polled time.Time) {
	x.verifying = slices.DeleteFunc(x.verifying, func(p pendingVerify) bool {
		if !p.rb.VerifyStartedAt.Before(polled) || !x.verifyPoll(p.rb) {
			return false
		}
		if !p.rb.Verified {
			wave := x.hosts[x.index[p.rb.Hosts[0]]].wave
			x.alert(ctx, ports.EventVerifyFailed, wave, p.rb.Hosts, p.rb.Verification, nil, p.attribution)
		}
		return true
	})
}

// finishVerifying polls on until every host-level verification under
// way has ended: a run reports how each of its reverts ended.
func (x *execution) finishVerifying(ctx context.Context) {
	if len(x.verifying) == 0 {
		return
	}
	x.logf("   waiting for the verification of %d host-level reverts", len(x.verifying))
	x.pollUntil(ctx, func() bool { return len(x.verifying) == 0 }, func(err error) {
		for _, p := range x.verifying {
			p.rb.Verification = "not verified: " + err.Error()
			p.rb.FinishedAt = x.Clock.Now()
		}
		x.verifying = nil
	})
}

// revertMethod reverts some hosts and says which it could not.
type revertMethod struct {
	name string
	run  func(ctx context.Context, hosts []string) (ok, failed []string, detail string)
}

// revertMethods are the configured methods, in the order they are tried.
func (x *execution) revertMethods() []revertMethod {
	var ms []revertMethod
	if x.Spec.Revert.Playbook != "" {
		ms = append(ms, revertMethod{"revert-playbook", func(ctx context.Context, hosts []string) ([]string, []string, string) {
			req := x.applyRequest(ctx, hosts)
			rv := x.Spec.Revert
			req.Playbook, req.ExtraVars, req.Forks, req.VaultPasswordFile = rv.Playbook, rv.ExtraVars, rv.Forks, rv.VaultPasswordFile
			return x.applyFor(ctx, req, hosts)
		}})
	}
	if x.Spec.Revert.KnownGood {
		ms = append(ms, revertMethod{"known-good", x.revertKnownGood})
	}
	if x.Snapshots != nil {
		ms = append(ms, revertMethod{"snapshot", x.revertSnapshot})
	}
	return ms
}

// applyFor runs one playbook and splits hosts by outcome.
func (x *execution) applyFor(ctx context.Context, req ports.ApplyRequest, hosts []string) (ok, failed []string, detail string) {
	res, err := x.Applier.Apply(ctx, req, nil)
	if err != nil {
		return nil, hosts, err.Error()
	}
	status := map[string]ports.HostResult{}
	for _, hr := range res.Hosts {
		status[hr.Host] = hr
	}
	var notes []string
	for _, h := range hosts {
		hr, seen := status[h]
		switch {
		case !seen:
			failed = append(failed, h)
			notes = append(notes, h+": no result")
		case hr.Status == ports.HostFailed || hr.Status == ports.HostUnreachable:
			failed = append(failed, h)
			notes = append(notes, fmt.Sprintf("%s %s: %s", h, hr.Status, hr.Message))
		default:
			ok = append(ok, h)
		}
	}
	return ok, failed, strings.Join(notes, "; ")
}

// revertKnownGood re-runs the apply playbook with each host's last
// known-good version (from an earlier run), one playbook run per distinct
// version.
func (x *execution) revertKnownGood(ctx context.Context, hosts []string) (ok, failed []string, detail string) {
	if x.History == nil {
		return nil, hosts, "no history store"
	}
	type group struct {
		rec   history.VersionRecord
		hosts []string
	}
	groups := map[string]*group{}
	var notes []string
	for _, h := range hosts {
		rec, found, err := x.lastKnownGood(ctx, h)
		switch {
		case err != nil:
			failed = append(failed, h)
			notes = append(notes, fmt.Sprintf("%s: history: %v", h, err))
			continue
		case !found:
			failed = append(failed, h)
			notes = append(notes, h+": no known-good version in the history")
			continue
		}
		key, _ := json.Marshal([]any{rec.Version, rec.Playbook, rec.ExtraVars})
		g := groups[string(key)]
		if g == nil {
			g = &group{rec: rec}
			groups[string(key)] = g
		}
		g.hosts = append(g.hosts, h)
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		g := groups[k]
		req := x.applyRequest(ctx, g.hosts)
		if g.rec.Playbook != "" {
			req.Playbook = g.rec.Playbook
		}
		req.ExtraVars = g.rec.ExtraVars
		o, f, d := x.applyFor(ctx, req, g.hosts)
		ok, failed = append(ok, o...), append(failed, f...)
		notes = append(notes, fmt.Sprintf("version %s on %s", g.rec.Version, strings.Join(g.hosts, ",")))
		if d != "" {
			notes = append(notes, d)
		}
	}
	return ok, failed, strings.Join(notes, "; ")
}

// lastKnownGood is the newest known-good version of an earlier run: this
// run's own version may already be marked known-good on earlier waves.
func (x *execution) lastKnownGood(ctx context.Context, host string) (history.VersionRecord, bool, error) {
	recs, err := x.History.For(ctx, host)
	if err != nil {
		return history.VersionRecord{}, false, err
	}
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Outcome == history.VersionKnownGood && recs[i].RunID != x.RunID {
			return recs[i], true, nil
		}
	}
	return history.VersionRecord{}, false, nil
}

// revertSnapshot restores the snapshots this run took.
func (x *execution) revertSnapshot(ctx context.Context, hosts []string) (ok, failed []string, detail string) {
	var with []ports.Host
	var notes []string
	for _, n := range hosts {
		h := &x.hosts[x.index[n]]
		if h.snapshot == "" {
			failed = append(failed, n)
			notes = append(notes, n+": no snapshot taken")
			continue
		}
		with = append(with, h.Host)
	}
	for _, res := range x.Snapshots.Restore(ctx, with, x.RunID) {
		if res.OK {
			ok = append(ok, res.Host)
			continue
		}
		failed = append(failed, res.Host)
		notes = append(notes, fmt.Sprintf("%s: %v", res.Host, res.Err))
	}
	return ok, failed, strings.Join(notes, "; ")
}
