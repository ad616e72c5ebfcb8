// Package snapshot implements ports.Snapshotter with hooks: argv templates
// (libvirt's virsh, qemu-img, lvcreate, zfs, a cloud CLI) rendered per host
// and executed without a shell, each in its own process group so that a
// timeout or a cancellation stops everything the hook started.
package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/rollguard/rollguard/ports"
)

// Defaults of Config.
const (
	DefaultName        = "rollguard-{{.RunID}}"
	DefaultConcurrency = 4
	DefaultTimeout     = 5 * time.Minute
	DefaultKillGrace   = 10 * time.Second
	DefaultOutputLimit = 4096
)

// Config describes the hooks. Each hook is an argv: every element is a
// text/template over {{.Host.Name}}, {{.Host.Address}} (the host's name when
// it has no address), {{.RunID}} and {{.Snapshot}}, rendered separately,
// so a value with spaces or shell metacharacters stays one argument.
type Config struct {
	// Create takes a host's snapshot. Required.
	Create []string
	// Restore reverts a host to its snapshot. Required.
	Restore []string
	// Delete removes a host's snapshot once the run no longer needs it
	// (optional: without it, snapshots are kept).
	Delete []string
	// Name is the template of the snapshot's name, {{.Snapshot}}, over
	// {{.Host.Name}}, {{.Host.Address}} and {{.RunID}} (default
	// "rollguard-{{.RunID}}").
	Name string
	// Concurrency bounds the hooks running at once (default 4).
	Concurrency int
	// Timeout bounds one hook run (default 5m).
	Timeout time.Duration
	// KillGrace is how long a timed-out or cancelled hook's process group
	// has between SIGTERM and SIGKILL (default 10s).
	KillGrace time.Duration
	// OutputLimit is how many bytes of the end of a hook's combined
	// output are kept (default 4096).
	OutputLimit int
	// Dir is the hooks' working directory (default: rollguard's).
	Dir string
	// Logger receives one line per hook run (default: discard).
	Logger *slog.Logger
}

// Snapshotter runs the configured hooks. It is safe for concurrent use.
type Snapshotter struct {
	cfg                     Config
	name                    *template.Template
	create, restore, delete []*template.Template
	log                     *slog.Logger
}

var _ ports.Snapshotter = (*Snapshotter)(nil)

// New validates cfg, fills in its defaults and compiles its templates. Every
// problem is reported at once, each naming the hook and the argv element
// ("create[2]").
func New(cfg Config) (*Snapshotter, error) {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.KillGrace == 0 {
		cfg.KillGrace = DefaultKillGrace
	}
	if cfg.OutputLimit == 0 {
		cfg.OutputLimit = DefaultOutputLimit
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	if cfg.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("snapshot concurrency %d: must be positive", cfg.Concurrency))
	}
	if cfg.Timeout < 0 {
		errs = append(errs, fmt.Errorf("snapshot timeout %s: must be positive", cfg.Timeout))
	}
	if cfg.KillGrace < 0 {
		errs = append(errs, fmt.Errorf("snapshot kill grace %s: must be positive", cfg.KillGrace))
	}
	if cfg.OutputLimit < 0 {
		errs = append(errs, fmt.Errorf("snapshot output limit %d: must be positive", cfg.OutputLimit))
	}
	s := &Snapshotter{cfg: cfg, log: cfg.Logger}

	// The name is what {{.Snapshot}} renders to: it cannot use itself.
	hookFields := ports.SnapshotFields()
	nameFields := slices.DeleteFunc(ports.SnapshotFields(), func(f string) bool { return f == ".Snapshot" })
	var err error
	if s.name, err = compile("name", cfg.Name, nameFields, -1); err != nil {
		errs = append(errs, err)
	}
	hooks := []struct {
		name     string
		argv     []string
		required bool
		out      *[]*template.Template
	}{
		{"create", cfg.Create, true, &s.create},
		{"restore", cfg.Restore, true, &s.restore},
		{"delete", cfg.Delete, false, &s.delete},
	}
	for _, h := range hooks {
		if len(h.argv) == 0 {
			if h.required {
				errs = append(errs, fmt.Errorf("snapshot %s hook: an argv is required", h.name))
			}
			continue
		}
		for i, arg := range h.argv {
			t, err := compile(fmt.Sprintf("%s[%d]", h.name, i), arg, hookFields, i)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			*h.out = append(*h.out, t)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// compile parses one template and checks that it names only allowed fields
// (sorted) and renders on sample data (ports.TrySnapshotArg; i is its
// place in the argv, -1 for the snapshot's name).
func compile(where, text string, allowed []string, i int) (*template.Template, error) {
	t, err := template.New(where).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("snapshot hook %s %q: %w", where, text, err)
	}
	if bad := ports.UnknownFields(t, allowed); len(bad) > 0 {
		return nil, fmt.Errorf("snapshot hook %s %q: unknown field %s (known: %s)", where, text, strings.Join(bad, ", "), strings.Join(allowed, " "))
	}
	if err := ports.TrySnapshotArg(t, i); err != nil {
		return nil, fmt.Errorf("snapshot hook %s %q: %w", where, text, err)
	}
	return t, nil
}

// Create runs the create hook for each host. See ports.Snapshotter.
func (s *Snapshotter) Create(ctx context.Context, hosts []ports.Host, runID string) []ports.SnapshotResult {
	return s.runAll(ctx, "create", s.create, hosts, runID)
}

// Restore runs the restore hook for each host. See ports.Snapshotter.
func (s *Snapshotter) Restore(ctx context.Context, hosts []ports.Host, runID string) []ports.SnapshotResult {
	return s.runAll(ctx, "restore", s.restore, hosts, runID)
}

// Delete runs the delete hook for each host; nil when none is configured.
// See ports.Snapshotter.
func (s *Snapshotter) Delete(ctx context.Context, hosts []ports.Host, runID string) []ports.SnapshotResult {
	if len(s.delete) == 0 {
		return nil
	}
	return s.runAll(ctx, "delete", s.delete, hosts, runID)
}

// SnapshotName renders the snapshot's name for host in run runID.
func (s *Snapshotter) SnapshotName(host ports.Host, runID string) (string, error) {
	var b strings.Builder
	if err := s.name.Execute(&b, data(host, runID, "")); err != nil {
		return "", fmt.Errorf("snapshot name for host %s: %w", host.Name, err)
	}
	return b.String(), nil
}

func data(host ports.Host, runID, snapshot string) ports.SnapshotData {
	addr := host.Address
	if addr == "" {
		addr = host.Name
	}
	return ports.SnapshotData{Host: ports.SnapshotHost{Name: host.Name, Address: addr}, RunID: runID, Snapshot: snapshot}
}

// runAll runs hook for every host, at most Concurrency at once, and returns
// the results in the order of hosts.
func (s *Snapshotter) runAll(ctx context.Context, hook string, argv []*template.Template, hosts []ports.Host, runID string) []ports.SnapshotResult {
	results := make([]ports.SnapshotResult, len(hosts))
	slots := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			notStarted := func(err error) {
				name, _ := s.SnapshotName(h, runID)
				results[i] = ports.SnapshotResult{Host: h.Name, Snapshot: name,
					Err: fmt.Errorf("snapshot %s hook on host %s: not started: %w", hook, h.Name, err)}
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				notStarted(ctx.Err())
				return
			}
			defer func() { <-slots }()
			if err := ctx.Err(); err != nil {
				notStarted(err)
				return
			}
			results[i] = s.runOne(ctx, hook, argv, h, runID)
		}()
	}
	wg.Wait()
	return results
}

// runOne renders and runs hook for one host.
func (s *Snapshotter) runOne(ctx context.Context, hook string, argvT []*template.Template, host ports.Host, runID string) ports.SnapshotResult {
	res := ports.SnapshotResult{Host: host.Name}
	name, err := s.SnapshotName(host, runID)
	if err != nil {
		res.Err = err
		return res
	}
	res.Snapshot = name
	d := data(host, runID, name)
	argv := make([]string, len(argvT))
	for i, t := range argvT {
		var b strings.Builder
		if err := t.Execute(&b, d); err != nil {
			res.Err = fmt.Errorf("snapshot %s hook on host %s: render argument %d: %w", hook, host.Name, i, err)
			return res
		}
		argv[i] = b.String()
	}

	runCtx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	out := &tailBuffer{limit: s.cfg.OutputLimit}
	cmd := exec.CommandContext(runCtx, argv[0], argv[1:]...)
	cmd.Dir = s.cfg.Dir
	cmd.Env = append(os.Environ(),
		"ROLLGUARD_HOST="+host.Name,
		"ROLLGUARD_HOST_ADDRESS="+d.Host.Address,
		"ROLLGUARD_RUN_ID="+runID,
		"ROLLGUARD_SNAPSHOT="+name,
	)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so that the hook and everything it started
	// can be signalled together: SIGTERM first, SIGKILL after the grace.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return signalGroup(cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = s.cfg.KillGrace

	log := s.log.With("hook", hook, "host", host.Name, "snapshot", name)
	log.Debug("snapshot hook starting", "program", argv[0])
	start := time.Now()
	err = cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success() {
		// The hook succeeded but left a process holding its output open
		// for longer than the grace period: its result stands.
		log.Warn("snapshot hook exited 0 but left a process holding its output", "grace", s.cfg.KillGrace)
		err = nil
	}
	if runCtx.Err() != nil && cmd.Process != nil {
		// The leader has been reaped; whatever of its group ignored
		// SIGTERM through the grace period is killed now, and given up
		// to another grace period to be gone, so that a returned result
		// means the hook is no longer touching the host.
		killGroup(cmd.Process.Pid, s.cfg.KillGrace)
	}
	res.Output = out.String()
	elapsed := time.Since(start).Round(time.Millisecond)
	switch {
	case ctx.Err() != nil:
		res.Err = fmt.Errorf("snapshot %s hook on host %s: cancelled: %w", hook, host.Name, ctx.Err())
		log.Info("snapshot hook cancelled", "elapsed", elapsed)
		return res
	case runCtx.Err() != nil:
		res.Err = fmt.Errorf("snapshot %s hook on host %s: timed out after %s: %w", hook, host.Name, s.cfg.Timeout, runCtx.Err())
	case err != nil:
		if last := lastLine(res.Output); last != "" {
			res.Err = fmt.Errorf("snapshot %s hook on host %s: %w: %s", hook, host.Name, err, last)
		} else {
			res.Err = fmt.Errorf("snapshot %s hook on host %s: %w", hook, host.Name, err)
		}
	}
	if res.Err != nil {
		log.Warn("snapshot hook failed", "elapsed", elapsed, "err", res.Err)
		return res
	}
	res.OK = true
	log.Info("snapshot hook done", "elapsed", elapsed)
	return res
}

// signalGroup signals the process group led by pid; a group that is
// already gone is not an error.
func signalGroup(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal process group %d: %w", pid, err)
	}
	return nil
}

// killGroup sends SIGKILL to the process group led by pid and waits, at
// most grace, until no process of the group is left. Members that have
// exited but are not reaped yet (zombies) count as left, hence the bound.
func killGroup(pid int, grace time.Duration) {
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		return
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(-pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lastLine is the last non-empty line of out, cut to 200 bytes, for an
// error message.
func lastLine(out string) string {
	out = strings.TrimRight(out, "\n\r\t ")
	if i := strings.LastIndexByte(out, '\n'); i >= 0 {
		out = out[i+1:]
	}
	out = strings.TrimSpace(out)
	if len(out) > 200 {
		out = out[:200] + "…"
	}
	return strings.ToValidUTF8(out, "")
}

// tailBuffer keeps the last limit bytes written to it.
type tailBuffer struct {
	mu      sync.Mutex
	limit   int
	buf     []byte
	dropped bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.limit {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.limit:]...)
		t.dropped = true
	}
	return len(p), nil
}

// String returns the tail, valid UTF-8, marked with "…" when the start
// was dropped.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	dropped := t.dropped
	if len(b) > t.limit {
		b = b[len(b)-t.limit:]
		dropped = true
	}
	s := strings.ToValidUTF8(string(b), "")
	if dropped {
		s = "…" + s
	}
	return s
}
