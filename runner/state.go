package runner

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"text/template"
	"time"

	"github.com/rollguard/rollguard/policies"
	"github.com/rollguard/rollguard/ports"
	"github.com/rollguard/rollguard/report"
)

// execution is one run of a Rollout: the state that Execute builds and
// the steps read and change. Its methods are spread over files named for
// the part of the story they tell: rollout.go (begin and end), wave.go
// (baseline, apply, watch), stage.go (what a stage needs to start and to
// pass), decide.go, revert.go (with verify),
// snapshot.go, resume.go (resume and abort), journal.go (journal and
// history), report.go (report and alerts).
type execution struct {
	*Rollout
	log *slog.Logger

	// hosts holds each host's state, in plan order: hosts[i] is the
	// engine's host i. It is the one truth about a host; the engine is
	// told of every change through the methods below.
	hosts []hostState
	// index finds a host's position by name.
	index map[string]int
	// keys are the hosts' metrics.host_value, in plan order: what the
	// metrics source is asked for, all hosts at once.
	keys []string

	eng *policies.Engine
	// det is the detection configuration the engine judges with.
	det     policies.DetectorConfig
	queries []ports.Query
	// bufs receive each query's values for every host at a poll (see
	// observe).
	bufs [][]float64
	// stopApply stops the apply under way once applyDeadline (its start
	// + apply.timeout, on the run's clock) has passed; nil when none is.
	stopApply     context.CancelCauseFunc
	applyDeadline time.Time
	// replayedApply is a dry run's apply that ends when the live run's
	// did (Timing): watch takes it once the clock reaches end.
	replayedApply *replayedApply
	// errTicks counts consecutive ticks with a failed query; lastErr is
	// the last failure.
	errTicks int
	lastErr  error

	// notJournaled are the hosts due for a revert that did not run
	// because the state store did not take its journal entry
	// (notJournaledErr): they keep the change, and the run ends halted.
	notJournaled    []string
	notJournaledErr error

	report *report.Report
	// verifying are the host-level reverts whose verification is under
	// way while the rollout goes on (revert.go's verifyLater).
	verifying []pendingVerify
	// counterWarned holds the queries (by index) already warned of as
	// reading a counter (see warnCounter).
	counterWarned map[int]bool
	// slowWarned is set once a poll that outlasted metrics.interval has
	// drawn its warning (see watch).
	slowWarned bool
	// tel receives what the run does (never nil).
	tel ports.Telemetry
}

// hostState is everything a run knows about one host. The report's hosts
// are written from it when the run ends, and the journal entries name
// hosts as it says.
type hostState struct {
	ports.Host
	// wave is the name of the plan wave the host belongs to.
	wave string
	// changed: the run began changing the host (its wave's apply
	// started, or the journal says it did before a crash).
	changed bool
	// excluded: the host is out of the rollout (reverted, its apply
	// failed before changing anything, its snapshot failed): it is not
	// changed, judged or reverted by a fleet-level fire again.
	excluded bool
	// applied: the apply reached the host.
	applied bool
	// failed: the apply failed on the host or it was unreachable.
	failed bool
	// status, message and changedTasks are the apply's outcome on the
	// host (ports.Host* status, failure message, tasks that changed).
	status, message string
	changedTasks    []string
	// reverted says a revert ran on the host; revertReason says why it
	// was reverted or left alone.
	reverted     bool
	revertReason string
	// snapshot names the snapshot taken of the host ("" when none).
	snapshot string
	// alerted: the host's degradation was already alerted.
	alerted bool
	// maxScores holds each metric's highest score, worst each metric's
	// value when that score was reached (indexed like queries).
	maxScores []float64
	worst     []worstValue
	// lastChange is when an earlier run last applied a version to the
	// host (zero: never, or no history); historyRead says it was read.
	lastChange  time.Time
	historyRead bool
	// visibleAt is the first tick at which one of the host's metrics was
	// outside its baseline band in its worse direction while the host
	// carried the change: when the regression became visible (zero:
	// never).
	visibleAt time.Time
}

// carries reports whether the host carries the change: changed and not
// taken out of the rollout since.
func (h *hostState) carries() bool { return h.changed && !h.excluded }

// worstValue is a metric's smoothed value and z when its score peaked.
type worstValue struct{ current, z float64 }

// newExecution builds the state of one run of r: the hosts, the detection
// engine and the report's skeleton.
func newExecution(r *Rollout) (*execution, error) {
	x := &execution{Rollout: r, log: r.Logger, tel: r.Telemetry}
	if x.log == nil {
		x.log = slog.New(slog.DiscardHandler)
	}
	if x.tel == nil {
		x.tel = ports.NoTelemetry{}
	}
	spec := r.Spec
	hosts := r.Plan.Hosts
	x.index = make(map[string]int, len(hosts))
	names := make([]string, len(hosts))
	for i, h := range hosts {
		x.index[h.Name] = i
		names[i] = h.Name
	}
	keys, err := hostKeys(spec.Metrics.HostValue, hosts)
	if err != nil {
		return nil, err
	}
	x.keys = keys
	for _, q := range spec.Metrics.Queries {
		x.queries = append(x.queries, ports.Query{Name: q.Name, Expr: q.Query})
	}
	cfg, err := EngineConfig(spec, names, r.Policies)
	if err != nil {
		return nil, err
	}
	x.det = cfg.Detector
	if x.eng, err = policies.NewEngine(cfg); err != nil {
		return nil, fmt.Errorf("rollout %q: %w", spec.Name, err)
	}
	x.bufs = make([][]float64, len(x.queries))
	for m := range x.bufs {
		x.bufs[m] = make([]float64, len(hosts))
	}
	x.hosts = make([]hostState, len(hosts))
	for i, h := range hosts {
		x.hosts[i] = hostState{Host: h, maxScores: make([]float64, len(x.queries)), worst: make([]worstValue, len(x.queries))}
	}
	for _, w := range r.Plan.Waves {
		for _, h := range w.Hosts {
			x.hosts[x.index[h.Name]].wave = w.Name
		}
	}
	x.report = newReport(r, cfg.Detector)
	return x, nil
}

func (x *execution) dry() bool { return x.Applier == nil }

func (x *execution) logf(format string, args ...any) {
	if x.Out != nil {
		fmt.Fprintf(x.Out, format+"\n", args...)
	}
}

// startWave marks hosts (by index) changed and starts their wave in the
// engine.
func (x *execution) startWave(w PlannedWave, idx []int) {
	for _, i := range idx {
		x.hosts[i].changed = true
	}
	x.eng.StartWave(w.Name, w.Index, idx)
}

// exclude takes host i out of the rollout, in the engine too: out of the
// policies' hosts and of the control group, its detectors restarted so
// that a revert can be verified.
func (x *execution) exclude(i int) {
	x.hosts[i].excluded = true
	x.eng.Exclude(i)
}

// markFailed records that the apply failed on host i (host.failed in the
// policies).
func (x *execution) markFailed(i int) {
	x.hosts[i].failed = true
	x.eng.MarkFailed(i)
}

// untouched are the hosts neither changed nor excluded: a wave's baseline
// is taken for them too, so that they serve as controls.
func (x *execution) untouched() []int {
	var out []int
	for i := range x.hosts {
		if !x.hosts[i].changed && !x.hosts[i].excluded {
			out = append(out, i)
		}
	}
	return out
}

// carrying are the hosts (by index) that carry the change.
func (x *execution) carrying() []int {
	var out []int
	for i := range x.hosts {
		if x.hosts[i].carries() {
			out = append(out, i)
		}
	}
	return out
}

// liveHosts drops the hosts already taken out of the rollout.
func (x *execution) liveHosts(hosts []ports.Host) []ports.Host {
	var out []ports.Host
	for _, h := range hosts {
		if !x.hosts[x.index[h.Name]].excluded {
			out = append(out, h)
		}
	}
	return out
}

// hostKeys renders metrics.host_value for every host.
func hostKeys(tmpl string, hosts []ports.Host) ([]string, error) {
	if tmpl == "" {
		tmpl = "{{.Host.Name}}"
	}
	t, err := template.New("host_value").Option("missingkey=error").Parse(tmpl)
	if err != nil {
		return nil, fmt.Errorf("metrics.host_value: %w", err)
	}
	keys := make([]string, len(hosts))
	for i, h := range hosts {
		if keys[i], err = hostKey(t, h); err != nil {
			return nil, fmt.Errorf("metrics.host_value for host %s: %w", h.Name, err)
		}
	}
	return keys, nil
}

// hostKey renders metrics.host_value (parsed) for host h.
func hostKey(t *template.Template, h ports.Host) (string, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, map[string]any{"Host": h}); err != nil {
		return "", err
	}
	return b.String(), nil
}

// CheckHostValues renders metrics.host_value for every host, as the run does
// when it starts: called on discovered hosts before a run takes its lock,
// so a host the template cannot render (a meta key it lacks) is refused
// before anything is locked or written. (Static hosts are checked when
// the spec loads.)
func CheckHostValues(spec *Spec, hosts []ports.Host) error {
	_, err := hostKeys(spec.Metrics.HostValue, hosts)
	return err
}
