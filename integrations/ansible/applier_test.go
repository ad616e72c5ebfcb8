package ansible_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rollguard/rollguard/integrations/ansible"
	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/simfleet"
)

const playbooks = "../../testdata/playbooks"

// requireAnsible skips the test when ansible-playbook is missing, unless
// ROLLGUARD_E2E=1 asks for every end-to-end test to run.
func requireAnsible(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath(ansible.DefaultBinary); err != nil {
		if os.Getenv("ROLLGUARD_E2E") == "1" {
			t.Fatalf("ROLLGUARD_E2E=1 but %v", err)
		}
		t.Skipf("no %s: %v", ansible.DefaultBinary, err)
	}
}

// fleet starts a simulated fleet of n hosts and returns it with the hosts
// as the steps see them.
func fleet(t *testing.T, n int) (*simfleet.Fleet, []ports.Host) {
	t.Helper()
	f, err := simfleet.Start(t.Context(), simfleet.Config{Dir: t.TempDir(), Hosts: n, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	var hosts []ports.Host
	for _, h := range f.Hosts() {
		hosts = append(hosts, ports.Host{Name: h.Name, Address: h.Address, Port: h.Port, Vars: h.Vars()})
	}
	return f, hosts
}

func readConf(t *testing.T, path string) simfleet.AppConf {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := simfleet.ParseAppConf(string(data))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// recorder collects progress events.
type recorder struct {
	mu     sync.Mutex
	events []ports.ApplyEvent
}

func (r *recorder) add(e ports.ApplyEvent) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) get() []ports.ApplyEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// Applying site.yml with --limit changes the limited hosts only, reports
// them changed with the changed tasks in order, streams progress, and is
// idempotent; revert.yml restores the previous app.conf.
func TestApplyLimit(t *testing.T) {
	requireAnsible(t)
	f, hosts := fleet(t, 3)
	a := ansible.New(ansible.Config{})
	ctx := t.Context()
	rec := &recorder{}
	req := ports.ApplyRequest{
		Playbook:  filepath.Join(playbooks, "site.yml"),
		Inventory: hosts,
		Limit:     []string{"web-3", "web-1"},
		ExtraVars: map[string]any{"version": "v2", "latency_factor": 1.5},
		Forks:     5,
	}
	res, err := a.Apply(ctx, req, rec.add)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	wantTasks := []string{"Save the previous app.conf as app.conf.prev", "Write app.conf"}
	if len(res.Hosts) != 2 {
		t.Fatalf("results %+v: want the 2 limited hosts", res.Hosts)
	}
	for i, name := range []string{"web-3", "web-1"} {
		got := res.Hosts[i]
		if got.Host != name || got.Status != ports.HostChanged || !slices.Equal(got.ChangedTasks, wantTasks) || got.Message != "" {
			t.Errorf("result %d: %+v, want %s changed by %q", i, got, name, wantTasks)
		}
	}
	for _, h := range f.Hosts() {
		conf := readConf(t, filepath.Join(h.Dir, "app.conf"))
		if h.Name == "web-2" {
			if n := f.Writes(h.Name); n != 0 || conf != simfleet.NeutralConf() {
				t.Errorf("web-2 (not limited): %d writes, app.conf %+v; want untouched", n, conf)
			}
			if _, err := os.Stat(filepath.Join(h.Dir, "app.conf.prev")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("web-2 has an app.conf.prev (%v)", err)
			}
			continue
		}
		if conf.Version != "v2" || conf.LatencyFactor != 1.5 {
			t.Errorf("%s: app.conf %+v, want v2 with latency_factor 1.5", h.Name, conf)
		}
		if prev := readConf(t, filepath.Join(h.Dir, "app.conf.prev")); prev != simfleet.NeutralConf() {
			t.Errorf("%s: app.conf.prev %+v, want the neutral configuration", h.Name, prev)
		}
		if n := f.Writes(h.Name); n < 1 {
			t.Errorf("%s: Writes = %d, want >= 1", h.Name, n)
		}
	}
	events := rec.get()
	for _, name := range []string{"web-1", "web-3"} {
		want := ports.ApplyEvent{Host: name, Task: "Write app.conf", Status: ports.HostChanged}
		if !slices.Contains(events, want) {
			t.Errorf("progress %v: missing %+v", events, want)
		}
	}
	for _, e := range events {
		if e.Host == "web-2" {
			t.Errorf("progress event for the unlimited host: %+v", e)
		}
	}

	// The same change again changes nothing.
	res, err = a.Apply(ctx, req, nil)
	if err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	for _, got := range res.Hosts {
		if got.Status != ports.HostOK || len(got.ChangedTasks) != 0 {
			t.Errorf("second Apply: %+v, want ok with no changed task", got)
		}
	}

	// revert.yml restores the neutral configuration on web-1 alone.
	res, err = a.Apply(ctx, ports.ApplyRequest{
		Playbook: filepath.Join(playbooks, "revert.yml"), Inventory: hosts, Limit: []string{"web-1"},
	}, nil)
	if err != nil {
		t.Fatalf("revert: %v", err)
	}
	if len(res.Hosts) != 1 || res.Hosts[0].Status != ports.HostChanged ||
		!slices.Equal(res.Hosts[0].ChangedTasks, []string{"Restore app.conf from app.conf.prev"}) {
		t.Errorf("revert: %+v", res.Hosts)
	}
	if conf := readConf(t, filepath.Join(f.Hosts()[0].Dir, "app.conf")); conf != simfleet.NeutralConf() {
		t.Errorf("web-1 after revert: %+v, want neutral", conf)
	}
	if conf := readConf(t, filepath.Join(f.Hosts()[2].Dir, "app.conf")); conf.Version != "v2" {
		t.Errorf("web-3 after web-1's revert: %+v, want still v2", conf)
	}
}

// A host whose play fails is reported failed with Ansible's message, an
// unreachable one unreachable, and neither makes Apply fail: the others
// are changed.
func TestApplyFailedAndUnreachableHosts(t *testing.T) {
	requireAnsible(t)
	f, hosts := fleet(t, 3)
	// web-4 answers SSH nowhere: port 1 of 127.0.0.1 refuses connections.
	hosts = append(hosts, ports.Host{Name: "web-4", Address: "127.0.0.1", Vars: map[string]any{
		"host_dir": t.TempDir(), "ansible_connection": "ssh", "ansible_port": 1,
		"ansible_ssh_common_args": "-o ConnectTimeout=5 -o BatchMode=yes -o StrictHostKeyChecking=no",
	}})
	a := ansible.New(ansible.Config{})
	rec := &recorder{}
	res, err := a.Apply(t.Context(), ports.ApplyRequest{
		Playbook:  filepath.Join(playbooks, "site.yml"),
		Inventory: hosts,
		ExtraVars: map[string]any{"version": "v3", "fail_on": "web-2"},
	}, rec.add)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	byHost := map[string]ports.HostResult{}
	for _, h := range res.Hosts {
		byHost[h.Host] = h
	}
	if len(res.Hosts) != 4 {
		t.Fatalf("results %+v: want 4 hosts", res.Hosts)
	}
	for _, name := range []string{"web-1", "web-3"} {
		if got := byHost[name]; got.Status != ports.HostChanged || len(got.ChangedTasks) != 2 {
			t.Errorf("%s: %+v, want changed", name, got)
		}
	}
	if got := byHost["web-2"]; got.Status != ports.HostFailed ||
		got.Message != `task "Fail where fail_on asks": fail_on asked web-2 to fail` || len(got.ChangedTasks) != 0 {
		t.Errorf("web-2: %+v, want failed with fail_on's message", got)
	}
	if n := f.Writes("web-2"); n != 0 {
		t.Errorf("web-2 failed before writing, yet Writes = %d", n)
	}
	if got := byHost["web-4"]; got.Status != ports.HostUnreachable || !strings.Contains(got.Message, "port 1") {
		t.Errorf("web-4: %+v, want unreachable with ssh's message", got)
	}
	if want := (ports.ApplyEvent{Host: "web-2", Task: "Fail where fail_on asks", Status: ports.HostFailed}); !slices.Contains(rec.get(), want) {
		t.Errorf("progress %v: missing %+v", rec.get(), want)
	}
}

// Cancelling ctx stops the whole process group, the long-running command
// included, returns ctx's error and what finished before; extra vars never
// appear on any command line or in the log.
func TestApplyCancelStopsProcessGroup(t *testing.T) {
	requireAnsible(t)
	_, hosts := fleet(t, 2)
	marker := fmt.Sprintf("rollguard-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	const secret = "s3cret-value-Zq9"
	var logs bytes.Buffer
	a := ansible.New(ansible.Config{
		Env:       map[string]string{"ROLLGUARD_TEST_MARKER": marker},
		KillGrace: 2 * time.Second,
		Logger:    slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	started := make(chan struct{})
	var once sync.Once
	rec := &recorder{}
	progress := func(e ports.ApplyEvent) {
		rec.add(e)
		if e.Task == "Start" && len(rec.get()) == len(hosts) {
			once.Do(func() { close(started) })
		}
	}
	type outcome struct {
		res ports.ApplyResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := a.Apply(ctx, ports.ApplyRequest{
			Playbook:  filepath.Join(playbooks, "slow.yml"),
			Inventory: hosts,
			ExtraVars: map[string]any{"db_password": secret},
		}, progress)
		done <- outcome{res, err}
	}()

	wait, stop := context.WithTimeout(t.Context(), 60*time.Second)
	defer stop()
	select {
	case <-started:
	case <-wait.Done():
		t.Fatalf("the playbook's first task never reported: %v", rec.get())
	}
	// Wait for the sleep commands: the processes to be stopped.
	var group []proc
	if err := pollUntil(wait, func() bool {
		group = marked(marker)
		n := 0
		for _, p := range group {
			if p.comm == "sleep" {
				n++
			}
		}
		return n == len(hosts)
	}); err != nil {
		t.Fatalf("sleep commands never started: %v (saw %+v)", err, group)
	}
	pgids := map[int]bool{}
	for _, p := range group {
		pgids[p.pgid] = true
		if strings.Contains(p.cmdline, secret) {
			t.Errorf("process %d's command line holds an extra var's value: %q", p.pid, p.cmdline)
		}
	}
	if len(pgids) != 1 || pgids[os.Getpid()] || pgids[syscall.Getpgrp()] {
		t.Errorf("process groups %v: want one group of the playbook's own", pgids)
	}

	cancel()
	var out outcome
	select {
	case out = <-done:
	case <-wait.Done():
		t.Fatal("Apply did not return after cancel")
	}
	if !errors.Is(out.err, context.Canceled) {
		t.Errorf("Apply error %v, want one wrapping context.Canceled", out.err)
	}
	if len(out.res.Hosts) != 2 {
		t.Errorf("results %+v: want both hosts", out.res.Hosts)
	}
	for _, h := range out.res.Hosts {
		if h.Status != ports.HostOK {
			t.Errorf("%s: %+v, want ok (the Start task finished before the cancel)", h.Host, h)
		}
	}
	// SIGKILL is delivered asynchronously: give the kernel a bounded
	// moment to finish the processes (zombies, which run nothing, waiting
	// for PID 1 to reap them, do not count).
	var left []proc
	if err := pollUntil(wait, func() bool {
		left = nil
		for _, p := range allProcs() {
			if pgids[p.pgid] || strings.Contains(p.environ, marker) {
				left = append(left, p)
			}
		}
		return len(left) == 0
	}); err != nil {
		t.Errorf("processes of the playbook's group left after Apply returned: %+v", left)
	}
	if strings.Contains(logs.String(), secret) || !strings.Contains(logs.String(), "db_password") {
		t.Errorf("log should name the extra var but not its value:\n%s", logs.String())
	}
}

// proc is a process of this user found in /proc.
type proc struct {
	pid, pgid              int
	comm, cmdline, environ string
}

// marked lists the live processes whose environment holds marker.
func marked(marker string) []proc {
	var out []proc
	for _, p := range allProcs() {
		if strings.Contains(p.environ, marker) {
			out = append(out, p)
		}
	}
	return out
}

// allProcs lists the live (not zombie) processes readable in /proc.
func allProcs() []proc {
	var out []proc
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...
		s := string(stat)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < 0 {
			continue
		}
		fields := strings.Fields(s[closing+1:])
		if len(fields) < 3 || fields[0] == "Z" || fields[0] == "X" {
			continue
		}
		pgid, _ := strconv.Atoi(fields[2])
		env, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out = append(out, proc{pid: pid, pgid: pgid, comm: s[open+1 : closing],
			environ: string(env), cmdline: string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))})
	}
	return out
}

// pollUntil checks cond every 50 ms until it holds or ctx ends.
func pollUntil(ctx context.Context, cond func() bool) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// A run that cannot happen is an error carrying Ansible's (or the
// system's) reason, and changes nothing.
func TestApplyErrors(t *testing.T) {
	requireAnsible(t)
	f, hosts := fleet(t, 2)
	tests := []struct {
		name    string
		cfg     ansible.Config
		req     ports.ApplyRequest
		wantErr []string
		wantIs  error
	}{
		{
			name:    "syntax error",
			req:     ports.ApplyRequest{Playbook: filepath.Join(playbooks, "broken.yml"), Inventory: hosts},
			wantErr: []string{"ansible-playbook exited with status 4", "ERROR!", "Syntax Error while loading YAML", "broken.yml': line 8, column 8"},
		},
		{
			name:   "missing playbook",
			req:    ports.ApplyRequest{Playbook: filepath.Join(playbooks, "nope.yml"), Inventory: hosts},
			wantIs: fs.ErrNotExist,
		},
		{
			name:    "missing binary",
			cfg:     ansible.Config{Binary: "/nonexistent/ansible-playbook"},
			req:     ports.ApplyRequest{Playbook: filepath.Join(playbooks, "site.yml"), Inventory: hosts},
			wantErr: []string{"start /nonexistent/ansible-playbook"},
			wantIs:  fs.ErrNotExist,
		},
		{
			name: "missing vault password file",
			req: ports.ApplyRequest{Playbook: filepath.Join(playbooks, "site.yml"), Inventory: hosts,
				VaultPasswordFile: "/nonexistent/vault-pass"},
			wantErr: []string{"ansible-playbook exited with status 1", "/nonexistent/vault-pass", "was not found"},
		},
		{
			name:    "limit host not in inventory",
			req:     ports.ApplyRequest{Playbook: filepath.Join(playbooks, "site.yml"), Inventory: hosts, Limit: []string{"web-1", "db-1"}},
			wantErr: []string{`limit host "db-1" is not in the inventory`},
		},
		{
			name:    "undefined variable in a play",
			req:     ports.ApplyRequest{Playbook: filepath.Join(playbooks, "site.yml"), Inventory: []ports.Host{{Name: "web-1", Vars: map[string]any{"ansible_connection": "local"}}}},
			wantErr: nil, // a task error, reported per host: see below
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := ansible.New(tt.cfg)
			res, err := a.Apply(t.Context(), tt.req, nil)
			if tt.wantErr == nil && tt.wantIs == nil {
				// host_dir undefined: the host fails, Apply does not.
				t.Logf("results %+v, error %v", res, err)
				if err != nil || len(res.Hosts) != 1 || res.Hosts[0].Status != ports.HostFailed ||
					!strings.Contains(res.Hosts[0].Message, "host_dir") {
					t.Fatalf("got %+v, %v; want web-1 failed over host_dir", res, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error; results %+v", res)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
		})
	}
	for _, h := range f.Hosts() {
		if n := f.Writes(h.Name); n != 0 {
			t.Errorf("%s written %d times by runs that could not happen", h.Name, n)
		}
	}
}

func (p proc) String() string { return fmt.Sprintf("pid %d (%s) pgid %d", p.pid, p.comm, p.pgid) }
