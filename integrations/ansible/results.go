package ansible

import (
	"bytes"
	"encoding/json"
	"fmt"

	results "github.com/apenella/go-ansible/v2/pkg/execute/result/json"

	"github.com/rollguard/rollguard/ports"
)

// resultsFromJSON turns the json stdout callback's document into one
// outcome per host of order. parsed is false when stdout holds no such
// document (Ansible stopped before running any play).
//
// A host's status comes from the play recap: unreachable, then failed,
// then changed, then ok, then skipped; a host the recap does not mention
// (the limit matched it, the plays' host patterns did not) is skipped.
// ChangedTasks lists, in order, the tasks whose result on the host was
// changed; Message is the result message of the host's last failed or
// unreachable task.
func resultsFromJSON(order []string, stdout []byte) (res ports.ApplyResult, parsed bool) {
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
	res.Hosts = make([]ports.HostResult, len(order))
	for i, host := range order {
		hr := ports.HostResult{Host: host, Status: ports.HostSkipped, ChangedTasks: changed[host]}
		if st := doc.Stats[host]; st != nil {
			switch {
			case st.Unreachable > 0:
				hr.Status = ports.HostUnreachable
			case st.Failures > 0:
				hr.Status = ports.HostFailed
			case st.Changed > 0:
				hr.Status = ports.HostChanged
			case st.Ok > 0:
				hr.Status = ports.HostOK
			}
		}
		if hr.Status == ports.HostFailed || hr.Status == ports.HostUnreachable {
			hr.Message = message[host]
		}
		res.Hosts[i] = hr
	}
	return res, true
}

// resultsFromEvents builds outcomes from the event stream, for a run that
// was stopped before Ansible printed its results: the same precedence as
// the recap, counting only the tasks that finished; a host with no
// finished task is skipped.
func resultsFromEvents(order []string, events []event) ports.ApplyResult {
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
	res := ports.ApplyResult{Hosts: make([]ports.HostResult, len(order))}
	for i, host := range order {
		hr := ports.HostResult{Host: host, Status: ports.HostSkipped}
		if a := byHost[host]; a != nil {
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
			}
		}
		res.Hosts[i] = hr
	}
	return res
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
