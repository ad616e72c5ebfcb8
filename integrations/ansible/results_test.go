package ansible

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"testing"

	"github.com/rollguard/rollguard/ports"
)

// testdata/mixed.json is the json stdout callback's output, and
// testdata/mixed-events.jsonl the event plugin's, of one real run of a play
// over four hosts: web-1 ignores a failed command then changes two files,
// web-2 changes a file then fails a command (stderr "boom"), web-3 skips
// everything, web-4 is unreachable (SSH to port 1). web-5 is in the limit
// but not in the play's match.
var mixedWant = []ports.HostResult{
	{Host: "web-1", Status: ports.HostChanged, ChangedTasks: []string{"Ignored failure", "Change something", "Change again"}},
	{Host: "web-2", Status: ports.HostFailed, ChangedTasks: []string{"Change something", "Command failure"},
		Message: `task "Command failure": non-zero return code: boom`},
	{Host: "web-3", Status: ports.HostSkipped, Message: "every task was skipped on the host"},
	{Host: "web-4", Status: ports.HostUnreachable,
		Message: `task "Change something": Failed to connect to the host via ssh: ssh: connect to host 127.0.0.1 port 1: Connection refused`},
	// Limited but matched by no play: no result at all.
	{Host: "web-5", Status: ports.HostUnmatched,
		Message: "no play matched the host: `hosts: web-1,web-2,web-3,web-4` matched web-1,web-2,web-3,web-4; the limit was web-1,web-2,web-3,web-4,web-5"},
}

var mixedOrder = []string{"web-1", "web-2", "web-3", "web-4", "web-5"}

// mixedRun is the run of the fixtures, with the play start the event
// plugin reported.
var mixedRun = runInfo{order: mixedOrder, limit: mixedOrder, plays: []playStart{
	{Play: "Mixed", Pattern: []string{"web-1,web-2,web-3,web-4"}, Hosts: []string{"web-1", "web-2", "web-3", "web-4"}},
}}

// notStarted is a matched host's result when no task finished on it.
func notStarted(host string) ports.HostResult {
	return ports.HostResult{Host: host, Status: ports.HostSkipped,
		Message: "the play `hosts: web-1,web-2,web-3,web-4` matched the host, but no task ran on it before the play ended"}
}

func TestResultsFromJSON(t *testing.T) {
	stdout, err := os.ReadFile("testdata/mixed.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		stdout     []byte
		order      []string
		want       []ports.HostResult
		wantParsed bool
	}{
		{name: "real run", stdout: stdout, order: mixedOrder, want: mixedWant, wantParsed: true},
		{name: "order is the caller's", stdout: stdout, order: []string{"web-4", "web-1"},
			want: []ports.HostResult{mixedWant[3], mixedWant[0]}, wantParsed: true},
		{name: "empty output", stdout: []byte("\n"), order: mixedOrder},
		{name: "not JSON", stdout: []byte("ERROR! the playbook could not be found"), order: mixedOrder},
		{name: "JSON without stats", stdout: []byte(`{"plays": []}`), order: mixedOrder},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := mixedRun
			run.order = tt.order
			got, parsed := resultsFromJSON(run, tt.stdout)
			if parsed != tt.wantParsed {
				t.Fatalf("parsed = %v, want %v", parsed, tt.wantParsed)
			}
			if !tt.wantParsed {
				return
			}
			assertResults(t, got.Hosts, tt.want)
		})
	}
}

func readEvents(t *testing.T, path string) []event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// The event stream alone (a stopped run) gives the same outcomes as the
// final JSON for the tasks that finished.
func TestResultsFromEvents(t *testing.T) {
	all := readEvents(t, "testdata/mixed-events.jsonl")
	tests := []struct {
		name   string
		events []event
		want   []ports.HostResult
	}{
		{name: "whole run agrees with the JSON", events: all, want: mixedWant},
		{name: "nothing finished", events: nil, want: []ports.HostResult{
			notStarted("web-1"), notStarted("web-2"), notStarted("web-3"), notStarted("web-4"), mixedWant[4],
		}},
		{name: "stopped after the first two tasks", events: all[:8], want: []ports.HostResult{
			{Host: "web-1", Status: ports.HostChanged, ChangedTasks: []string{"Ignored failure", "Change something"}},
			{Host: "web-2", Status: ports.HostChanged, ChangedTasks: []string{"Change something"}},
			mixedWant[2],
			mixedWant[3],
			mixedWant[4],
		}},
		{name: "ok only", events: []event{{Host: "web-1", Task: "Look", Status: ports.HostOK}},
			want: []ports.HostResult{{Host: "web-1", Status: ports.HostOK}, notStarted("web-2"),
				notStarted("web-3"), notStarted("web-4"), mixedWant[4]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertResults(t, resultsFromEvents(mixedRun, tt.events).Hosts, tt.want)
		})
	}
}

// A host that no task result mentions is unmatched, with every play's
// pattern and the limit, unless a play matched it (then it was skipped).
func TestNotRun(t *testing.T) {
	web := playStart{Play: "Web", Pattern: []string{"web"}, Hosts: []string{}}
	db := playStart{Play: "DB", Pattern: []string{"db"}, Hosts: []string{"db-1"}}
	f := func(run runInfo, host, wantStatus, wantMsg string) {
		t.Helper()
		status, msg := run.notRun(host)
		if status != wantStatus || msg != wantMsg {
			t.Errorf("notRun(%s) = %s, %q\nwant %s, %q", host, status, msg, wantStatus, wantMsg)
		}
	}
	limit := []string{"web-1", "web-2"}
	f(runInfo{limit: limit, plays: []playStart{web}}, "web-1", ports.HostUnmatched,
		"the play matched no host: `hosts: web`, but the limit was web-1,web-2")
	f(runInfo{limit: limit, plays: []playStart{web, {Pattern: []string{"db"}, Hosts: []string{}}}}, "web-1", ports.HostUnmatched,
		"no play matched any host: `hosts: web` matched no host, `hosts: db` matched no host; the limit was web-1,web-2")
	f(runInfo{limit: append(limit, "db-1"), plays: []playStart{web, db}}, "web-2", ports.HostUnmatched,
		"no play matched the host: `hosts: web` matched no host; `hosts: db` matched db-1; the limit was web-1,web-2,db-1")
	f(runInfo{limit: []string{"db-1"}, plays: []playStart{web, db}}, "db-1", ports.HostSkipped,
		"the play `hosts: db` matched the host, but no task ran on it before the play ended")
	f(runInfo{plays: []playStart{{Pattern: []string{"web"}}}}, "web-1", ports.HostUnmatched, "no play ran on the host (no limit)")
	f(runInfo{limit: limit}, "web-1", ports.HostUnmatched, "no play of the playbook ran (the limit was web-1,web-2)")
	many := make([]string, 12)
	for i := range many {
		many[i] = fmt.Sprintf("h%d", i)
	}
	f(runInfo{limit: many, plays: []playStart{web}}, "h1", ports.HostUnmatched,
		"the play matched no host: `hosts: web`, but the limit was h0,h1,h2,h3,h4,h5,h6,h7,h8,h9 and 2 more")
}

func assertResults(t *testing.T, got, want []ports.HostResult) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d results %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		g := got[i]
		if len(g.ChangedTasks) == 0 {
			g.ChangedTasks = nil
		}
		if !reflect.DeepEqual(g, want[i]) {
			t.Errorf("result %d:\n got %+v\nwant %+v", i, g, want[i])
		}
	}
}

func TestTaskMessage(t *testing.T) {
	tests := []struct {
		msg  any
		want string
	}{
		{"boom", `task "t": boom`},
		{nil, `task "t": failed without a message`},
		{"", `task "t": failed without a message`},
		{map[string]any{"rc": 2}, `task "t": {"rc":2}`},
	}
	for _, tt := range tests {
		if got := taskMessage("t", tt.msg); got != tt.want {
			t.Errorf("taskMessage(%v) = %q, want %q", tt.msg, got, tt.want)
		}
	}
}
