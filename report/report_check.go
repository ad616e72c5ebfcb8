package report

import (
	"fmt"
	"strings"
)

// CheckLines renders the pre-flight check for a person, one line per
// host and under it one per task that would change something, then the
// limits the host breaks (marked "!"). plan --diff prints it, a run's
// timeline shows it, report.md holds it.
func CheckLines(p *Preflight) []string {
	scope := "the canary"
	if p.Scope == "all" {
		scope = "every host"
	}
	head := fmt.Sprintf("pre-flight check (check mode, --diff) of %s, %s: %s", scope, Count(len(p.Hosts), "host"), p.Outcome)
	if p.Recorded {
		head += " (recorded result)"
	}
	lines := []string{head}
	for _, h := range p.Hosts {
		tasks, files, added, removed := h.Totals()
		line := fmt.Sprintf("  %s  %s", h.Name, h.Status)
		switch {
		case tasks > 0:
			line += fmt.Sprintf(": %s would change %s, +%d -%d lines", Count(tasks, "task"), Count(files, "file"), added, removed)
		case h.Message != "":
			line += ": " + h.Message
		default:
			line += ": nothing would change"
		}
		lines = append(lines, line)
		for _, c := range h.Changes {
			var fs []string
			for _, f := range c.Files {
				fs = append(fs, fmt.Sprintf("%s (+%d -%d)", f.Path, f.Added, f.Removed))
			}
			if len(fs) == 0 {
				fs = []string{"no file named"}
			}
			lines = append(lines, fmt.Sprintf("    - %s: %s", c.Task, strings.Join(fs, ", ")))
		}
		for _, v := range h.Violations {
			lines = append(lines, "    ! "+v)
		}
	}
	return lines
}

// checkMarkdown is report.md's section on the pre-flight check.
func checkMarkdown(b *strings.Builder, p *Preflight) {
	b.WriteString("## Pre-flight check\n\n")
	scope := "the canary"
	if p.Scope == "all" {
		scope = "every host"
	}
	fmt.Fprintf(b, "Check mode with `--diff` on %s: **%s**", scope, p.Outcome)
	if p.Reason != "" {
		fmt.Fprintf(b, " — %s", mdText(p.Reason))
	}
	if p.Recorded {
		b.WriteString(" (recorded result)")
	}
	b.WriteString("\n\n| host | check | task | files (lines +/-) | limits broken |\n|---|---|---|---|---|\n")
	for _, h := range p.Hosts {
		broken := strings.Join(h.Violations, "; ")
		if len(h.Changes) == 0 {
			fmt.Fprintf(b, "| %s | %s | %s | | %s |\n", h.Name, h.Status, mdCell(h.Message), mdCell(broken))
			continue
		}
		for i, c := range h.Changes {
			var fs []string
			for _, f := range c.Files {
				fs = append(fs, fmt.Sprintf("`%s` (+%d -%d)", mdCell(f.Path), f.Added, f.Removed))
			}
			name, status, lim := h.Name, h.Status, mdCell(broken)
			if i > 0 {
				name, status, lim = "", "", ""
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", name, status, mdCell(c.Task), strings.Join(fs, ", "), lim)
		}
	}
	b.WriteString("\n")
}

// Count is "1 host", "2 hosts".
func Count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
