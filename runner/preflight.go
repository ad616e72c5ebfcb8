package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
)

// This file tells the diff gate: before the canary's apply, the playbook
// runs in check mode with --diff (through the same Applier as the apply,
// with ApplyRequest.Check) over the canary or every host, and the
// rollout stops, before any host is changed, when a host's check failed
// or broke one of the spec's preflight limits. plan --diff runs the same
// check; a dry run judges a recorded one.

// CheckHosts are the hosts the pre-flight check covers: the canary's, or
// every host for preflight.check: all.
func CheckHosts(spec *Spec, plan *Plan) []ports.Host {
	if spec.Preflight.Check == CheckAll {
		return plan.Hosts
	}
	return plan.Waves[0].Hosts
}

// RunCheck runs apply.playbook in check mode with --diff over hosts,
// with the apply's inventory, variables, vault password file and forks,
// and judges the result against spec.Preflight. The error says the check
// could not run at all; a host whose check failed is in the result.
// Cancelling ctx stops the playbook (ports.Applier.Apply).
func RunCheck(ctx context.Context, a ports.Applier, spec *Spec, plan *Plan, hosts []ports.Host) (*report.Preflight, error) {
	req := applyRequest(spec, plan, hostNames(hosts))
	req.Check = true
	res, err := a.Apply(ctx, req, nil)
	if err != nil {
		return nil, fmt.Errorf("pre-flight check of %s: %w", spec.Apply.Playbook, err)
	}
	pf := &report.Preflight{Scope: string(spec.Preflight.Check), Hosts: checkHosts(res)}
	if pf.Scope == "" {
		pf.Scope = string(CheckCanary)
	}
	JudgeCheck(spec.Preflight, pf)
	return pf, nil
}

// checkHosts turns a check run's per-host results into the report's.
func checkHosts(res ports.ApplyResult) []report.CheckHost {
	out := make([]report.CheckHost, len(res.Hosts))
	for i, hr := range res.Hosts {
		h := report.CheckHost{Name: hr.Host, Status: hr.Status, Message: hr.Message}
		for _, c := range hr.Changes {
			tc := report.TaskChange{Task: c.Task}
			for _, f := range c.Files {
				tc.Files = append(tc.Files, report.FileChange(f))
			}
			h.Changes = append(h.Changes, tc)
		}
		out[i] = h
	}
	return out
}

// ReadCheckResult reads a recorded check result for a dry run: a JSON
// file in report.json's "preflight" form, of which hosts is read (plan
// --diff --json prints it as "check").
func ReadCheckResult(file string) (*report.Preflight, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("check result: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var pf report.Preflight
	if err := dec.Decode(&pf); err != nil {
		return nil, fmt.Errorf("check result %s: %w", file, err)
	}
	if len(pf.Hosts) == 0 {
		return nil, fmt.Errorf("check result %s: no hosts: want {\"hosts\":[{\"name\",\"status\",\"changes\":[{\"task\",\"files\":[{\"path\",\"added\",\"removed\"}]}]}]}", file)
	}
	for i, h := range pf.Hosts {
		if h.Name == "" || h.Status == "" {
			return nil, fmt.Errorf("check result %s: hosts[%d]: name and status are required", file, i)
		}
	}
	pf.Recorded, pf.Outcome, pf.Reason = true, "", ""
	for i := range pf.Hosts {
		pf.Hosts[i].Violations = nil
	}
	return &pf, nil
}

// JudgeCheck judges every host's check against the limits, filling in
// each host's violations and the check's outcome and reason. A host
// whose check failed, was unreachable or matched no play stops the
// rollout like a broken limit: its apply would fail the same way.
func JudgeCheck(p Preflight, pf *report.Preflight) {
	var stopped []string
	var changedHosts, tasks, files, added, removed int
	for i := range pf.Hosts {
		h := &pf.Hosts[i]
		h.Violations = hostViolations(p, *h)
		if len(h.Violations) > 0 {
			stopped = append(stopped, h.Name+": "+strings.Join(h.Violations, "; "))
		}
		t, f, a, r := h.Totals()
		if t > 0 {
			changedHosts++
		}
		tasks, files, added, removed = tasks+t, files+f, added+a, removed+r
	}
	if len(stopped) > 0 {
		pf.Outcome = report.CheckStopped
		const show = 5
		more := ""
		if len(stopped) > show {
			more = fmt.Sprintf("; and %d more hosts (see the report)", len(stopped)-show)
			stopped = stopped[:show]
		}
		pf.Reason = fmt.Sprintf("the pre-flight check stopped the rollout before any change on %s", strings.Join(stopped, "; ")+more)
		return
	}
	pf.Outcome = report.CheckPassed
	pf.Reason = fmt.Sprintf("the check of %s passed: %d would change (%s, %s, +%d -%d lines)",
		report.Count(len(pf.Hosts), "host"), changedHosts, report.Count(tasks, "task"), report.Count(files, "file"), added, removed)
}

// hostViolations lists, as sentences, what in one host's check stops the
// rollout.
func hostViolations(p Preflight, h report.CheckHost) []string {
	var out []string
	switch h.Status {
	case ports.HostFailed, ports.HostUnreachable, ports.HostUnmatched:
		msg := h.Message
		if msg == "" {
			msg = "no message"
		}
		out = append(out, fmt.Sprintf("the check was %s (%s)", h.Status, msg))
	}
	if p.MaxChangedTasks != nil && len(h.Changes) > *p.MaxChangedTasks {
		out = append(out, fmt.Sprintf("%s would change something, over preflight.max_changed_tasks %d", report.Count(len(h.Changes), "task"), *p.MaxChangedTasks))
	}
	for _, c := range h.Changes {
		if pat := matchChange(p.ForbidChanges, c.Task, false); pat != "" {
			out = append(out, fmt.Sprintf("task %q would change something, and preflight.forbid_changes forbids it (%q)", c.Task, pat))
		}
		for _, f := range c.Files {
			if pat := matchChange(p.ForbidChanges, f.Path, true); pat != "" {
				out = append(out, fmt.Sprintf("task %q would change %s, which preflight.forbid_changes forbids (%q)", c.Task, f.Path, pat))
			}
		}
	}
	if len(p.ExpectChanges) > 0 && len(h.Changes) > 0 && !touches(p.ExpectChanges, h.Changes) {
		var what []string
		for _, c := range h.Changes {
			what = append(what, fmt.Sprintf("%q", c.Task))
		}
		out = append(out, fmt.Sprintf("its changes (tasks %s) touch none of preflight.expect_changes (%s): the wrong playbook or variables?",
			strings.Join(what, ", "), strings.Join(p.ExpectChanges, ", ")))
	}
	return out
}

// touches reports whether a change of a task or of a file matches one of
// patterns.
func touches(patterns []string, changes []report.TaskChange) bool {
	for _, c := range changes {
		if matchChange(patterns, c.Task, false) != "" {
			return true
		}
		for _, f := range c.Files {
			if matchChange(patterns, f.Path, true) != "" {
				return true
			}
		}
	}
	return false
}

// matchChange returns the first pattern matching s (a task name, or a
// file path, which a pattern without a / also matches by its base name),
// or "".
func matchChange(patterns []string, s string, isPath bool) string {
	for _, pat := range patterns {
		if ok, _ := path.Match(pat, s); ok {
			return pat
		}
		if isPath && !strings.Contains(pat, "/") {
			if ok, _ := path.Match(pat, path.Base(s)); ok {
				return pat
			}
		}
	}
	return ""
}

// preflight runs (or, in a dry run, replays) the pre-flight check and
// says whether it stops the rollout: halted, before any host changed.
func (x *execution) preflight(ctx context.Context) (verdict, error) {
	pf := x.CheckResult
	switch {
	case pf != nil:
		JudgeCheck(x.Spec.Preflight, pf)
		if pf.Scope == "" {
			pf.Scope = string(x.Spec.Preflight.Check)
		}
	case x.Spec.Preflight.Check == "":
		return verdict{}, nil
	case x.dry():
		x.logf("pre-flight check: not replayed (a dry run judges a recorded check result: --check-result)")
		return verdict{}, nil
	default:
		hosts := CheckHosts(x.Spec, x.Plan)
		x.logf("── pre-flight check: %s in check mode with --diff on %s (%s)", x.Spec.Apply.Playbook, report.Count(len(hosts), "host"), abbreviate(hostNames(hosts), 8))
		var err error
		if pf, err = RunCheck(ctx, x.Applier, x.Spec, x.Plan, hosts); err != nil {
			return verdict{}, err
		}
	}
	x.report.Preflight = pf
	for _, line := range report.CheckLines(pf) {
		x.logf("%s", line)
	}
	if pf.Outcome == report.CheckStopped {
		return verdict{report.OutcomeHalted, pf.Reason}, nil
	}
	return verdict{}, nil
}
