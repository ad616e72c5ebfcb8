package report

import (
	"fmt"
	"strings"
	"time"
)

// mdMaxRows bounds the all-hosts table; report.json has every host.
const mdMaxRows = 50

// Markdown renders the report for a person, in the order of the questions
// an on-call engineer asks: the verdict, which metric on which host
// decided and by how much, when each step happened; then the hosts that
// mattered metric by metric, the rollback, the waves, every host worst
// first, and the decisions that fired. It is also what goes into
// $GITHUB_STEP_SUMMARY.
func Markdown(r *Report) string {
	var b strings.Builder
	title := r.Name
	if r.DryRun {
		title += " (dry run)"
	}
	fmt.Fprintf(&b, "# rollguard: %s\n\n", mdText(title))
	fmt.Fprintf(&b, "**%s** — %s\n\n", upperFirst(Verdict(r)), mdText(Summary(r)))

	deciding := Deciding(r)
	day := r.StartedAt.UTC().Format(time.DateOnly)
	switch {
	case len(deciding) > 0:
		lead := "**Deciding:** "
		if r.Outcome == OutcomePromoted {
			lead = "**Host revert:** "
		}
		valued, missing := groupNoData(r, deciding)
		var parts []string
		for _, f := range valued {
			parts = append(parts, mdFinding(f))
		}
		for _, g := range missing {
			parts = append(parts, mdNoData(g, day))
		}
		fmt.Fprintf(&b, "%s%s\n\n", lead, strings.Join(parts, "; "))
	default:
		if f, ok := Largest(r); ok {
			fmt.Fprintf(&b, "Largest score: %s (max score %.2f).\n\n", mdFinding(f), f.MaxScore)
		}
	}
	notApplied := NotApplied(r)
	if len(notApplied) > 0 {
		fmt.Fprintf(&b, "**Did not apply:** %s.\n\n", mdText(NotAppliedLine(notApplied, 5)))
	}

	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "**Warning:** %s\n\n", mdText(w))
	}

	if ms := Moments(r); len(ms) > 0 {
		fmt.Fprintf(&b, "| when (UTC, %s) | what |\n|---|---|\n", day)
		for _, m := range ms {
			when := clock(m.At, day)
			if m.End != nil && !m.End.Equal(m.At) {
				when += " → " + clock(*m.End, day)
			}
			text := mdCell(m.Text)
			if m.Bad {
				text = "**" + text + "**"
			}
			fmt.Fprintf(&b, "| %s | %s |\n", when, text)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "Run `%s`", r.RunID)
	if r.Version != "" {
		fmt.Fprintf(&b, ", version `%s`", mdText(r.Version))
	}
	fmt.Fprintf(&b, ", %s → %s (%s).\n\n", stamp(r.StartedAt), stamp(r.FinishedAt), r.FinishedAt.Sub(r.StartedAt).Round(time.Second))

	order := r.metricOrder(deciding)
	mdNotApplied(&b, notApplied)
	mdMattered(&b, r, order)
	mdRollbacks(&b, r)
	if r.Preflight != nil {
		checkMarkdown(&b, r.Preflight)
	}

	b.WriteString("## Waves\n\n| wave | hosts | monitor | outcome |\n|---|---|---|---|\n")
	for _, w := range r.Waves {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", mdCell(w.Name), mdCell(listNames(w.Hosts, 10)), w.Monitor, w.Outcome)
	}
	b.WriteString("\n")

	mdHosts(&b, r, order)

	fired := false
	for _, d := range r.Decisions {
		if !d.Fired {
			continue
		}
		if !fired {
			b.WriteString("## Decisions that fired\n\n")
			fired = true
		}
		who := d.Scope
		if d.Host != "" {
			who += " " + d.Host
		}
		fmt.Fprintf(&b, "- %s, wave %s, `%s` (%s): %s\n", stamp(d.At), mdText(d.Wave), d.Policy, mdText(who), mdText(d.Reason))
	}
	if fired {
		b.WriteString("\n")
	}
	return b.String()
}

// mdMattered writes one table row per metric of every reverted or
// degraded host, the deciding metric first, with what changed on the host.
func mdMattered(b *strings.Builder, r *Report, order []string) {
	var hosts []*HostReport
	for _, h := range RankedHosts(r) {
		if h.Reverted || r.degraded(h) {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		return
	}
	const maxHosts = 10
	b.WriteString("## Reverted and degraded hosts\n\n| host | metric | class | baseline → observed | effect | z | max score |\n|---|---|---|---|---|---|---|\n")
	for i, h := range hosts {
		if i == maxHosts {
			break
		}
		label := h.Name
		if h.Reverted {
			label += " (reverted)"
		}
		for j, f := range r.findings(h, order) {
			name := ""
			if j == 0 {
				name = mdCell(label)
			}
			class := f.Class
			if f.Moved() || f.Class == ClassNoData {
				class = "**" + class + "**"
			}
			change := f.Change()
			if f.Worst {
				change += " (worst)"
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %.1f | %.2f |\n", name, f.Metric, class, change, f.Effect(), f.Z, f.MaxScore)
		}
	}
	b.WriteString("\n")
	for i, h := range hosts {
		if i == maxHosts {
			fmt.Fprintf(b, "…and %d more reverted or degraded hosts in report.json.\n\n", len(hosts)-maxHosts)
			break
		}
		if a := Attribution(r, h); a.Moved != nil {
			fmt.Fprintf(b, "- %s\n", mdText(a.String()))
		} else if h.Reverted && h.RevertReason != "" {
			fmt.Fprintf(b, "- %s reverted: %s\n", h.Name, mdText(h.RevertReason))
		}
	}
	b.WriteString("\n")
}

// mdNotApplied writes one row per host whose play did not run to its
// end: its status, the apply's message and what became of the host.
func mdNotApplied(b *strings.Builder, hosts []*HostReport) {
	if len(hosts) == 0 {
		return
	}
	b.WriteString("## Did not apply\n\n| host | wave | status | why | what became of it |\n|---|---|---|---|---|\n")
	for i, h := range hosts {
		if i == mdMaxRows {
			fmt.Fprintf(b, "\n…and %d more hosts in report.json.\n", len(hosts)-mdMaxRows)
			break
		}
		fmt.Fprintf(b, "| %s | %s | **%s** | %s | %s |\n", mdCell(h.Name), mdCell(h.Wave), h.Status, mdCell(h.Message), mdCell(h.Fate()))
	}
	b.WriteString("\n")
}

func mdRollbacks(b *strings.Builder, r *Report) {
	for _, rb := range r.rollbacks() {
		title := "Rollback"
		if rb.HostLevel {
			title = "Host-level revert"
		}
		fmt.Fprintf(b, "## %s\n\n", title)
		fmt.Fprintf(b, "- Trigger: `%s`\n- Reason: %s\n- Scope: %s\n- Hosts: %s\n", rb.Trigger, mdText(rb.Reason), rb.Scope, mdText(strings.Join(rb.Hosts, ", ")))
		fmt.Fprintf(b, "- Started %s, finished %s\n", stamp(rb.StartedAt), stamp(rb.FinishedAt))
		for _, m := range rb.Methods {
			ok := "ok"
			if !m.OK {
				ok = "FAILED"
			}
			fmt.Fprintf(b, "- Method `%s` on %s: %s", m.Name, mdText(strings.Join(m.Hosts, ", ")), ok)
			if m.Detail != "" {
				fmt.Fprintf(b, " (%s)", mdText(m.Detail))
			}
			b.WriteString("\n")
		}
		v := "no"
		if rb.Verified {
			v = "yes"
		}
		fmt.Fprintf(b, "- Verified: %s", v)
		if rb.Verification != "" {
			fmt.Fprintf(b, " — %s", mdText(rb.Verification))
		}
		b.WriteString("\n\n")
	}
}

// mdHosts writes every host worst first, one column per metric in reading
// order.
func mdHosts(b *strings.Builder, r *Report, order []string) {
	b.WriteString("## Hosts (worst first)\n\n| host | wave | applied | reverted | max score |")
	for _, n := range order {
		fmt.Fprintf(b, " %s (baseline → observed, z) |", n)
	}
	b.WriteString("\n|---|---|---|---|---|")
	for range order {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	hosts := RankedHosts(r)
	for i, h := range hosts {
		if i == mdMaxRows {
			fmt.Fprintf(b, "\n…and %d more hosts in report.json.\n", len(hosts)-mdMaxRows)
			break
		}
		rev := ""
		switch {
		case h.Reverted:
			rev = "yes"
			if h.RevertReason != "" {
				rev += ": " + mdCell(h.RevertReason)
			}
		case h.DidNotApply():
			rev = "no: " + mdCell(h.Fate())
		}
		app := "no"
		switch {
		case h.Status != "":
			app = h.Status
		case h.Applied:
			app = "yes"
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %.2f |", mdCell(h.Name), mdCell(h.Wave), app, rev, h.MaxScore)
		for _, n := range order {
			if _, ok := h.Metrics[n]; !ok {
				b.WriteString(" – |")
				continue
			}
			f := r.finding(h, n)
			switch {
			case f.Class == ClassNoData:
				fmt.Fprintf(b, " %s |", f.Change())
			case f.Moved():
				fmt.Fprintf(b, " **%s (%s), z=%.1f, %s** |", f.Change(), f.Effect(), f.Z, f.Class)
			default:
				fmt.Fprintf(b, " %s, z=%.1f |", f.Change(), f.Z)
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
}

func mdFinding(f Finding) string {
	if f.Class == ClassNoData {
		return fmt.Sprintf("`%s` on **%s**: no data (baseline %s)", f.Metric, mdText(f.Host), num(f.Baseline))
	}
	return fmt.Sprintf("`%s` on **%s**: %s (%s, z %.1f, %s)", f.Metric, mdText(f.Host), f.Change(), f.Effect(), f.Z, f.Class)
}

func mdNoData(g NoDataGroup, day string) string {
	s := fmt.Sprintf("no data from **%s** for `%s`", mdText(g.Host), strings.Join(g.Metrics, "`, `"))
	if !g.Since.IsZero() {
		s += " since " + clock(g.Since, day)
	}
	return s
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

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// mdText keeps user text (names, reasons, errors) from opening an HTML
// tag in a job summary, which renders HTML; it stays readable as plain
// text (a policy's "6.185 > 5" is left as it is).
func mdText(s string) string {
	return strings.ReplaceAll(s, "<", "&lt;")
}

// mdCell is mdText for a table cell: a newline or a bar would end the
// cell.
func mdCell(s string) string {
	return strings.NewReplacer("\n", " ", "|", `\|`).Replace(mdText(s))
}

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }

// clock is the time of day when t falls on day, the full stamp otherwise.
func clock(t time.Time, day string) string {
	if t.UTC().Format(time.DateOnly) == day {
		return t.UTC().Format(time.TimeOnly)
	}
	return stamp(t)
}
