package report

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Markdown renders the report for a person: the verdict first, then what
// was rolled back and why, the waves, the hosts that mattered, and the
// decisions that fired. It is also what goes into $GITHUB_STEP_SUMMARY.
func Markdown(r *Report) string {
	var b strings.Builder
	title := r.Name
	if r.DryRun {
		title += " (dry run)"
	}
	fmt.Fprintf(&b, "# rollguard: %s\n\n", title)
	fmt.Fprintf(&b, "**Outcome: %s**", Verdict(r))
	if r.Reason != "" {
		fmt.Fprintf(&b, " — %s", r.Reason)
	}
	b.WriteString("\n\n")
	fmt.Fprintf(&b, "Run `%s`", r.RunID)
	if r.Version != "" {
		fmt.Fprintf(&b, ", version `%s`", r.Version)
	}
	fmt.Fprintf(&b, ", %s → %s (%s).\n\n", stamp(r.StartedAt), stamp(r.FinishedAt), r.FinishedAt.Sub(r.StartedAt).Round(time.Second))

	rollbacks := r.Rollbacks
	if len(rollbacks) == 0 && r.Rollback != nil {
		rollbacks = []*Rollback{r.Rollback}
	}
	for _, rb := range rollbacks {
		b.WriteString("## Rollback\n\n")
		fmt.Fprintf(&b, "- Trigger: `%s`\n- Reason: %s\n- Scope: %s\n- Hosts: %s\n", rb.Trigger, rb.Reason, rb.Scope, strings.Join(rb.Hosts, ", "))
		for _, m := range rb.Methods {
			ok := "ok"
			if !m.OK {
				ok = "FAILED"
			}
			fmt.Fprintf(&b, "- Method `%s` on %s: %s", m.Name, strings.Join(m.Hosts, ", "), ok)
			if m.Detail != "" {
				fmt.Fprintf(&b, " (%s)", m.Detail)
			}
			b.WriteString("\n")
		}
		v := "no"
		if rb.Verified {
			v = "yes"
		}
		fmt.Fprintf(&b, "- Verified: %s", v)
		if rb.Verification != "" {
			fmt.Fprintf(&b, " — %s", rb.Verification)
		}
		b.WriteString("\n\n")
	}

	b.WriteString("## Waves\n\n| wave | hosts | monitor | outcome |\n|---|---|---|---|\n")
	for _, w := range r.Waves {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", w.Name, strings.Join(w.Hosts, ", "), w.Monitor, w.Outcome)
	}
	b.WriteString("\n")

	hosts := append([]HostReport(nil), r.Hosts...)
	sort.SliceStable(hosts, func(i, j int) bool { return hosts[i].MaxScore > hosts[j].MaxScore })
	names := metricNames(r)
	b.WriteString("## Hosts (worst first)\n\n| host | wave | applied | reverted | max score |")
	for _, n := range names {
		fmt.Fprintf(&b, " %s (baseline → current, z) |", n)
	}
	b.WriteString("\n|---|---|---|---|---|")
	for range names {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	const maxRows = 50
	for i, h := range hosts {
		if i == maxRows {
			fmt.Fprintf(&b, "\n…and %d more hosts in report.json.\n", len(hosts)-maxRows)
			break
		}
		rev := ""
		if h.Reverted {
			rev = "yes"
			if h.RevertReason != "" {
				rev += ": " + h.RevertReason
			}
		}
		app := "no"
		if h.Applied {
			app = "yes"
			if h.Status != "" {
				app = h.Status
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.2f |", h.Name, h.Wave, app, rev, h.MaxScore)
		for _, n := range names {
			m, ok := h.Metrics[n]
			switch {
			case !ok:
				b.WriteString(" – |")
			case m.NoData:
				fmt.Fprintf(&b, " %.4g → no data |", m.Baseline)
			case m.MaxScore > 0:
				fmt.Fprintf(&b, " %.4g → %.4g, z=%.1f (worst %.4g, z=%.1f) |", m.Baseline, m.Current, m.Z, m.Worst, m.WorstZ)
			default:
				fmt.Fprintf(&b, " %.4g → %.4g, z=%.1f |", m.Baseline, m.Current, m.Z)
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")

	fired := 0
	for _, d := range r.Decisions {
		if d.Fired {
			fired++
		}
	}
	if fired > 0 {
		b.WriteString("## Decisions that fired\n\n")
		for _, d := range r.Decisions {
			if !d.Fired {
				continue
			}
			who := d.Scope
			if d.Host != "" {
				who += " " + d.Host
			}
			fmt.Fprintf(&b, "- %s, wave %s, `%s` (%s): %s\n", stamp(d.At), d.Wave, d.Policy, who, d.Reason)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Verdict is the outcome in words: "rolled back", or "would roll back"
// for a dry run.
func Verdict(r *Report) string {
	live := map[string]string{OutcomePromoted: "promoted", OutcomeRolledBack: "rolled back", OutcomeHalted: "halted"}
	dry := map[string]string{OutcomePromoted: "would promote", OutcomeRolledBack: "would roll back", OutcomeHalted: "would halt"}
	words := live
	if r.DryRun {
		words = dry
	}
	if w, ok := words[r.Outcome]; ok {
		return w
	}
	return r.Outcome
}

func metricNames(r *Report) []string {
	seen := map[string]bool{}
	var names []string
	for _, h := range r.Hosts {
		for n := range h.Metrics {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	return names
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }
