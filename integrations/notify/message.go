package notify

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/rollguard/rollguard/ports"
)

// title is the event as a heading word.
func title(a ports.Alert) string {
	t := map[string]string{
		ports.EventDegraded:     "Degraded",
		ports.EventRollback:     "Rollback",
		ports.EventHalted:       "Halted",
		ports.EventPromoted:     "Promoted",
		ports.EventVerifyFailed: "Revert not verified",
	}[a.Event]
	if a.Resolved {
		t = "Resolved: " + t
	}
	return t
}

// summary is the alert as one sentence.
func summary(a ports.Alert) string {
	in := ""
	if a.Wave != "" {
		in = " in wave " + a.Wave
	}
	var s string
	switch a.Event {
	case ports.EventDegraded:
		s = fmt.Sprintf("rollout %s is degrading%s", a.Rollout, in)
	case ports.EventRollback:
		s = fmt.Sprintf("rollout %s rolled back%s", a.Rollout, in)
	case ports.EventHalted:
		s = fmt.Sprintf("rollout %s halted%s: a person must decide", a.Rollout, in)
	case ports.EventPromoted:
		s = fmt.Sprintf("rollout %s promoted", a.Rollout)
	case ports.EventVerifyFailed:
		s = fmt.Sprintf("rollout %s: the revert%s did not bring the metrics back to the baseline", a.Rollout, in)
	default:
		s = fmt.Sprintf("rollout %s: %s%s", a.Rollout, a.Event, in)
	}
	if n := len(a.Hosts); n > 0 && a.Event != ports.EventPromoted {
		s += fmt.Sprintf(" (%d host%s)", n, plural(n))
	}
	if a.Resolved {
		s = "resolved: " + s
	}
	return s
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// hostList names up to max hosts and counts the rest.
func hostList(hosts []string, max int) string {
	if len(hosts) <= max {
		return strings.Join(hosts, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(hosts[:max], ", "), len(hosts)-max)
}

// valueList is "k=v, ..." in key order; NaN reads "no data".
func valueList(values map[string]float64) string {
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + formatValue(values[k])
	}
	return strings.Join(parts, ", ")
}

func formatValue(v float64) string {
	if math.IsNaN(v) {
		return "no data"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// description is the alert's details as lines: reason, what changed
// next to what degraded, hosts, values, run, report.
func description(a ports.Alert) string {
	var b strings.Builder
	if a.Reason != "" {
		b.WriteString(a.Reason + "\n")
	}
	for _, s := range a.Attribution {
		b.WriteString(s + "\n")
	}
	if len(a.Hosts) > 0 {
		fmt.Fprintf(&b, "hosts: %s\n", hostList(a.Hosts, 20))
	}
	if len(a.Values) > 0 {
		fmt.Fprintf(&b, "values: %s\n", valueList(a.Values))
	}
	if a.RunID != "" {
		fmt.Fprintf(&b, "run: %s\n", a.RunID)
	}
	if a.ReportURL != "" {
		fmt.Fprintf(&b, "report: %s\n", a.ReportURL)
	}
	return strings.TrimSuffix(b.String(), "\n")
}
