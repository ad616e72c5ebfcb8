package ansible

import (
	"bufio"
	"encoding/json"
	"os"
	"reflect"
	"testing"

	"github.com/rollguard/rollguard/ports"
)

// testdata/mixed.json is the json stdout callback's output, and
// testdata/mixed-events.jsonl the event plugin's, of one real run of a play
// over four hosts: web-1 ignores a failed command then changes two files,
// web-2 changes a file then fails a command (stderr "boom"), web-3 skips
// everything, web-4 is unreachable (SSH to port 1).
var mixedWant = []ports.HostResult{
	{Host: "web-1", Status: ports.HostChanged, ChangedTasks: []string{"Ignored failure", "Change something", "Change again"}},
	{Host: "web-2", Status: ports.HostFailed, ChangedTasks: []string{"Change something", "Command failure"},
		Message: `task "Command failure": non-zero return code: boom`},
	{Host: "web-3", Status: ports.HostSkipped},
	{Host: "web-4", Status: ports.HostUnreachable,
		Message: `task "Change something": Failed to connect to the host via ssh: ssh: connect to host 127.0.0.1 port 1: Connection refused`},
	// Limited but matched by no play: no result at all.
	{Host: "web-5", Status: ports.HostSkipped},
}

var mixedOrder = []string{"web-1", "web-2", "web-3", "web-4", "web-5"}

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
			got, parsed := resultsFromJSON(tt.order, tt.stdout)
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
			{Host: "web-1", Status: ports.HostSkipped}, {Host: "web-2", Status: ports.HostSkipped},
			{Host: "web-3", Status: ports.HostSkipped}, {Host: "web-4", Status: ports.HostSkipped},
			{Host: "web-5", Status: ports.HostSkipped},
		}},
		{name: "stopped after the first two tasks", events: all[:8], want: []ports.HostResult{
			{Host: "web-1", Status: ports.HostChanged, ChangedTasks: []string{"Ignored failure", "Change something"}},
			{Host: "web-2", Status: ports.HostChanged, ChangedTasks: []string{"Change something"}},
			{Host: "web-3", Status: ports.HostSkipped},
			mixedWant[3],
			{Host: "web-5", Status: ports.HostSkipped},
		}},
		{name: "ok only", events: []event{{Host: "web-1", Task: "Look", Status: ports.HostOK}},
			want: []ports.HostResult{{Host: "web-1", Status: ports.HostOK}, {Host: "web-2", Status: ports.HostSkipped},
				{Host: "web-3", Status: ports.HostSkipped}, {Host: "web-4", Status: ports.HostSkipped}, {Host: "web-5", Status: ports.HostSkipped}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertResults(t, resultsFromEvents(mixedOrder, tt.events).Hosts, tt.want)
		})
	}
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
