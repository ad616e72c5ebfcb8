// Package selfmetrics is rollguard's report on itself: runs by outcome,
// hosts applied and reverted, decisions by policy and outcome, tick and
// query durations, query errors and the time from a regression becoming
// visible to the decision, every series labelled with the rollout and the
// run id. It implements ports.Telemetry with
// github.com/VictoriaMetrics/metrics and pushes the metrics in Prometheus
// text format (for example to VictoriaMetrics' /api/v1/import/prometheus)
// while a run goes and once more when it ends.
package selfmetrics

import (
	"context"
	"io"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/rollguard/rollguard/ports"
)

// Metric names; every series also carries rollout and run_id labels.
const (
	// RunsTotal counts finished runs by outcome (promoted, rolled_back,
	// halted, error).
	RunsTotal = "rollguard_runs_total"
	// HostsAppliedTotal counts hosts whose apply ended, by wave.
	HostsAppliedTotal = "rollguard_hosts_applied_total"
	// HostsRevertedTotal counts hosts a revert started for, by trigger.
	HostsRevertedTotal = "rollguard_hosts_reverted_total"
	// DecisionsTotal counts policy outcomes per tick, by policy, scope
	// (fleet, host) and outcome (pass, fire, nodata, error).
	DecisionsTotal = "rollguard_decisions_total"
	// TickDuration is how long a tick took (histogram, seconds).
	TickDuration = "rollguard_tick_duration_seconds"
	// QueryDuration is how long a metrics query took, by query
	// (histogram, seconds).
	QueryDuration = "rollguard_query_duration_seconds"
	// QueryErrorsTotal counts failed metrics queries, by query.
	QueryErrorsTotal = "rollguard_query_errors_total"
	// DecisionDelay is the time from a regression becoming visible to the
	// policy that fired on it, by policy (histogram, seconds).
	DecisionDelay = "rollguard_decision_delay_seconds"
)

// Metrics holds one run's metrics. It is safe for concurrent use.
type Metrics struct {
	set    *metrics.Set
	labels string // rollout="…",run_id="…"
}

var _ ports.Telemetry = (*Metrics)(nil)

// New returns the metrics of run runID of rollout.
func New(rollout, runID string) *Metrics {
	return &Metrics{set: metrics.NewSet(), labels: label("rollout", rollout) + "," + label("run_id", runID)}
}

// name is a series name: the metric with the run's labels and kv's.
func (m *Metrics) name(metric string, kv ...string) string {
	var b strings.Builder
	b.WriteString(metric)
	b.WriteString("{")
	b.WriteString(m.labels)
	for i := 0; i+1 < len(kv); i += 2 {
		b.WriteString(",")
		b.WriteString(label(kv[i], kv[i+1]))
	}
	b.WriteString("}")
	return b.String()
}

// label renders k="v" with v escaped as the Prometheus text format wants
// (backslash, double quote, line break).
func label(k, v string) string {
	return k + `="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v) + `"`
}

// HostsApplied implements ports.Telemetry.
func (m *Metrics) HostsApplied(wave string, n int) {
	m.set.GetOrCreateCounter(m.name(HostsAppliedTotal, "wave", wave)).Add(n)
}

// HostsReverted implements ports.Telemetry.
func (m *Metrics) HostsReverted(trigger string, n int) {
	m.set.GetOrCreateCounter(m.name(HostsRevertedTotal, "trigger", trigger)).Add(n)
}

// Decision implements ports.Telemetry.
func (m *Metrics) Decision(policy, scope, outcome string) {
	m.set.GetOrCreateCounter(m.name(DecisionsTotal, "policy", policy, "scope", scope, "outcome", outcome)).Inc()
}

// Tick implements ports.Telemetry.
func (m *Metrics) Tick(d time.Duration) {
	m.set.GetOrCreateHistogram(m.name(TickDuration)).Update(d.Seconds())
}

// Decided implements ports.Telemetry.
func (m *Metrics) Decided(policy string, sinceVisible time.Duration) {
	m.set.GetOrCreateHistogram(m.name(DecisionDelay, "policy", policy)).Update(sinceVisible.Seconds())
}

// RunEnded implements ports.Telemetry.
func (m *Metrics) RunEnded(outcome string) {
	m.set.GetOrCreateCounter(m.name(RunsTotal, "outcome", outcome)).Inc()
}

// WritePrometheus writes every metric in Prometheus text format.
func (m *Metrics) WritePrometheus(w io.Writer) { m.set.WritePrometheus(w) }

// Source wraps a metrics source so that every query's duration and every
// failed query are counted by query name.
func (m *Metrics) Source(src ports.MetricsSource) ports.MetricsSource {
	return &source{src: src, m: m}
}

type source struct {
	src ports.MetricsSource
	m   *Metrics
}

// observe records one query; a query the caller cancelled is not an
// error of the store.
func (s *source) observe(ctx context.Context, q ports.Query, start time.Time, err error) {
	s.m.set.GetOrCreateHistogram(s.m.name(QueryDuration, "query", q.Name)).UpdateDuration(start)
	if err != nil && ctx.Err() == nil {
		s.m.set.GetOrCreateCounter(s.m.name(QueryErrorsTotal, "query", q.Name)).Inc()
	}
}

// Instant implements ports.MetricsSource; cancelling ctx cancels the
// wrapped query (and is not counted as an error).
func (s *source) Instant(ctx context.Context, q ports.Query, keys []string, at time.Time, out []float64) error {
	start := time.Now()
	err := s.src.Instant(ctx, q, keys, at, out)
	s.observe(ctx, q, start, err)
	return err
}

// Range implements ports.MetricsSource; cancelling ctx cancels the
// wrapped query (and is not counted as an error).
func (s *source) Range(ctx context.Context, q ports.Query, keys []string, from, to time.Time, step time.Duration) ([]ports.Samples, error) {
	start := time.Now()
	series, err := s.src.Range(ctx, q, keys, from, to, step)
	s.observe(ctx, q, start, err)
	return series, err
}
