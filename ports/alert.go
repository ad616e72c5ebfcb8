package ports

import (
	"context"
	"time"
)

// Alert events: what happened to a rollout that a person may need to know.
const (
	// EventDegraded: a policy saw degradation but has not (yet) fired.
	EventDegraded = "degraded"
	// EventRollback: a policy fired and the change is being reverted.
	EventRollback = "rollback"
	// EventHalted: the run stopped in a state a person must decide on.
	EventHalted = "halted"
	// EventPromoted: every wave passed.
	EventPromoted = "promoted"
	// EventVerifyFailed: after a revert, the metrics did not return to
	// the baseline band.
	EventVerifyFailed = "verify_failed"
)

// Events lists every alert event, in the order above.
func Events() []string {
	return []string{EventDegraded, EventRollback, EventHalted, EventPromoted, EventVerifyFailed}
}

// DefaultEvents lists the events a destination receives when its event
// list (alerts[].on) is empty: everything that needs attention, not
// promotions.
func DefaultEvents() []string {
	return []string{EventDegraded, EventRollback, EventHalted, EventVerifyFailed}
}

// Alert destination types (rollout.yaml alerts[].type).
const (
	AlertWebhook      = "webhook"
	AlertSlack        = "slack"
	AlertAlertmanager = "alertmanager"
	AlertGitHub       = "github"
)

// AlertTypes lists every destination type, in the order above.
func AlertTypes() []string {
	return []string{AlertWebhook, AlertSlack, AlertAlertmanager, AlertGitHub}
}

// Alert is one notification about a rollout. Its JSON form is the body a
// webhook destination receives.
type Alert struct {
	// Event is one of the Event* constants.
	Event string `json:"event"`
	// Rollout is the spec's name; RunID identifies the run.
	Rollout string `json:"rollout"`
	RunID   string `json:"run_id"`
	// Wave is the wave concerned ("canary", "wave-1"); empty for the run
	// as a whole.
	Wave string `json:"wave,omitempty"`
	// Hosts are the hosts concerned (degraded, reverted).
	Hosts []string `json:"hosts,omitempty"`
	// Reason is the decision's reason, as a sentence.
	Reason string `json:"reason,omitempty"`
	// At is when it happened (default: when it is sent).
	At time.Time `json:"at"`
	// Values are the figures behind the decision (policy inputs, scores).
	// NaN means no data.
	Values map[string]float64 `json:"values,omitempty"`
	// Attribution says, per degraded host, what changed on it next to
	// what degraded: "after `Write app.conf` changed on web-1,
	// latency_p95 0.2033 → 0.3138 (+54%)".
	Attribution []string `json:"attribution,omitempty"`
	// ReportURL links to the report (CI run, artifact); may be empty.
	ReportURL string `json:"report_url,omitempty"`
	// Resolved says that the condition alerted earlier with the same
	// Event, Rollout and Wave is over (a degraded wave that recovered):
	// Alertmanager receives it as resolved (endsAt = At).
	Resolved bool `json:"resolved,omitempty"`
}

// Alerter sends alerts to wherever the spec says.
type Alerter interface {
	// Send delivers a to every destination that wants a.Event. A failing
	// destination does not stop the others; the error joins every
	// failure. Cancelling ctx aborts deliveries in flight and returns an
	// error wrapping ctx.Err().
	Send(ctx context.Context, a Alert) error
}

// AlerterFunc is an Alerter as a function (test fakes, adapters).
type AlerterFunc func(ctx context.Context, a Alert) error

// Send calls f.
func (f AlerterFunc) Send(ctx context.Context, a Alert) error { return f(ctx, a) }
