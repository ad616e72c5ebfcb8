// Package demo runs rollguard's whole loop on this machine: a simulated
// fleet (simfleet) scraped by a real VictoriaMetrics, changed by real
// Ansible. `rollguard demo` uses it, and so do the live end-to-end tests,
// so that what the demo shows is what the tests check.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rollguard/rollguard/integrations/victoriametrics"
	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/simfleet"
)

// EnvOptions configure a demo environment.
type EnvOptions struct {
	// Dir is the working directory (fleet, VictoriaMetrics data, specs,
	// reports). Required; the caller owns it.
	Dir string
	// Hosts is the fleet size (default 6).
	Hosts int
	// Seed makes the fleet's noise reproducible.
	Seed int64
	// Playbooks holds site.yml, revert.yml and templates/ (the binary
	// embeds testdata/playbooks).
	Playbooks fs.FS
	// Fleet is a fleet the caller started (the SSH fleet, reached over
	// SSH): StartEnv then starts only VictoriaMetrics to scrape it, and
	// Hosts is ignored. Close closes it all the same.
	Fleet  *simfleet.Fleet
	Logger *slog.Logger
}

// Env is a running simulated fleet with a VictoriaMetrics scraping it.
type Env struct {
	Dir   string
	Fleet *simfleet.Fleet
	VM    *victoriametrics.Server
	// Started is when the exporters started: data exists from then on.
	Started time.Time
}

// ErrMissing says a required program is not installed.
var ErrMissing = errors.New("required program missing")

// Check says whether Ansible and VictoriaMetrics are installed, and how to
// install what is missing.
func Check() error {
	var missing []string
	if _, err := exec.LookPath("ansible-playbook"); err != nil {
		missing = append(missing, "ansible-playbook (apt-get install ansible-core)")
	}
	if _, err := victoriametrics.FindBinary(); err != nil {
		missing = append(missing, "victoria-metrics (go install github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics@v1.151.0)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrMissing, strings.Join(missing, ", "))
	}
	return nil
}

// VictoriaMetricsModule is what Install builds when victoria-metrics is
// missing.
const VictoriaMetricsModule = "github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics@v1.151.0"

// Install installs what Check finds missing: Ansible from the
// distribution's packages (as root, with apt-get) and VictoriaMetrics
// with `go install`. Each command's output goes to out. What cannot be
// installed here is an error that says how to do it by hand.
func Install(ctx context.Context, out io.Writer) error {
	run := func(name string, args ...string) error {
		fmt.Fprintf(out, "demo: installing: %s %s\n", name, strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Stdout, cmd.Stderr = out, out
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.Run()
	}
	if _, err := exec.LookPath("ansible-playbook"); err != nil {
		if _, aerr := exec.LookPath("apt-get"); aerr != nil || os.Geteuid() != 0 {
			return fmt.Errorf("%w: ansible-playbook; install ansible-core (as root: apt-get install ansible-core)", ErrMissing)
		}
		if err := run("apt-get", "update", "-qq"); err != nil {
			return fmt.Errorf("apt-get update: %w", err)
		}
		if err := run("apt-get", "install", "-y", "-qq", "ansible-core"); err != nil {
			return fmt.Errorf("apt-get install ansible-core: %w", err)
		}
	}
	if _, err := victoriametrics.FindBinary(); err != nil {
		if _, gerr := exec.LookPath("go"); gerr != nil {
			return fmt.Errorf("%w: victoria-metrics; install Go, then go install %s", ErrMissing, VictoriaMetricsModule)
		}
		if err := run("go", "install", VictoriaMetricsModule); err != nil {
			return fmt.Errorf("go install %s: %w", VictoriaMetricsModule, err)
		}
	}
	return Check()
}

// StartEnv starts the fleet and VictoriaMetrics, and copies the playbooks
// into Dir/playbooks. Close stops both.
func StartEnv(ctx context.Context, o EnvOptions) (*Env, error) {
	if o.Hosts == 0 {
		o.Hosts = 6
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := copyFS(o.Playbooks, filepath.Join(o.Dir, "playbooks")); err != nil {
		return nil, fmt.Errorf("copy playbooks: %w", err)
	}
	fleet := o.Fleet
	if fleet == nil {
		var err error
		fleet, err = simfleet.Start(ctx, simfleet.Config{Dir: filepath.Join(o.Dir, "fleet"), Hosts: o.Hosts, Seed: o.Seed, Logger: o.Logger})
		if err != nil {
			return nil, fmt.Errorf("start simulated fleet: %w", err)
		}
	}
	scrape := filepath.Join(o.Dir, "scrape.yml")
	if err := fleet.ScrapeConfig(scrape); err != nil {
		fleet.Close()
		return nil, err
	}
	vm, err := victoriametrics.StartServer(ctx, victoriametrics.ServerOptions{
		DataDir: filepath.Join(o.Dir, "vmdata"), ScrapeConfigPath: scrape, ScrapeInterval: time.Second, Logger: o.Logger,
	})
	if err != nil {
		fleet.Close()
		return nil, fmt.Errorf("start VictoriaMetrics: %w", err)
	}
	return &Env{Dir: o.Dir, Fleet: fleet, VM: vm, Started: time.Now()}, nil
}

// client queries the environment's VictoriaMetrics for every host, by
// name (the keys).
func (e *Env) client() (*victoriametrics.Client, []string, error) {
	client, err := victoriametrics.New(victoriametrics.Config{URL: e.VM.URL()})
	if err != nil {
		return nil, nil, err
	}
	var keys []string
	for _, h := range e.Fleet.Hosts() {
		keys = append(keys, h.Name)
	}
	return client, keys, nil
}

// RestartVM stops VictoriaMetrics and starts it again on its data
// directory and address: what a rollout sees is its metrics store going
// away and coming back at the same URL. It returns once the new process
// answers.
func (e *Env) RestartVM(ctx context.Context, down func()) error {
	if err := e.VM.Stop(); err != nil {
		return err
	}
	if down != nil {
		down()
	}
	vm, err := victoriametrics.StartServer(ctx, victoriametrics.ServerOptions{
		DataDir: filepath.Join(e.Dir, "vmdata"), ScrapeConfigPath: filepath.Join(e.Dir, "scrape.yml"), ScrapeInterval: time.Second,
		Addr: strings.TrimPrefix(e.VM.URL(), "http://"),
	})
	if err != nil {
		return fmt.Errorf("restart VictoriaMetrics: %w", err)
	}
	e.VM = vm
	return nil
}

// Reset gives every host conf as its app.conf (those that have another)
// and waits until the metrics no longer show anything else: until every
// host's query window (simfleet.Window) holds only samples scraped after
// its configuration last changed. It waits on VictoriaMetrics' data, not
// on a clock: on a loaded machine a scrape comes late, and the wait is
// that much longer.
func (e *Env) Reset(ctx context.Context, conf simfleet.AppConf) error {
	for _, h := range e.Fleet.Hosts() {
		p := filepath.Join(h.Dir, "app.conf")
		if old, err := os.ReadFile(p); err == nil && string(old) == conf.Format() {
			continue
		}
		if err := os.WriteFile(p, []byte(conf.Format()), 0o644); err != nil {
			return err
		}
	}
	return e.Settle(ctx)
}

// Settle waits until the query window of every host holds only samples
// scraped after its configuration last changed (simfleet's
// Fleet.Changed), as VictoriaMetrics answers: the oldest sample of the
// window at now is newer than the change.
func (e *Env) Settle(ctx context.Context) error {
	client, keys, err := e.client()
	if err != nil {
		return err
	}
	window, err := time.ParseDuration(simfleet.Window)
	if err != nil {
		return err
	}
	hosts := e.Fleet.Hosts()
	// The oldest sample time (unix seconds) of each host's window.
	q := ports.Query{Name: "oldest", Expr: "min by (instance) (tfirst_over_time(app_info[" + simfleet.Window + "]))"}
	oldest := make([]float64, len(keys))
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		now := time.Now()
		settled := false
		if err := client.Instant(ctx, q, keys, now, oldest); err == nil {
			settled = true
			for i, h := range hosts {
				changed := e.Fleet.Changed(h.Name)
				// The window is full (its oldest sample is about a window
				// old) and began after the change.
				if math.IsNaN(oldest[i]) || now.Sub(time.Unix(0, int64(oldest[i]*1e9))) < window-2*time.Second ||
					!time.Unix(0, int64(oldest[i]*1e9)).After(changed) {
					settled = false
				}
			}
		}
		if settled {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the fleet's metrics to settle: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// Close stops VictoriaMetrics and the fleet.
func (e *Env) Close() error {
	return errors.Join(e.VM.Stop(), e.Fleet.Close())
}

// Hosts are the fleet's hosts as rollout targets.
func (e *Env) Hosts() []ports.Host {
	var out []ports.Host
	for _, h := range e.Fleet.Hosts() {
		out = append(out, ports.Host{Name: h.Name, Address: h.Address, Port: h.Port, Vars: h.Vars()})
	}
	return out
}

// WaitForData waits until VictoriaMetrics has had every host's metrics for
// at least d, printing progress to progress (may be nil). It polls the
// real query API; the wait is the baseline a rollout needs.
func (e *Env) WaitForData(ctx context.Context, d time.Duration, progress func(string)) error {
	client, keys, err := e.client()
	if err != nil {
		return err
	}
	hosts := e.Fleet.Hosts()
	vals := make([]float64, len(keys))
	var first time.Time
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := -1
	for {
		now := time.Now()
		if err := client.Instant(ctx, ports.Query{Name: "latency_p95", Expr: simfleet.QueryLatencyP95}, keys, now, vals); err == nil && allNumbers(vals) {
			if first.IsZero() {
				first = now
			}
			have := now.Sub(first)
			if have >= d {
				return nil
			}
			if s := int(have.Seconds()) / 5; s != last && progress != nil {
				last = s
				progress(fmt.Sprintf("collecting a baseline for %d hosts: %s of %s", len(hosts), have.Round(time.Second), d))
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func allNumbers(v []float64) bool {
	for _, x := range v {
		if math.IsNaN(x) {
			return false
		}
	}
	return len(v) > 0
}

// SpecOptions shape a generated rollout.yaml over the environment.
type SpecOptions struct {
	Name string
	// Version is apply.version and the extra var version (app.conf's);
	// empty leaves apply.version to rollguard's default.
	Version   string
	ExtraVars map[string]string
	// Interval between ticks (default 2s), Baseline window (default 40s),
	// Monitor of the canary (default 20s) and of each wave (default 12s).
	Interval, Baseline, Monitor, WaveMonitor time.Duration
	// Waves are the wave sizes after the canary (default ["50%", "100%"]).
	Waves []string
	// Policies is the policies: block (default: the fleet rule, the seed
	// rule and a host rule).
	Policies string
	// Detection is the detection: block (default medium, a warm-up of one
	// interval).
	Detection string
	// NoRevertPlaybook leaves revert.playbook out.
	NoRevertPlaybook bool
	// RevertExtraVars are revert.extra_vars (the revert playbook's).
	RevertExtraVars map[string]string
	// KnownGood sets revert.known_good.
	KnownGood bool
	// Snapshots adds revert.snapshot hooks that copy each host's app.conf
	// aside (create) and back (restore): the simulated hosts' snapshots.
	Snapshots bool
	// Scope is revert.scope (default wave).
	Scope string
	// OnInterrupt is revert.on_interrupt (default revert).
	OnInterrupt string
	// Canary names the canary hosts (default: the first host).
	Canary []string
	// Inventory and Group, when set, are targets.inventory and
	// targets.group (an inventory of the caller's, relative to Dir)
	// instead of a static list of the fleet's hosts with a local
	// connection.
	Inventory, Group string
	// PlaybookDir holds site.yml and revert.yml, relative to Dir
	// (default "playbooks").
	PlaybookDir string
	// MaxFailed is revert.max_failed (default: not written).
	MaxFailed string
	// ApplyTimeout is apply.timeout (default: not written).
	ApplyTimeout time.Duration
	// VaultPasswordFile is apply.vault_password_file, relative to Dir
	// (default: not written).
	VaultPasswordFile string
	// StateStore is state.store: "consul" or "nomad" keep the journal,
	// history and lock there (the CONSUL_* / NOMAD_* environment says
	// where); empty or "local" keeps them in Dir/state.
	StateStore string
	// Extra is appended verbatim.
	Extra string
}

// WriteSpec writes Dir/<name>.yaml and returns its path.
func (e *Env) WriteSpec(o SpecOptions) (string, error) {
	if o.Interval == 0 {
		o.Interval = 2 * time.Second
	}
	if o.Baseline == 0 {
		o.Baseline = 40 * time.Second
	}
	if o.Monitor == 0 {
		o.Monitor = 20 * time.Second
	}
	if o.WaveMonitor == 0 {
		o.WaveMonitor = 12 * time.Second
	}
	if o.Waves == nil {
		o.Waves = []string{"50%", "100%"}
	}
	if o.Policies == "" {
		o.Policies = `policies:
  - name: degraded-share
    rollback_when: 'fraction(hosts, .degraded) >= 0.3'
  - name: fleet-threshold
    rollback_when: 'top_mean(hosts, 0.30) > 5'
  - name: extreme-host
    host_rollback_when: 'host.metrics.error_rate.z > 25'
`
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Generated by rollguard's demo for the simulated fleet in %s.\nname: %s\ntargets:\n", e.Dir, o.Name)
	if o.Inventory != "" {
		fmt.Fprintf(&b, "  inventory: %s\n  group: %s\n", o.Inventory, o.Group)
	} else {
		b.WriteString("  static:\n")
		for _, h := range e.Fleet.Hosts() {
			fmt.Fprintf(&b, "    - name: %s\n      address: %s\n      port: %d\n      vars: {host_dir: %q, ansible_connection: local, ansible_python_interpreter: auto_silent}\n",
				h.Name, h.Address, h.Port, h.Dir)
		}
	}
	if o.PlaybookDir == "" {
		o.PlaybookDir = "playbooks"
	}
	canary := "1"
	if len(o.Canary) > 0 {
		canary = "[" + strings.Join(o.Canary, ", ") + "]"
	}
	fmt.Fprintf(&b, "canary:\n  hosts: %s\n  monitor: %s\nwaves:\n", canary, o.Monitor)
	for _, w := range o.Waves {
		fmt.Fprintf(&b, "  - {size: %q, monitor: %s}\n", w, o.WaveMonitor)
	}
	// Without a Version, apply.version is left for rollguard to compute
	// (extra_vars may still name the version app.conf says).
	fmt.Fprintf(&b, "apply:\n  playbook: %s/site.yml\n", o.PlaybookDir)
	if o.Version != "" {
		fmt.Fprintf(&b, "  version: %s\n", o.Version)
	}
	if o.ApplyTimeout > 0 {
		fmt.Fprintf(&b, "  timeout: %s\n", o.ApplyTimeout)
	}
	if o.VaultPasswordFile != "" {
		fmt.Fprintf(&b, "  vault_password_file: %s\n", o.VaultPasswordFile)
	}
	b.WriteString("  extra_vars:\n")
	if o.Version != "" {
		fmt.Fprintf(&b, "    version: %s\n", o.Version)
	}
	for _, k := range slices.Sorted(maps.Keys(o.ExtraVars)) {
		fmt.Fprintf(&b, "    %s: %s\n", k, o.ExtraVars[k])
	}
	if o.Scope == "" {
		o.Scope = "wave"
	}
	fmt.Fprintf(&b, "revert:\n  scope: %s\n  verify: 30s\n  known_good: %v\n", o.Scope, o.KnownGood)
	if o.MaxFailed != "" {
		fmt.Fprintf(&b, "  max_failed: %s\n", o.MaxFailed)
	}
	if o.OnInterrupt != "" {
		fmt.Fprintf(&b, "  on_interrupt: %s\n", o.OnInterrupt)
	}
	if !o.NoRevertPlaybook {
		fmt.Fprintf(&b, "  playbook: %s/revert.yml\n", o.PlaybookDir)
		if len(o.RevertExtraVars) > 0 {
			b.WriteString("  extra_vars:\n")
			for _, k := range slices.Sorted(maps.Keys(o.RevertExtraVars)) {
				fmt.Fprintf(&b, "    %s: %s\n", k, o.RevertExtraVars[k])
			}
		}
	}
	if o.Snapshots {
		snaps := filepath.Join(e.Dir, "snapshots")
		if err := os.MkdirAll(snaps, 0o755); err != nil {
			return "", err
		}
		conf := filepath.Join(e.Dir, "fleet", "{{.Host.Name}}", "app.conf")
		snap := filepath.Join(snaps, "{{.Host.Name}}.{{.Snapshot}}")
		fmt.Fprintf(&b, "  snapshot:\n    create: [cp, %q, %q]\n    restore: [cp, %q, %q]\n    delete: [rm, -f, %q]\n", conf, snap, snap, conf, snap)
	}
	fmt.Fprintf(&b, `metrics:
  url: %s
  interval: %s
  baseline: %s
  host_label: instance
  queries:
    latency_p95: {query: '%s', worse: higher}
    error_rate: {query: '%s', worse: higher, abs_floor: 0.005}
    cpu: {query: '%s', worse: higher}
`, e.VM.URL(), o.Interval, o.Baseline, simfleet.QueryLatencyP95, simfleet.QueryErrorRate, simfleet.QueryCPU)
	if o.StateStore == "" || o.StateStore == "local" {
		fmt.Fprintf(&b, "state:\n  dir: %s\n", filepath.Join(e.Dir, "state"))
	} else {
		fmt.Fprintf(&b, "state:\n  store: %s\n", o.StateStore)
	}
	if o.Detection == "" {
		// The simulated hosts replay an hour of real CloudWatch shape in
		// a few minutes, and follow app.conf at once, without a cold
		// start: the 2-minute default warm-up would outlast every stage,
		// one interval stands for it.
		o.Detection = fmt.Sprintf("detection:\n  sensitivity: medium\n  warmup: %s\n", o.Interval)
	}
	b.WriteString(o.Detection)
	b.WriteString(o.Policies)
	b.WriteString(o.Extra)
	path := filepath.Join(e.Dir, o.Name+".yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// copyFS copies a file tree (the embedded playbooks) into dir.
func copyFS(src fs.FS, dir string) error {
	return fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, p)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		data, err := fs.ReadFile(src, p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o644)
	})
}
