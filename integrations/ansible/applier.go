// Package ansible runs playbooks for rollguard: it implements ports.Applier
// with github.com/apenella/go-ansible/v2, running ansible-playbook against
// the user's own inventory (or, for targets that have none, a generated
// one) with --limit, and turning Ansible's JSON output into one outcome per
// host (ok, changed, failed, unreachable, skipped, unmatched) with the
// names of the tasks that changed something. Inventory reads the hosts of
// an inventory group the same way, through ansible-inventory.
//
// Progress streams while the playbook runs through a small notification
// callback plugin embedded in the binary (see events.go). Cancelling the
// context, or the run outlasting Config.Timeout, stops ansible-playbook's
// whole process group (see process.go). SSH runs without prompts and on
// connections of its own (see ssh.go); temporary files live in a private
// directory that a later run sweeps if this one is killed (workspace.go).
package ansible

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apenella/go-ansible/v2/pkg/execute"
	"github.com/apenella/go-ansible/v2/pkg/execute/stdoutcallback"
	"github.com/apenella/go-ansible/v2/pkg/playbook"

	"github.com/rollguard/rollguard/ports"
)

// DefaultBinary is the ansible-playbook executable used when Config.Binary
// is empty; it is looked up in PATH.
const DefaultBinary = "ansible-playbook"

// DefaultKillGrace is how long a cancelled playbook's process group has
// between SIGTERM and SIGKILL when Config.KillGrace is zero.
const DefaultKillGrace = 5 * time.Second

// Config configures an Applier.
type Config struct {
	// Binary is the ansible-playbook executable (default "ansible-playbook",
	// looked up in PATH).
	Binary string
	// WorkDir is the directory ansible-playbook runs in, where it finds an
	// ansible.cfg: the spec's directory (default: the current directory).
	WorkDir string
	// Inventory is the user's inventory (targets.inventory: a file, a
	// directory or a plugin configuration). When set, playbooks run
	// against it as it is, with its groups, group_vars and host_vars, and
	// ApplyRequest.Inventory only says which hosts a limit may name. When
	// empty, each run writes an inventory of ApplyRequest.Inventory.
	Inventory string
	// Timeout bounds one playbook run (apply.timeout); when it passes, the
	// playbook's process group is stopped and Apply returns an error
	// wrapping context.DeadlineExceeded. 0: no bound.
	Timeout time.Duration
	// Env holds extra environment variables for ansible-playbook, on top of
	// the process environment (so ANSIBLE_* variables set there pass
	// through). Values are never logged.
	Env map[string]string
	// KillGrace is how long a cancelled playbook's process group has
	// between SIGTERM and SIGKILL (default DefaultKillGrace).
	KillGrace time.Duration
	// Logger receives one line when a run starts and one when it ends
	// (default: discard).
	Logger *slog.Logger
}

// Applier runs playbooks with ansible-playbook. It is safe for concurrent
// use: each Apply works in its own temporary directory.
type Applier struct {
	cfg   Config
	log   *slog.Logger
	sweep sync.Once
}

var _ ports.Applier = (*Applier)(nil)

// New returns an Applier with cfg's defaults filled in.
func New(cfg Config) *Applier {
	if cfg.Binary == "" {
		cfg.Binary = DefaultBinary
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = DefaultKillGrace
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Applier{cfg: cfg, log: log}
}

// Apply runs req.Playbook over req.Limit (every inventory host when Limit
// is empty) and returns each host's outcome, in Limit (or inventory) order.
// progress, when not nil, is called from one goroutine as task results
// arrive; it should return quickly, as Ansible waits while the stream is
// full.
//
// Hosts that fail, are unreachable or that no play matched are reported in
// the result, not as an error: Apply returns an error only when
// ansible-playbook could not run the play at all (missing binary or
// playbook, syntax error, a limit the inventory does not know), with
// Ansible's message. Cancelling ctx, or Config.Timeout passing, stops the
// playbook's whole process group (SIGTERM, then SIGKILL after
// Config.KillGrace) and returns an error wrapping ctx.Err() (or
// context.DeadlineExceeded) together with the outcomes known so far.
//
// Extra variables are written to a private temporary file and passed as
// --extra-vars @file, so their values appear neither on the command line
// (visible to every local user) nor in logs or errors.
func (a *Applier) Apply(ctx context.Context, req ports.ApplyRequest, progress func(ports.ApplyEvent)) (ports.ApplyResult, error) {
	a.sweep.Do(func() { sweepWorkspaces(ctx, a.log) })
	order, err := hostOrder(req)
	if err != nil {
		return ports.ApplyResult{}, fmt.Errorf("apply %s: %w", req.Playbook, err)
	}
	// ansible-playbook runs in Config.WorkDir; the request's paths are
	// relative to this process's directory.
	playbookPath, err := filepath.Abs(req.Playbook)
	if err != nil {
		return ports.ApplyResult{}, fmt.Errorf("apply %s: playbook: %w", req.Playbook, err)
	}
	if _, err := os.Stat(playbookPath); err != nil {
		return ports.ApplyResult{}, fmt.Errorf("apply %s: playbook: %w", req.Playbook, err)
	}
	ws, err := newWorkspace(ctx, a.log)
	if err != nil {
		return ports.ApplyResult{}, fmt.Errorf("apply %s: %w", req.Playbook, err)
	}
	defer ws.remove(ctx, a.log)

	opts := &playbook.AnsiblePlaybookOptions{}
	if a.cfg.Inventory != "" {
		if opts.Inventory, err = filepath.Abs(a.cfg.Inventory); err != nil {
			return ports.ApplyResult{}, fmt.Errorf("apply %s: inventory: %w", req.Playbook, err)
		}
	} else if opts.Inventory, err = writeInventory(ws.dir, req.Inventory); err != nil {
		return ports.ApplyResult{}, fmt.Errorf("apply %s: %w", req.Playbook, err)
	}
	// The user's inventory may hold more hosts than the targets: a run
	// without a limit covers the targets only.
	limit := req.Limit
	if len(limit) == 0 && a.cfg.Inventory != "" {
		limit = order
	}
	if len(limit) > 0 {
		// From a file: a wave of thousands of hosts would not fit in one
		// command-line argument (128 KiB).
		file := filepath.Join(ws.dir, "limit")
		if err := os.WriteFile(file, []byte(strings.Join(limit, "\n")+"\n"), 0o600); err != nil {
			return ports.ApplyResult{}, fmt.Errorf("apply %s: limit: %w", req.Playbook, err)
		}
		opts.Limit = "@" + file
	}
	// A check changes nothing; --diff makes the modules say what they
	// would write.
	opts.Check, opts.Diff = req.Check, req.Check
	if req.Forks > 0 {
		opts.Forks = strconv.Itoa(req.Forks)
	}
	if req.VaultPasswordFile != "" {
		if opts.VaultPasswordFile, err = filepath.Abs(req.VaultPasswordFile); err != nil {
			return ports.ApplyResult{}, fmt.Errorf("apply %s: vault password file: %w", req.Playbook, err)
		}
	}
	if len(req.ExtraVars) > 0 {
		file, err := writeExtraVars(ws.dir, req.ExtraVars)
		if err != nil {
			return ports.ApplyResult{}, fmt.Errorf("apply %s: %w", req.Playbook, err)
		}
		if err := opts.AddExtraVarsFile(file); err != nil {
			return ports.ApplyResult{}, fmt.Errorf("apply %s: extra vars: %w", req.Playbook, err)
		}
	}
	pluginDir, err := writeCallbackPlugin(ws.dir)
	if err != nil {
		return ports.ApplyResult{}, fmt.Errorf("apply %s: %w", req.Playbook, err)
	}
	events, err := newEventStream(progress)
	if err != nil {
		return ports.ApplyResult{}, fmt.Errorf("apply %s: %w", req.Playbook, err)
	}
	defer events.close()

	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if a.cfg.Timeout > 0 {
		runCtx, cancel = context.WithTimeout(ctx, a.cfg.Timeout)
	}
	defer cancel()

	var stdout, stderr bytes.Buffer
	cmd := playbook.NewAnsiblePlaybookCmd(
		playbook.WithBinary(a.cfg.Binary),
		playbook.WithPlaybooks(playbookPath),
		playbook.WithPlaybookOptions(opts),
	)
	runner := execute.NewDefaultExecute(
		execute.WithCmd(cmd),
		execute.WithCmdRunDir(a.cfg.WorkDir),
		execute.WithWrite(&stdout),
		execute.WithWriteError(&stderr),
	)
	group := &groupExec{
		env:       a.environ(pluginDir, ws, runner),
		dir:       a.cfg.WorkDir,
		extra:     events.writer,
		onStarted: events.closeWriter,
		onPID:     req.OnStart,
		grace:     a.cfg.KillGrace,
	}
	runner.Exec = group

	a.log.InfoContext(ctx, "ansible-playbook starting",
		"playbook", req.Playbook, "hosts", len(order), "forks", req.Forks, "check", req.Check,
		"extra_vars", slices.Sorted(maps.Keys(req.ExtraVars)))
	start := time.Now()
	// go-ansible's own error text embeds the command line and the
	// environment; the outcome is judged from the exit status that
	// groupExec records and from Ansible's output instead.
	execErr := stdoutcallback.NewJSONStdoutCallbackExecute(runner).Execute(runCtx)
	waitErr := group.finish()
	events.closeWriter()
	seen, plays := events.wait()
	run := runInfo{order: order, limit: limit, plays: plays, check: req.Check}

	if started, startErr := group.startErr(); !started {
		if startErr == nil {
			// go-ansible failed before starting anything: its error
			// cannot hold a command line yet.
			startErr = execErr
		}
		return ports.ApplyResult{}, fmt.Errorf("apply %s: start %s: %w", req.Playbook, a.cfg.Binary, startErr)
	}
	if runCtx.Err() != nil {
		res := resultsFromEvents(run, seen)
		explainHostKeys(res, req.Inventory)
		a.log.InfoContext(ctx, "ansible-playbook stopped", "playbook", req.Playbook,
			"duration", time.Since(start).Round(time.Millisecond))
		if ctx.Err() == nil {
			return res, fmt.Errorf("apply %s: stopped after %s (apply.timeout): %w", req.Playbook, a.cfg.Timeout, context.DeadlineExceeded)
		}
		return res, fmt.Errorf("apply %s: stopped: %w", req.Playbook, ctx.Err())
	}

	res, parsed := resultsFromJSON(run, stdout.Bytes())
	var exitErr *exec.ExitError
	switch {
	case waitErr != nil && !errors.As(waitErr, &exitErr):
		res = resultsFromEvents(run, seen)
		explainHostKeys(res, req.Inventory)
		return res, fmt.Errorf("apply %s: wait for %s: %w", req.Playbook, a.cfg.Binary, waitErr)
	case !parsed && waitErr != nil:
		return ports.ApplyResult{}, fmt.Errorf("apply %s: ansible-playbook exited with status %d: %s",
			req.Playbook, exitErr.ExitCode(), ansibleMessage(stderr.String(), stdout.String()))
	case !parsed:
		// Exit 0 without a JSON document should not happen; the event
		// stream still knows every task result.
		res = resultsFromEvents(run, seen)
	}
	explainHostKeys(res, req.Inventory)
	a.log.InfoContext(ctx, "ansible-playbook finished", "playbook", req.Playbook,
		"duration", time.Since(start).Round(time.Millisecond), "outcomes", countStatuses(res))
	return res, nil
}

// environ is the environment of one run: the process environment, then
// Config.Env, then the settings go-ansible adds (the json stdout callback),
// then the SSH settings of ssh.go and the event callback's, which win. A
// callback directory set in the environment is kept, ours appended; the
// plugin needs no entry in callbacks_enabled, so that list (from
// ansible.cfg) stays the user's. Known limitation: ANSIBLE_CALLBACK_PLUGINS
// replaces a callback_plugins path set in ansible.cfg; set it in the
// environment instead.
func (a *Applier) environ(pluginDir string, ws *workspace, runner *execute.DefaultExecute) func() []string {
	return func() []string {
		env := processEnv(a.cfg.Env)
		for k, v := range runner.EnvVars {
			env[k] = v
		}
		for k, v := range sshEnv(ws) {
			env[k] = v
		}
		env["ANSIBLE_CALLBACK_PLUGINS"] = appendList(env["ANSIBLE_CALLBACK_PLUGINS"], ":", pluginDir)
		env[eventsFDVar] = strconv.Itoa(eventsFD)
		// Colour codes would end up in failure messages.
		env["ANSIBLE_NOCOLOR"] = "1"
		return envList(env)
	}
}

// processEnv is this process's environment with extra on top.
func processEnv(extra map[string]string) map[string]string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// hostOrder returns the hosts the run covers, checking that every limited
// host is in the inventory and that names cannot be misread as patterns.
func hostOrder(req ports.ApplyRequest) ([]string, error) {
	known := make(map[string]bool, len(req.Inventory))
	for _, h := range req.Inventory {
		if h.Name == "" {
			return nil, errors.New("inventory host without a name")
		}
		if strings.ContainsAny(h.Name, ", ") {
			return nil, fmt.Errorf("inventory host %q: a name may not contain a comma or a space", h.Name)
		}
		known[h.Name] = true
	}
	if len(req.Limit) == 0 {
		order := make([]string, len(req.Inventory))
		for i, h := range req.Inventory {
			order[i] = h.Name
		}
		return order, nil
	}
	for _, name := range req.Limit {
		if !known[name] {
			return nil, fmt.Errorf("limit host %q is not in the inventory", name)
		}
	}
	return slices.Clone(req.Limit), nil
}

// writeInventory writes hosts as a YAML-plugin inventory in JSON (YAML's
// subset), for targets that come with no inventory of their own (static,
// Consul, Nomad): every host under all.hosts, in no other group, with
// ansible_host (Address, default Name), rollguard_port (Port, when known;
// not ansible_port, which is the SSH port) and its Vars, which override
// the former.
func writeInventory(dir string, hosts []ports.Host) (string, error) {
	all := make(map[string]map[string]any, len(hosts))
	for _, h := range hosts {
		vars := map[string]any{"ansible_host": h.Name}
		if h.Address != "" {
			vars["ansible_host"] = h.Address
		}
		if h.Port != 0 {
			vars["rollguard_port"] = h.Port
		}
		for k, v := range h.Vars {
			vars[k] = v
		}
		all[h.Name] = vars
	}
	data, err := json.Marshal(map[string]any{"all": map[string]any{"hosts": all}})
	if err != nil {
		return "", fmt.Errorf("inventory: %w", err)
	}
	path := filepath.Join(dir, "inventory.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("inventory: %w", err)
	}
	return path, nil
}

// writeExtraVars writes vars as JSON to a file only the current user can
// read.
func writeExtraVars(dir string, vars map[string]any) (string, error) {
	data, err := json.Marshal(vars)
	if err != nil {
		return "", fmt.Errorf("extra vars: %w", err)
	}
	path := filepath.Join(dir, "extra-vars.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", fmt.Errorf("extra vars: %w", err)
	}
	return path, nil
}

// ansibleMessage is what Ansible said about a run that could not happen:
// its ERROR lines and what follows them, or the end of its output.
func ansibleMessage(stderr, stdout string) string {
	text := strings.TrimSpace(stderr)
	if text == "" {
		text = strings.TrimSpace(stdout)
	}
	if i := strings.Index(text, "ERROR!"); i >= 0 {
		text = text[i:]
	}
	const max = 4000
	if len(text) > max {
		text = text[:max] + " ..."
	}
	if text == "" {
		return "no output"
	}
	return text
}

func appendList(list, sep, item string) string {
	if list == "" {
		return item
	}
	return list + sep + item
}

func countStatuses(res ports.ApplyResult) map[string]int {
	n := map[string]int{}
	for _, h := range res.Hosts {
		n[h.Status]++
	}
	return n
}
