package ansible

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	results "github.com/apenella/go-ansible/v2/pkg/execute/result/json"

	"github.com/rollguard/rollguard/ports"
)

// runInfo is what a results function needs to know about the run besides
// Ansible's output: the hosts it covers, in order, the limit it was given
// and the plays that started (from the event stream).
type runInfo struct {
	order []string
	limit []string
	plays []playStart
	// check says the run was a check (--check --diff): results carry
	// the files each changed task would change.
	check bool
}

// resultsFromJSON turns the json stdout callback's document into one
// outcome per host of run.order. parsed is false when stdout holds no such
// document (Ansible stopped before running any play).
//
// A host's status comes from the play recap: unreachable, then failed,
// then changed, then ok, then skipped; a host the recap does not mention
// is judged by notRun. ChangedTasks lists, in order, the tasks whose
// result on the host was changed; Message is the result message of the
// host's last failed or unreachable task; for a check run, Changes says
// which files each changed task would change (diff.go).
func resultsFromJSON(run runInfo, stdout []byte) (res ports.ApplyResult, parsed bool) {
	if len(bytes.TrimSpace(stdout)) == 0 {
		return ports.ApplyResult{}, false
	}
	doc, err := results.ParseJSONResultsStream(bytes.NewReader(stdout))
	if err != nil || doc.Stats == nil {
		return ports.ApplyResult{}, false
	}
	changed := map[string][]string{}
	message := map[string]string{}
	for _, play := range doc.Plays {
		for _, task := range play.Tasks {
			name := ""
			if task.Task != nil {
				name = task.Task.Name
			}
			for host, r := range task.Hosts {
				if r == nil {
					continue
				}
				if r.Changed {
					changed[host] = append(changed[host], name)
				}
				if r.Failed || r.Unreachable {
					message[host] = taskMessage(name, r.Msg)
					if se, ok := r.Stderr.(string); ok && se != "" {
						message[host] += ": " + se
					}
				}
			}
		}
	}
	var changes map[string][]ports.TaskChange
	if run.check {
		changes = taskChanges(stdout)
	}
	res.Hosts = make([]ports.HostResult, len(run.order))
	for i, host := range run.order {
		hr := ports.HostResult{Host: host, ChangedTasks: changed[host], Changes: changes[host]}
		st := doc.Stats[host]
		switch {
		case st == nil:
			hr.Status, hr.Message = run.notRun(host)
		case st.Unreachable > 0:
			hr.Status, hr.Message = ports.HostUnreachable, message[host]
		case st.Failures > 0:
			hr.Status, hr.Message = ports.HostFailed, message[host]
		case st.Changed > 0:
			hr.Status = ports.HostChanged
		case st.Ok > 0:
			hr.Status = ports.HostOK
		default:
			hr.Status, hr.Message = ports.HostSkipped, "every task was skipped on the host"
		}
		res.Hosts[i] = hr
	}
	return res, true
}

// resultsFromEvents builds outcomes from the event stream, for a run that
// was stopped before Ansible printed its results: the same precedence as
// the recap, counting only the tasks that finished; a host with no
// finished task is judged by notRun.
func resultsFromEvents(run runInfo, events []event) ports.ApplyResult {
	type acc struct {
		ok, changed, failed, unreachable bool
		tasks                            []string
		msg                              string
	}
	byHost := map[string]*acc{}
	for _, ev := range events {
		a := byHost[ev.Host]
		if a == nil {
			a = &acc{}
			byHost[ev.Host] = a
		}
		// As in Ansible's recap, a failed result may also have changed
		// something (a command that ran and exited non-zero).
		if ev.Changed || ev.Status == ports.HostChanged {
			a.changed = true
			a.tasks = append(a.tasks, ev.Task)
		}
		switch ev.Status {
		case ports.HostOK, ports.HostChanged:
			a.ok = true
		case ports.HostFailed:
			if ev.Ignored {
				a.ok = true
				continue
			}
			a.failed = true
			a.msg = taskMessage(ev.Task, ev.Msg)
		case ports.HostUnreachable:
			a.unreachable = true
			a.msg = taskMessage(ev.Task, ev.Msg)
		}
	}
	res := ports.ApplyResult{Hosts: make([]ports.HostResult, len(run.order))}
	for i, host := range run.order {
		hr := ports.HostResult{Host: host}
		a := byHost[host]
		if a == nil {
			hr.Status, hr.Message = run.notRun(host)
			res.Hosts[i] = hr
			continue
		}
		hr.ChangedTasks = a.tasks
		switch {
		case a.unreachable:
			hr.Status, hr.Message = ports.HostUnreachable, a.msg
		case a.failed:
			hr.Status, hr.Message = ports.HostFailed, a.msg
		case a.changed:
			hr.Status = ports.HostChanged
		case a.ok:
			hr.Status = ports.HostOK
		default:
			hr.Status, hr.Message = ports.HostSkipped, "every task was skipped on the host"
		}
		res.Hosts[i] = hr
	}
	return res
}

// notRun says why no task result mentions host: a play matched it but
// stopped (or was stopped) before any task ran there, which is skipped;
// or no play matched it, which is unmatched, with every play's pattern
// and the limit, so that the reader sees the mismatch.
func (run runInfo) notRun(host string) (status, message string) {
	limit := "no limit"
	if len(run.limit) > 0 {
		limit = "the limit was " + abbreviate(run.limit, 10)
	}
	if len(run.plays) == 0 {
		return ports.HostUnmatched, "no play of the playbook ran (" + limit + ")"
	}
	known := true
	empty := 0
	var parts []string
	for _, p := range run.plays {
		if p.Hosts == nil {
			known = false
			continue
		}
		if slices.Contains(p.Hosts, host) {
			return ports.HostSkipped, fmt.Sprintf("the play %s matched the host, but no task ran on it before the play ended", pattern(p))
		}
		if len(p.Hosts) == 0 {
			empty++
			parts = append(parts, pattern(p)+" matched no host")
		} else {
			parts = append(parts, pattern(p)+" matched "+abbreviate(p.Hosts, 5))
		}
	}
	switch {
	case !known:
		return ports.HostUnmatched, "no play ran on the host (" + limit + ")"
	case len(run.plays) == 1 && empty == 1:
		return ports.HostUnmatched, fmt.Sprintf("the play matched no host: %s, but %s", pattern(run.plays[0]), limit)
	case empty == len(run.plays):
		return ports.HostUnmatched, fmt.Sprintf("no play matched any host: %s; %s", strings.Join(parts, ", "), limit)
	}
	return ports.HostUnmatched, fmt.Sprintf("no play matched the host: %s; %s", strings.Join(parts, "; "), limit)
}

// pattern is a play's host pattern as written in the playbook.
func pattern(p playStart) string {
	return "`hosts: " + strings.Join(p.Pattern, ",") + "`"
}

// abbreviate joins names with commas, up to max of them.
func abbreviate(names []string, max int) string {
	if len(names) <= max {
		return strings.Join(names, ",")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:max], ","), len(names)-max)
}

// taskMessage is "task <name>: <msg>"; msg may be any JSON value.
func taskMessage(task string, msg any) string {
	text := ""
	switch m := msg.(type) {
	case nil:
	case string:
		text = m
	default:
		b, err := json.Marshal(m)
		if err != nil {
			text = fmt.Sprint(m)
		} else {
			text = string(b)
		}
	}
	if text == "" {
		text = "failed without a message"
	}
	return fmt.Sprintf("task %q: %s", task, text)
}
