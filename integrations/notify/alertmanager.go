package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/rollguard/rollguard/ports"
)

// alertmanager posts to Alertmanager's v2 API (POST /api/v2/alerts). The
// label set is alertname, rollout, wave and severity, so a later alert for
// the same rollout and wave (a repeat, or its resolution) is the same
// Alertmanager alert.
type alertmanager struct {
	url  *url.URL
	post *poster
}

// postableAlert is the v2 API's PostableAlert.
type postableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitzero"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// alertmanagerEndpoint is base/api/v2/alerts, unless base already names it.
func alertmanagerEndpoint(base *url.URL) *url.URL {
	if strings.HasSuffix(strings.TrimSuffix(base.Path, "/"), "/api/v2/alerts") {
		return base
	}
	return base.JoinPath("api", "v2", "alerts")
}

// AlertName is the alertname label of an event: RollguardDegraded,
// RollguardRollback, RollguardHalted, RollguardPromoted,
// RollguardVerifyFailed.
func AlertName(event string) string {
	var b strings.Builder
	b.WriteString("Rollguard")
	for _, part := range strings.Split(event, "_") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

// Severity is the severity label of an event: critical when a person must
// look (rollback, halted, verify_failed), warning for degraded, info for
// promoted.
func Severity(event string) string {
	switch event {
	case ports.EventDegraded:
		return "warning"
	case ports.EventPromoted:
		return "info"
	default:
		return "critical"
	}
}

func amAlert(a ports.Alert) postableAlert {
	labels := map[string]string{
		"alertname": AlertName(a.Event),
		"rollout":   a.Rollout,
		"severity":  Severity(a.Event),
	}
	if a.Wave != "" { // an empty label value is no label to Alertmanager
		labels["wave"] = a.Wave
	}
	ann := map[string]string{
		"summary":     summary(a),
		"description": description(a),
	}
	if a.RunID != "" {
		ann["run_id"] = a.RunID
	}
	if len(a.Hosts) > 0 {
		ann["hosts"] = strings.Join(a.Hosts, ",")
	}
	if a.ReportURL != "" {
		ann["report_url"] = a.ReportURL
	}
	pa := postableAlert{Labels: labels, Annotations: ann, StartsAt: a.At.UTC()}
	if a.Resolved {
		// Alertmanager keeps the earliest startsAt it saw for the alert.
		pa.EndsAt = a.At.UTC()
	}
	if u, err := url.Parse(a.ReportURL); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		pa.GeneratorURL = a.ReportURL
	}
	return pa
}

func (m *alertmanager) send(ctx context.Context, a ports.Alert) error {
	data, err := json.Marshal([]postableAlert{amAlert(a)})
	if err != nil {
		return fmt.Errorf("encode alertmanager alert: %w", err)
	}
	return m.post.post(ctx, m.url, data, nil)
}
