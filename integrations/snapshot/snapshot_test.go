package snapshot_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rollguard/rollguard/integrations/snapshot"
	"github.com/rollguard/rollguard/ports"
)

func testdata(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNewRejectsBadConfig(t *testing.T) {
	ok := []string{"true"}
	tests := []struct {
		name string
		cfg  snapshot.Config
		want []string // every fragment must appear in the error
	}{
		{"no create", snapshot.Config{Restore: ok}, []string{"create hook: an argv is required"}},
		{"no restore", snapshot.Config{Create: ok}, []string{"restore hook: an argv is required"}},
		{"unknown top field", snapshot.Config{Create: []string{"x", "{{.Host}}-{{.Run}}"}, Restore: ok},
			[]string{"create[1]", "unknown field .Host, .Run"}},
		{"unknown host field", snapshot.Config{Create: ok, Restore: []string{"x", "{{.Host.Vars}}"}},
			[]string{"restore[1]", "unknown field .Host.Vars"}},
		{"field hidden in a branch", snapshot.Config{Create: ok, Restore: ok, Delete: []string{"x", "{{if .RunID}}{{.Secret}}{{end}}"}},
			[]string{"delete[1]", "unknown field .Secret"}},
		{"parse error", snapshot.Config{Create: []string{"x", "{{.RunID"}, Restore: ok}, []string{"create[1]", "unclosed action"}},
		{"empty program", snapshot.Config{Create: []string{"{{if false}}x{{end}}"}, Restore: ok}, []string{`create[0] "{{if false}}x{{end}}": the program name is empty`}},
		{"name may not use .Snapshot", snapshot.Config{Create: ok, Restore: ok, Name: "{{.Snapshot}}"}, []string{"name", "unknown field .Snapshot"}},
		{"negative limits", snapshot.Config{Create: ok, Restore: ok, Concurrency: -1, Timeout: -time.Second},
			[]string{"concurrency -1", "timeout -1s"}},
		{"every problem at once", snapshot.Config{Create: []string{"x", "{{.A}}"}, Restore: []string{"y", "{{.B}}"}},
			[]string{"create[1]", ".A", "restore[1]", ".B"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := snapshot.New(tt.cfg)
			if err == nil {
				t.Fatalf("New accepted %+v", tt.cfg)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestHooksRenderArgvWithoutShell(t *testing.T) {
	echo := testdata(t, "echo.sh")
	dir := t.TempDir()
	tests := []struct {
		name       string
		host       ports.Host
		create     []string
		nameTmpl   string
		wantOK     bool
		wantOutput []string
		wantErr    []string
	}{
		{
			name:   "every field rendered",
			host:   ports.Host{Name: "web-1", Address: "10.0.0.1"},
			create: []string{echo, "0", "{{.Host.Name}}", "{{.Host.Address}}", "{{.RunID}}", "{{.Snapshot}}"},
			wantOK: true,
			wantOutput: []string{"[web-1]\n[10.0.0.1]\n[r42]\n[rollguard-r42]\n",
				"env web-1 10.0.0.1 r42 rollguard-r42"},
		},
		{
			name:       "address defaults to the name",
			host:       ports.Host{Name: "db-2"},
			create:     []string{echo, "0", "{{.Host.Address}}"},
			wantOK:     true,
			wantOutput: []string{"[db-2]\n"},
		},
		{
			name:       "custom snapshot name",
			host:       ports.Host{Name: "db-2"},
			create:     []string{echo, "0", "{{.Snapshot}}"},
			nameTmpl:   "pre-change-{{.Host.Name}}-{{.RunID}}",
			wantOK:     true,
			wantOutput: []string{"[pre-change-db-2-r42]\n"},
		},
		{
			name:       "metacharacters stay one literal argument",
			host:       ports.Host{Name: "web-1; touch " + filepath.Join(dir, "pwned") + " $(id)"},
			create:     []string{echo, "0", "{{.Host.Name}}"},
			wantOK:     true,
			wantOutput: []string{"[web-1; touch " + filepath.Join(dir, "pwned") + " $(id)]\n"},
		},
		{
			name:       "failure keeps output and names host and status",
			host:       ports.Host{Name: "web-3"},
			create:     []string{echo, "3", "{{.Host.Name}}"},
			wantOutput: []string{"[web-3]", "hook failed on purpose with 3"},
			wantErr:    []string{"snapshot create hook on host web-3", "exit status 3", "hook failed on purpose with 3"},
		},
		{
			name:    "missing program",
			host:    ports.Host{Name: "web-4"},
			create:  []string{filepath.Join(dir, "no-such-hook")},
			wantErr: []string{"snapshot create hook on host web-4", "no such file"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := snapshot.New(snapshot.Config{Create: tt.create, Restore: []string{"true"}, Name: tt.nameTmpl})
			if err != nil {
				t.Fatal(err)
			}
			res := s.Create(context.Background(), []ports.Host{tt.host}, "r42")
			if len(res) != 1 {
				t.Fatalf("got %d results, want 1", len(res))
			}
			r := res[0]
			if r.Host != tt.host.Name {
				t.Errorf("Host = %q, want %q", r.Host, tt.host.Name)
			}
			if r.OK != tt.wantOK {
				t.Errorf("OK = %v, want %v (err %v, output %q)", r.OK, tt.wantOK, r.Err, r.Output)
			}
			if tt.wantOK != (r.Err == nil) {
				t.Errorf("Err = %v with OK = %v", r.Err, r.OK)
			}
			for _, w := range tt.wantOutput {
				if !strings.Contains(r.Output, w) {
					t.Errorf("output %q does not contain %q", r.Output, w)
				}
			}
			for _, w := range tt.wantErr {
				if r.Err == nil || !strings.Contains(r.Err.Error(), w) {
					t.Errorf("error %v does not contain %q", r.Err, w)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
		t.Error("a host name was interpreted by a shell: the pwned file exists")
	}
}

func TestOutputKeepsOnlyTheTail(t *testing.T) {
	s, err := snapshot.New(snapshot.Config{Create: []string{testdata(t, "many.sh"), "2000"}, Restore: []string{"true"}, OutputLimit: 64})
	if err != nil {
		t.Fatal(err)
	}
	r := s.Create(context.Background(), []ports.Host{{Name: "h"}}, "r")[0]
	if !r.OK {
		t.Fatalf("hook failed: %v", r.Err)
	}
	if !strings.HasPrefix(r.Output, "…") || !strings.HasSuffix(r.Output, "line 2000\n") {
		t.Errorf("output %q: want a marked tail ending with the last line", r.Output)
	}
	if n := len(strings.TrimPrefix(r.Output, "…")); n != 64 {
		t.Errorf("kept %d bytes, want 64", n)
	}
}

func TestDeleteWithoutHookDoesNothing(t *testing.T) {
	s, err := snapshot.New(snapshot.Config{Create: []string{"true"}, Restore: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	if res := s.Delete(context.Background(), []ports.Host{{Name: "h"}}, "r"); res != nil {
		t.Errorf("Delete without a hook = %+v, want nil", res)
	}
}

// processGone reports whether pid has exited (gone, or a zombie waiting to
// be reaped by whoever inherited it).
func processGone(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) STATE ...
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

func TestTimeoutKillsTheProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "grandchild.pid")
	const timeout, grace = time.Second, 200 * time.Millisecond
	s, err := snapshot.New(snapshot.Config{
		Create:    []string{testdata(t, "spawn.sh"), pidFile},
		Restore:   []string{"true"},
		Timeout:   timeout,
		KillGrace: grace,
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := s.Create(context.Background(), []ports.Host{{Name: "web-1"}}, "r")[0]
	elapsed := time.Since(start)

	if r.OK || !errors.Is(r.Err, context.DeadlineExceeded) {
		t.Fatalf("result %+v: want a failure wrapping context.DeadlineExceeded", r)
	}
	if !strings.Contains(r.Err.Error(), "timed out after 1s") {
		t.Errorf("error %q does not say it timed out", r.Err)
	}
	if elapsed < timeout || elapsed > timeout+grace+20*time.Second {
		t.Errorf("hook ran %s, want about %s + %s", elapsed, timeout, grace)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the hook did not record its grandchild within the timeout: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	if !processGone(pid) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("grandchild %d that ignores SIGTERM survived the timeout", pid)
	}
}

// gate drives testdata/gate.sh: hooks announce themselves on a FIFO and
// wait for the test to release them, so concurrency is observed by events,
// not by timing.
type gate struct {
	t      *testing.T
	dir    string
	events *bufio.Scanner
}

func newGate(t *testing.T, hosts []ports.Host) *gate {
	dir := t.TempDir()
	for _, name := range append([]string{"events"}, hostNames(hosts, "go-")...) {
		if err := syscall.Mkfifo(filepath.Join(dir, name), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Read-write, so that the FIFO never reports EOF between writers.
	f, err := os.OpenFile(filepath.Join(dir, "events"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &gate{t: t, dir: dir, events: bufio.NewScanner(f)}
}

// next returns the host of the next "start HOST N" event and N, the
// number of hooks the hook saw running when it started.
func (g *gate) next() (string, int) {
	g.t.Helper()
	if !g.events.Scan() {
		g.t.Fatalf("events FIFO: %v", g.events.Err())
	}
	var host string
	var n int
	if _, err := fmt.Sscanf(g.events.Text(), "start %s %d", &host, &n); err != nil {
		g.t.Fatalf("event %q: %v", g.events.Text(), err)
	}
	return host, n
}

func (g *gate) release(host string) {
	g.t.Helper()
	f, err := os.OpenFile(filepath.Join(g.dir, "go-"+host), os.O_WRONLY, 0)
	if err != nil {
		g.t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("go\n"); err != nil {
		g.t.Fatal(err)
	}
}

func hostNames(hosts []ports.Host, prefix string) []string {
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = prefix + h.Name
	}
	return names
}

func TestConcurrencyLimit(t *testing.T) {
	for _, limit := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			var hosts []ports.Host
			for i := range 7 {
				hosts = append(hosts, ports.Host{Name: fmt.Sprintf("h%d", i)})
			}
			g := newGate(t, hosts)
			s, err := snapshot.New(snapshot.Config{
				Create:      []string{testdata(t, "gate.sh"), g.dir, "{{.Host.Name}}"},
				Restore:     []string{"true"},
				Concurrency: limit,
			})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan []ports.SnapshotResult)
			go func() { done <- s.Create(context.Background(), hosts, "r") }()

			// A hook counts as running from its announcement until the
			// test releases it; a released hook may still hold its slot a
			// moment longer, which can only lower the count seen here.
			var running []string
			peak, released := 0, 0
			for released < len(hosts) {
				want := min(limit, len(hosts)-released)
				for len(running) < want {
					host, n := g.next()
					if n > limit {
						t.Errorf("%s started while %d hooks were running, limit %d", host, n, limit)
					}
					running = append(running, host)
					peak = max(peak, len(running))
				}
				g.release(running[0])
				running = running[1:]
				released++
			}
			res := <-done
			if peak != limit {
				t.Errorf("peak concurrency %d, want exactly the limit %d", peak, limit)
			}
			for i, r := range res {
				if !r.OK || r.Host != hosts[i].Name || !strings.Contains(r.Output, "released "+hosts[i].Name) {
					t.Errorf("result %d = %+v, want host %s released", i, r, hosts[i].Name)
				}
			}
		})
	}
}

func TestCancelStopsRunningAndPendingHooks(t *testing.T) {
	hosts := []ports.Host{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	g := newGate(t, hosts)
	s, err := snapshot.New(snapshot.Config{
		Create:      []string{"true"},
		Restore:     []string{testdata(t, "gate.sh"), g.dir, "{{.Host.Name}}"},
		Concurrency: 1,
		KillGrace:   100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan []ports.SnapshotResult)
	go func() { done <- s.Restore(ctx, hosts, "r") }()
	running, _ := g.next()
	cancel()
	res := <-done
	for _, r := range res {
		if r.OK || !errors.Is(r.Err, context.Canceled) {
			t.Errorf("%s: %+v, want a failure wrapping context.Canceled", r.Host, r)
		}
		if r.Snapshot != "rollguard-r" {
			t.Errorf("%s: snapshot %q, want rollguard-r", r.Host, r.Snapshot)
		}
		notStarted := strings.Contains(r.Err.Error(), "not started")
		if notStarted == (r.Host == running) {
			t.Errorf("%s: error %q (the running hook was %s)", r.Host, r.Err, running)
		}
	}
}

func TestHookLeavingAProcessBehindStillSucceeds(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "bg.pid")
	s, err := snapshot.New(snapshot.Config{
		Create:    []string{testdata(t, "detach.sh"), pidFile},
		Restore:   []string{"true"},
		KillGrace: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	r := s.Create(context.Background(), []ports.Host{{Name: "web-1"}}, "r")[0]
	if data, err := os.ReadFile(pidFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
		}
	}
	if !r.OK || r.Err != nil || !strings.Contains(r.Output, "snapshot taken") {
		t.Fatalf("result %+v: a hook that exited 0 must succeed even if a child holds its output", r)
	}
}
