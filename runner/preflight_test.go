package runner

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rollguard/rollguard/report"
)

// checkOf is a check result: web-1 would change app.conf and its backup,
// web-2 nothing, web-3 a template in /etc/nginx.
func checkOf() *report.Preflight {
	return &report.Preflight{Scope: "all", Hosts: []report.CheckHost{
		{Name: "web-1", Status: "changed", Changes: []report.TaskChange{
			{Task: "Save the previous app.conf", Files: []report.FileChange{{Path: "/srv/web-1/app.conf.prev"}}},
			{Task: "Write app.conf", Files: []report.FileChange{{Path: "/srv/web-1/app.conf", Added: 3, Removed: 3}}},
		}},
		{Name: "web-2", Status: "ok"},
		{Name: "web-3", Status: "changed", Changes: []report.TaskChange{
			{Task: "Template nginx.conf", Files: []report.FileChange{{Path: "/etc/nginx/nginx.conf", Added: 1, Removed: 1}}},
		}},
	}}
}

func TestJudgeCheckLimits(t *testing.T) {
	two, one, zero := 2, 1, 0
	f := func(name string, p Preflight, edit func(*report.Preflight), wantOutcome string, want map[string][]string) {
		t.Helper()
		pf := checkOf()
		if edit != nil {
			edit(pf)
		}
		JudgeCheck(p, pf)
		if pf.Outcome != wantOutcome {
			t.Errorf("%s: outcome %q (%s), want %q", name, pf.Outcome, pf.Reason, wantOutcome)
		}
		for _, h := range pf.Hosts {
			if !slices.Equal(h.Violations, want[h.Name]) {
				t.Errorf("%s: %s violations\n%q\nwant\n%q", name, h.Name, h.Violations, want[h.Name])
			}
			// The reason names every host that stops the rollout.
			if len(want[h.Name]) > 0 && !strings.Contains(pf.Reason, h.Name+": "+want[h.Name][0]) {
				t.Errorf("%s: reason %q does not name %s", name, pf.Reason, h.Name)
			}
		}
	}
	f("no limits", Preflight{Check: CheckAll}, nil, report.CheckPassed, nil)
	f("max_changed_tasks at the limit", Preflight{Check: CheckAll, MaxChangedTasks: &two}, nil, report.CheckPassed, nil)
	f("max_changed_tasks over", Preflight{Check: CheckAll, MaxChangedTasks: &one}, nil, report.CheckStopped, map[string][]string{
		"web-1": {"2 tasks would change something, over preflight.max_changed_tasks 1"},
	})
	f("max_changed_tasks 0: nothing may change", Preflight{Check: CheckAll, MaxChangedTasks: &zero}, nil, report.CheckStopped, map[string][]string{
		"web-1": {"2 tasks would change something, over preflight.max_changed_tasks 0"},
		"web-3": {"1 task would change something, over preflight.max_changed_tasks 0"},
	})
	f("forbid a file by base name", Preflight{Check: CheckAll, ForbidChanges: []string{"app.conf"}}, nil, report.CheckStopped, map[string][]string{
		"web-1": {`task "Write app.conf" would change /srv/web-1/app.conf, which preflight.forbid_changes forbids ("app.conf")`},
	})
	f("forbid a path glob", Preflight{Check: CheckAll, ForbidChanges: []string{"/etc/*/*.conf"}}, nil, report.CheckStopped, map[string][]string{
		"web-3": {`task "Template nginx.conf" would change /etc/nginx/nginx.conf, which preflight.forbid_changes forbids ("/etc/*/*.conf")`},
	})
	f("a path glob's * does not cross /", Preflight{Check: CheckAll, ForbidChanges: []string{"/etc/*.conf"}}, nil, report.CheckPassed, nil)
	f("forbid a task", Preflight{Check: CheckAll, ForbidChanges: []string{"Save *"}}, nil, report.CheckStopped, map[string][]string{
		"web-1": {`task "Save the previous app.conf" would change something, and preflight.forbid_changes forbids it ("Save *")`},
	})
	f("forbid what nothing changes", Preflight{Check: CheckAll, ForbidChanges: []string{"secrets.yml"}}, nil, report.CheckPassed, nil)
	f("expect_changes met on every changed host", Preflight{Check: CheckAll, ExpectChanges: []string{"*.conf"}}, nil, report.CheckPassed, nil)
	f("expect_changes missed on one host", Preflight{Check: CheckAll, ExpectChanges: []string{"app.conf"}}, nil, report.CheckStopped, map[string][]string{
		"web-3": {`its changes (tasks "Template nginx.conf") touch none of preflight.expect_changes (app.conf): the wrong playbook or variables?`},
	})
	f("a failed check stops without limits", Preflight{Check: CheckAll}, func(pf *report.Preflight) {
		pf.Hosts[1].Status, pf.Hosts[1].Message = "failed", `task "Read the current app.conf": permission denied`
	}, report.CheckStopped, map[string][]string{
		"web-2": {`the check was failed (task "Read the current app.conf": permission denied)`},
	})
	f("an unreachable host stops", Preflight{Check: CheckAll}, func(pf *report.Preflight) {
		pf.Hosts[1].Status, pf.Hosts[1].Message = "unreachable", "ssh: connect to host web-2 port 22: Connection refused"
	}, report.CheckStopped, map[string][]string{
		"web-2": {"the check was unreachable (ssh: connect to host web-2 port 22: Connection refused)"},
	})
	f("a skipped host does not stop", Preflight{Check: CheckAll}, func(pf *report.Preflight) { pf.Hosts[1].Status = "skipped" }, report.CheckPassed, nil)
	f("every limit at once", Preflight{Check: CheckAll, MaxChangedTasks: &one, ForbidChanges: []string{"app.conf"}, ExpectChanges: []string{"nginx.conf"}}, nil, report.CheckStopped, map[string][]string{
		"web-1": {
			"2 tasks would change something, over preflight.max_changed_tasks 1",
			`task "Write app.conf" would change /srv/web-1/app.conf, which preflight.forbid_changes forbids ("app.conf")`,
			`its changes (tasks "Save the previous app.conf", "Write app.conf") touch none of preflight.expect_changes (nginx.conf): the wrong playbook or variables?`,
		},
	})
}

// A passing check's reason sums what would change.
func TestJudgeCheckPassedReason(t *testing.T) {
	pf := checkOf()
	JudgeCheck(Preflight{Check: CheckAll}, pf)
	want := "the check of 3 hosts passed: 2 would change (3 tasks, 3 files, +4 -4 lines)"
	if pf.Reason != want {
		t.Errorf("reason %q, want %q", pf.Reason, want)
	}
}

// A recorded check result is read in report.json's preflight form; the
// judgement it carries is dropped, so the spec's limits judge it anew.
func TestReadCheckResult(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pf, err := ReadCheckResult(write("ok.json", `{"scope":"canary","outcome":"passed","reason":"old","hosts":[
		{"name":"web-1","status":"changed","violations":["old"],"changes":[{"task":"Write app.conf","files":[{"path":"/srv/app.conf","added":1,"removed":1}]}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if !pf.Recorded || pf.Outcome != "" || pf.Reason != "" || pf.Hosts[0].Violations != nil || pf.Hosts[0].Changes[0].Files[0].Path != "/srv/app.conf" {
		t.Errorf("read %+v", pf)
	}
	for _, bad := range []struct{ text, want string }{
		{`{"hosts":[]}`, "no hosts"},
		{`{"hosts":[{"name":"web-1"}]}`, "hosts[0]: name and status are required"},
		{`{"hosts":[{"name":"web-1","status":"ok","chnages":[]}]}`, `unknown field "chnages"`},
		{`[`, "unexpected EOF"},
	} {
		if _, err := ReadCheckResult(write("bad.json", bad.text)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: error %v, want %q", bad.text, err, bad.want)
		}
	}
}
