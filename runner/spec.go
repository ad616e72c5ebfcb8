// Package runner is the rollout: it loads and validates the spec (load.go,
// decode.go), plans the waves (plan.go), and runs the steps (snapshot,
// baseline, apply, monitor, decide, revert, verify, report) for a live run
// and for a dry run over recorded metrics: Rollout.Execute (rollout.go),
// with one file per part of the story (state.go names them). It talks to
// the world only through ports.
package runner

import (
	"math"
	"time"

	"github.com/rollguard/rollguard/policies"
)

// Spec is a parsed and validated rollout.yaml. Field comments give the YAML
// key's meaning and its default; the loader fills defaults in.
type Spec struct {
	// Name identifies the rollout (lock, history, reports). Required.
	Name string `yaml:"name" json:"name"`
	// Targets says where the hosts come from: exactly one source.
	Targets Targets `yaml:"targets" json:"targets"`
	// Canary is the first group to receive the change.
	Canary Canary `yaml:"canary" json:"canary"`
	// Waves follow the canary, each a size of the remaining hosts.
	// Default: one wave of 100% monitored as long as the canary.
	Waves []Wave `yaml:"waves,omitempty" json:"waves,omitempty"`
	// Bake is a final monitoring period after the last wave (default 0).
	Bake Duration `yaml:"bake,omitempty" json:"bake,omitempty"`
	// Apply is the change.
	Apply Apply `yaml:"apply" json:"apply"`
	// Preflight is the diff gate: apply.playbook run in check mode
	// before anything is applied, judged against limits.
	Preflight Preflight `yaml:"preflight,omitempty" json:"preflight,omitzero"`
	// Revert says how a change is undone.
	Revert Revert `yaml:"revert,omitempty" json:"revert,omitempty"`
	// Metrics says where the metrics come from and which to watch.
	Metrics Metrics `yaml:"metrics" json:"metrics"`
	// Detection tunes the detectors.
	Detection Detection `yaml:"detection,omitempty" json:"detection,omitempty"`
	// Policies decide when to roll back. At least one.
	Policies []PolicyRef `yaml:"policies" json:"policies"`
	// Alerts are sent on degradation and on rollback.
	Alerts []Alert `yaml:"alerts,omitempty" json:"alerts,omitempty"`
	// State says where history, journal and lock live (default: local
	// directory .rollguard next to the spec).
	State State `yaml:"state,omitempty" json:"state,omitempty"`

	// File is the spec's path as given; Dir is its directory, against
	// which relative paths (playbooks, policy files) are resolved.
	File string `yaml:"-" json:"-"`
	Dir  string `yaml:"-" json:"-"`
	// Env lists the spec's ${NAME} references in file order.
	Env []EnvRef `yaml:"-" json:"-"`
	// Warnings are what the spec allows and a user should know (a
	// baseline too short to judge on well, a policy expression whose
	// value never changes), each where it is written.
	Warnings []*policies.PosError `yaml:"-" json:"-"`

	// pos holds where each written key path is ("metrics", "waves[1].size").
	pos map[string]policies.Pos
}

// Problem is msg at path's place in the spec, or its nearest written
// parent's (the spec's first line for one written nowhere): for a problem
// a command finds after the spec loaded (run's metrics.url).
func (s *Spec) Problem(path, msg string) *policies.PosError {
	at := policies.Pos{Line: 1, Col: 1}
	for p := path; p != ""; p = parentPath(p) {
		if q, ok := s.pos[p]; ok {
			at = q
			break
		}
	}
	return &policies.PosError{File: s.File, Line: at.Line, Col: at.Col, Msg: msg}
}

// Duration is a Go duration written as a string ("90s", "5m").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Share is a fraction written as a percentage ("10%") or a number (0.1).
type Share float64

// Size is a count of hosts (3) or a share of them ("10%").
type Size struct {
	// Count is the number of hosts when Percent is 0.
	Count int
	// Percent is the share, 0 < Percent <= 100, when set.
	Percent float64
}

// Tolerance is how many hosts of a wave may fail: a count (0 or more) or
// a share of the wave's hosts ("10%", 0% to 100%).
type Tolerance struct{ Size }

// Of is the number of failed hosts tolerated in a wave of n hosts: the
// count, or the share of n rounded down ("10%" of 15 is 1), as Ansible's
// max_fail_percentage counts.
func (t Tolerance) Of(n int) int {
	if t.Percent > 0 {
		return int(math.Floor(t.Percent/100*float64(n) + 1e-9))
	}
	return min(t.Count, n)
}

// Target is one host of a static target list: a name, or an object.
type Target struct {
	// Name is the host's name (Ansible inventory name). Required.
	Name string `yaml:"name" json:"name"`
	// Address is how to reach it (ansible_host); default: Name.
	Address string `yaml:"address,omitempty" json:"address,omitempty"`
	// Port is the service port, when the source knows one.
	Port int `yaml:"port,omitempty" json:"port,omitempty"`
	// Vars become Ansible host variables.
	Vars map[string]any `yaml:"vars,omitempty" json:"vars,omitempty"`
	// Tags and Meta select canaries ({tag: canary}, {meta: {k: v}}).
	Tags []string          `yaml:"tags,omitempty" json:"tags,omitempty"`
	Meta map[string]string `yaml:"meta,omitempty" json:"meta,omitempty"`
}

// Targets holds exactly one host source.
type Targets struct {
	// Static lists the hosts in the spec.
	Static []Target `yaml:"static,omitempty" json:"static,omitempty"`
	// Inventory is an Ansible inventory file (INI or YAML), relative to the spec.
	Inventory string `yaml:"inventory,omitempty" json:"inventory,omitempty"`
	// Group restricts an inventory to one group (default: all).
	Group string `yaml:"group,omitempty" json:"group,omitempty"`
	// Consul discovers the hosts of a Consul service.
	Consul *ConsulTargets `yaml:"consul,omitempty" json:"consul,omitempty"`
	// Nomad discovers Nomad client nodes.
	Nomad *NomadTargets `yaml:"nomad,omitempty" json:"nomad,omitempty"`
}

// ConsulTargets discovers hosts through Consul's health API.
type ConsulTargets struct {
	// Service is the Consul service name. Required.
	Service string `yaml:"service" json:"service"`
	// Tags keeps instances carrying every one of these tags.
	Tags []string `yaml:"tags,omitempty" json:"tags,omitempty"`
	// Datacenter to query (default: the agent's).
	Datacenter string `yaml:"datacenter,omitempty" json:"datacenter,omitempty"`
	// PassingOnly keeps instances whose checks all pass (default true).
	PassingOnly *bool `yaml:"passing_only,omitempty" json:"passing_only,omitempty"`
	// NodeMeta keeps instances whose node carries this metadata.
	NodeMeta map[string]string `yaml:"node_meta,omitempty" json:"node_meta,omitempty"`
	// Namespace and Partition are passed through when set (Consul Enterprise).
	Namespace string `yaml:"namespace,omitempty" json:"namespace,omitempty"`
	Partition string `yaml:"partition,omitempty" json:"partition,omitempty"`
	// NameFrom names each host: "node" (default) or "service_id".
	NameFrom string `yaml:"name_from,omitempty" json:"name_from,omitempty"`
}

// NomadTargets discovers ready Nomad client nodes.
type NomadTargets struct {
	NodePool  string            `yaml:"node_pool,omitempty" json:"node_pool,omitempty"`
	NodeClass string            `yaml:"node_class,omitempty" json:"node_class,omitempty"`
	Meta      map[string]string `yaml:"meta,omitempty" json:"meta,omitempty"`
}

// HostSelector picks the canary: a count, a share, names, a tag or meta.
type HostSelector struct {
	// Size is set for a count (1) or share ("10%"): hosts in target order.
	Size *Size
	// Names lists canary hosts by name.
	Names []string
	// Tag selects hosts carrying this tag.
	Tag string
	// Meta selects hosts whose meta has all these pairs.
	Meta map[string]string
}

// Canary is the first group to receive the change.
type Canary struct {
	// Hosts selects the canary (default 1).
	Hosts HostSelector `yaml:"hosts,omitempty" json:"hosts,omitempty"`
	// Pin keeps a count or share of canary hosts inside one value of a
	// meta key ({zone: eu-1a}): the canary is the first hosts, in target
	// order, that have every pinned value. A share is of the whole fleet.
	Pin map[string]string `yaml:"pin,omitempty" json:"pin,omitempty"`
	// Monitor is the monitoring period after the canary's apply ends
	// (default 5m).
	Monitor Duration `yaml:"monitor,omitempty" json:"monitor,omitempty"`
}

// Wave is one step after the canary.
type Wave struct {
	// Name of the wave (default "wave-1", "wave-2", ...; for a by wave,
	// the key: its waves are "<name>-<value>").
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Size of the wave, as a count or a share of the hosts after the
	// canary. Required, except with By.
	Size Size `yaml:"size,omitempty" json:"size,omitzero"`
	// SpreadBy is a meta key (zone, rack): the wave takes its size from
	// as many of the key's values as it can, then from each in proportion
	// to the hosts it has left.
	SpreadBy string `yaml:"spread_by,omitempty" json:"spread_by,omitempty"`
	// MaxPerValue caps the hosts the wave takes from one value (spread_by
	// only; default: no cap).
	MaxPerValue int `yaml:"max_per_value,omitempty" json:"max_per_value,omitempty"`
	// NeverWhole forbids the wave to hold every host of a value, counted
	// over the whole fleet (spread_by only; default false).
	NeverWhole bool `yaml:"never_whole,omitempty" json:"never_whole,omitempty"`
	// By is a meta key: the entry becomes one wave per value of the key,
	// in value order, each with the value's hosts not yet changed. Not
	// with size.
	By string `yaml:"by,omitempty" json:"by,omitempty"`
	// Monitor is the monitoring period after the wave's apply (default:
	// the canary's).
	Monitor Duration `yaml:"monitor,omitempty" json:"monitor,omitempty"`
}

// Apply is the change: a playbook and its variables.
type Apply struct {
	// Playbook is the playbook path, relative to the spec. Required.
	Playbook string `yaml:"playbook" json:"playbook"`
	// ExtraVars are passed as --extra-vars and kept in history.
	ExtraVars map[string]any `yaml:"extra_vars,omitempty" json:"extra_vars,omitempty"`
	// Version identifies the config version in history and the journal
	// (default: "h-" and a hash of the playbook, the files Ansible reads
	// beside it and extra_vars; see defaultVersion).
	Version string `yaml:"version,omitempty" json:"version,omitempty"`
	// Forks is Ansible's --forks (default 10).
	Forks int `yaml:"forks,omitempty" json:"forks,omitempty"`
	// VaultPasswordFile is passed as --vault-password-file.
	VaultPasswordFile string `yaml:"vault_password_file,omitempty" json:"vault_password_file,omitempty"`
	// Timeout bounds one ansible-playbook run (default 30m).
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

// Scopes of the pre-flight check (preflight.check).
const (
	// CheckCanary checks the canary's hosts (preflight.check: true).
	CheckCanary CheckScope = "canary"
	// CheckAll checks every host.
	CheckAll CheckScope = "all"
)

// CheckScope says which hosts the pre-flight check covers: "" (no
// check), CheckCanary or CheckAll. In YAML: false, true (the canary),
// canary or all.
type CheckScope string

// Preflight is the diff gate: before the canary's apply, apply.playbook
// runs in check mode with --diff (nothing is written) on the canary's
// hosts or on every host, and the rollout stops (exit 4) before any
// change when a host's check fails or breaks a limit. A pattern in
// forbid_changes or expect_changes is a glob (path.Match: *, ?, [...];
// * does not cross /) matched against a task's name, a file's path and,
// for a pattern without a /, the file's base name.
type Preflight struct {
	// Check is which hosts are checked: true (the canary), all, or
	// false (default: no check).
	Check CheckScope `yaml:"check,omitempty" json:"check,omitempty"`
	// MaxChangedTasks is how many tasks may change something on one host
	// (default: no limit).
	MaxChangedTasks *int `yaml:"max_changed_tasks,omitempty" json:"max_changed_tasks,omitempty"`
	// ForbidChanges are tasks and files that must not change.
	ForbidChanges []string `yaml:"forbid_changes,omitempty" json:"forbid_changes,omitempty"`
	// ExpectChanges are tasks and files the change is about: a host whose
	// changes touch none of them stops the rollout (the wrong playbook,
	// or the wrong variables).
	ExpectChanges []string `yaml:"expect_changes,omitempty" json:"expect_changes,omitempty"`
}

// Revert modes and scopes.
const (
	ScopeHost = "host"
	ScopeWave = "wave"
	ScopeAll  = "all"

	ModeRevert = "revert"
	ModeFreeze = "freeze"
)

// Revert says how a change is undone.
type Revert struct {
	// Playbook is a revert playbook, relative to the spec (optional).
	Playbook string `yaml:"playbook,omitempty" json:"playbook,omitempty"`
	// ExtraVars are the revert playbook's --extra-vars (default: none).
	// apply.extra_vars are not passed to it: extra vars override every
	// other variable, so a revert given the change's could not set its
	// own values.
	ExtraVars map[string]any `yaml:"extra_vars,omitempty" json:"extra_vars,omitempty"`
	// Forks is the revert playbook's --forks (default: apply.forks).
	Forks int `yaml:"forks,omitempty" json:"forks,omitempty"`
	// VaultPasswordFile is the revert playbook's --vault-password-file,
	// relative to the spec (default: apply.vault_password_file).
	VaultPasswordFile string `yaml:"vault_password_file,omitempty" json:"vault_password_file,omitempty"`
	// KnownGood re-runs apply.playbook with the last known-good version's
	// variables (default false).
	KnownGood bool `yaml:"known_good,omitempty" json:"known_good,omitempty"`
	// Snapshot holds the snapshot hooks (optional).
	Snapshot *Snapshot `yaml:"snapshot,omitempty" json:"snapshot,omitempty"`
	// Scope is what a fleet-level fire reverts: host | wave | all
	// (default wave).
	Scope string `yaml:"scope,omitempty" json:"scope,omitempty"`
	// Mode is revert (default) or freeze: halt without reverting.
	Mode string `yaml:"mode,omitempty" json:"mode,omitempty"`
	// Verify is how long reverted hosts are watched until their metrics
	// are back in the baseline band (default: the queries' longest range
	// window + 2 x detection smoothing x metrics.interval; see
	// defaultVerify).
	Verify Duration `yaml:"verify,omitempty" json:"verify,omitempty"`
	// OnInterrupt is what SIGTERM/SIGINT does: revert (default) | freeze.
	OnInterrupt string `yaml:"on_interrupt,omitempty" json:"on_interrupt,omitempty"`
	// MaxFailed is how many hosts of a wave after the canary may fail to
	// apply (failed, unreachable, skipped, or matched by no play) before
	// the rollout stops (default 0: the first such host stops it, so the
	// change reaches no further host until a person has looked). The
	// canary tolerates none, whatever this says: it is where the change
	// is tried.
	MaxFailed Tolerance `yaml:"max_failed,omitempty" json:"max_failed,omitzero"`
}

// Snapshot holds argv templates over {{.Host.Name}} {{.Host.Address}}
// {{.RunID}} {{.Snapshot}}.
type Snapshot struct {
	Create  []string `yaml:"create,omitempty" json:"create,omitempty"`
	Restore []string `yaml:"restore,omitempty" json:"restore,omitempty"`
	Delete  []string `yaml:"delete,omitempty" json:"delete,omitempty"`
	// Concurrency bounds hooks running at once (default 4).
	Concurrency int `yaml:"concurrency,omitempty" json:"concurrency,omitempty"`
	// Timeout bounds one hook (default 5m).
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// OnFailure is skip_host (default: a host whose snapshot failed is not
	// changed) or continue.
	OnFailure string `yaml:"on_failure,omitempty" json:"on_failure,omitempty"`
}

// Metrics says where metrics come from and which to watch.
type Metrics struct {
	// URL of a Prometheus-compatible query API. Required for run.
	URL string `yaml:"url,omitempty" json:"url,omitempty"`
	// Interval between ticks (default 15s).
	Interval Duration `yaml:"interval,omitempty" json:"interval,omitempty"`
	// Baseline is the window before each wave's apply (default 48
	// intervals, at least 30m).
	Baseline Duration `yaml:"baseline,omitempty" json:"baseline,omitempty"`
	// HostLabel is the label naming the host (default "instance").
	HostLabel string `yaml:"host_label,omitempty" json:"host_label,omitempty"`
	// HostValue is a template giving HostLabel's value for a host
	// (default "{{.Host.Name}}").
	HostValue string `yaml:"host_value,omitempty" json:"host_value,omitempty"`
	// Queries to watch, by name. At least one.
	Queries Queries `yaml:"queries" json:"queries"`
	// BearerToken, BasicAuth and Headers authenticate to the API.
	BearerToken string            `yaml:"bearer_token,omitempty" json:"bearer_token,omitempty"`
	BasicAuth   *BasicAuth        `yaml:"basic_auth,omitempty" json:"basic_auth,omitempty"`
	Headers     map[string]string `yaml:"headers,omitempty" json:"headers,omitempty"`
	// Timeout bounds one query (default 10s).
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// ErrorLimit is the number of consecutive failed ticks after which the
	// decision is an error (default 3).
	ErrorLimit int `yaml:"error_limit,omitempty" json:"error_limit,omitempty"`
	// PushURL, when set, receives rollguard's own metrics (runs, hosts
	// applied and reverted, decisions, tick and query durations, decision
	// delay) in Prometheus text format every interval and at the end of
	// a live run, e.g. VictoriaMetrics' /api/v1/import/prometheus. It may
	// carry credentials: never printed. run --push-metrics overrides it.
	PushURL string `yaml:"push_url,omitempty" json:"push_url,omitempty"`
}

// BasicAuth credentials.
type BasicAuth struct {
	Username string `yaml:"username" json:"username"`
	Password string `yaml:"password" json:"password"`
}

// Queries keeps the queries in the order they were written.
type Queries []Query

// Query is one metric to watch.
type Query struct {
	// Name is the map key; it is the metric's name in policies and in
	// recorded metrics (__name__).
	Name string `yaml:"-" json:"-"`
	// Query is the PromQL/MetricsQL expression, one series per host.
	Query string `yaml:"query" json:"query"`
	// Worse is the direction of degradation: higher (default) | lower.
	Worse string `yaml:"worse,omitempty" json:"worse,omitempty"`
	// RelFloor is the smallest spread, as a share of the baseline level
	// (default from detection).
	RelFloor *float64 `yaml:"rel_floor,omitempty" json:"rel_floor,omitempty"`
	// AbsFloor is the smallest spread in the metric's unit (default from
	// detection).
	AbsFloor *float64 `yaml:"abs_floor,omitempty" json:"abs_floor,omitempty"`
	// Tolerance is the largest change allowed (only what lies beyond it
	// counts), as a share of the baseline level ("10%"); default
	// detection.tolerance, and 1% of the cap for a lower-is-worse ratio at
	// its cap or of the level where a lower-is-worse baseline sits at one
	// value (a bound), unless set here.
	Tolerance *Share `yaml:"tolerance,omitempty" json:"tolerance,omitempty"`
	// ToleranceAbs is the largest change allowed in the metric's unit
	// (default 0): the tolerance is never below it.
	ToleranceAbs *float64 `yaml:"tolerance_abs,omitempty" json:"tolerance_abs,omitempty"`
}

// Detection tunes the detectors. Explicit parameters override the preset.
type Detection struct {
	// Sensitivity preset: low | medium (default) | high.
	Sensitivity string `yaml:"sensitivity,omitempty" json:"sensitivity,omitempty"`
	// Allowance is the CUSUM slack k, in baseline spreads.
	Allowance *float64 `yaml:"allowance,omitempty" json:"allowance,omitempty"`
	// Threshold is the score over which a host is degraded (h).
	Threshold *float64 `yaml:"threshold,omitempty" json:"threshold,omitempty"`
	// Smoothing is the moving-average window, in ticks.
	Smoothing *int `yaml:"smoothing,omitempty" json:"smoothing,omitempty"`
	// RelFloor and AbsFloor are the default spread floors for every query.
	RelFloor *float64 `yaml:"rel_floor,omitempty" json:"rel_floor,omitempty"`
	AbsFloor *float64 `yaml:"abs_floor,omitempty" json:"abs_floor,omitempty"`
	// MinBaselineSamples below which a baseline is low-confidence (default 10).
	MinBaselineSamples int `yaml:"min_baseline_samples,omitempty" json:"min_baseline_samples,omitempty"`
	// NoDataTicks is how many consecutive no-data ticks on_no_data: fail
	// tolerates before it fires (default 4).
	NoDataTicks int `yaml:"no_data_ticks,omitempty" json:"no_data_ticks,omitempty"`
	// HoldLimit is how long on_no_data: hold may extend monitoring before
	// it fails (default: the wave's monitoring period).
	HoldLimit Duration `yaml:"hold_limit,omitempty" json:"hold_limit,omitempty"`
	// Tolerance is the default relative tolerance of every query (10%).
	Tolerance Share `yaml:"tolerance,omitempty" json:"tolerance,omitempty"`
	// Warmup is how long after each stage's apply begins the polls are
	// watched but cannot decide on their own (default 2m; 0s: none): a
	// poll whose interval begins within it is a warm-up poll.
	Warmup Duration `yaml:"warmup,omitempty" json:"warmup,omitempty"`
}

// HoldFor is how long a stage monitored for monitor may be held past it
// while a policy holds for want of data: hold_limit, by default monitor.
func (d Detection) HoldFor(monitor time.Duration) time.Duration {
	if h := d.HoldLimit.D(); h != 0 {
		return h
	}
	return monitor
}

// PolicyRef is a policy file or an inline policy.
type PolicyRef struct {
	// File is a policy file (one policy or a list), relative to the spec.
	File string `yaml:"file,omitempty" json:"file,omitempty"`
	// Inline policy fields, when File is empty.
	Name             string `yaml:"name,omitempty" json:"name,omitempty"`
	RollbackWhen     string `yaml:"rollback_when,omitempty" json:"rollback_when,omitempty"`
	HostRollbackWhen string `yaml:"host_rollback_when,omitempty" json:"host_rollback_when,omitempty"`
	OnNoData         string `yaml:"on_no_data,omitempty" json:"on_no_data,omitempty"`
}

// Alert is one alert destination.
type Alert struct {
	// Type: webhook | slack | alertmanager | github.
	Type string `yaml:"type" json:"type"`
	// URL of the webhook, Slack webhook or Alertmanager (secret: never logged).
	URL string `yaml:"url,omitempty" json:"url,omitempty"`
	// On lists the events to send: degraded, rollback, halted, promoted,
	// verify_failed (default: ports.DefaultEvents, every one but promoted).
	On []string `yaml:"on,omitempty" json:"on,omitempty"`
}

// State says where history, journal and lock live.
type State struct {
	// Store: local (default) | consul | nomad.
	Store string `yaml:"store,omitempty" json:"store,omitempty"`
	// Dir is the local state directory (default .rollguard next to the spec).
	Dir string `yaml:"dir,omitempty" json:"dir,omitempty"`
	// Prefix is the key prefix in Consul KV / Nomad Variables
	// (default rollguard/<name>).
	Prefix string `yaml:"prefix,omitempty" json:"prefix,omitempty"`
}
