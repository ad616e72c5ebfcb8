package report

import (
	"fmt"
	"html/template"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
)

// HTML renders the report as one self-contained page: the Markdown content
// plus an SVG plot per metric for the hosts that mattered most (reverted or
// worst scores), each with its baseline band, so a reader sees the
// regression rather than a number.
func HTML(r *Report) string {
	type plot struct {
		Title string
		SVG   template.HTML
	}
	var plots []plot
	hosts := append([]HostReport(nil), r.Hosts...)
	sort.SliceStable(hosts, func(i, j int) bool {
		if hosts[i].Reverted != hosts[j].Reverted {
			return hosts[i].Reverted
		}
		return hosts[i].MaxScore > hosts[j].MaxScore
	})
	const maxHosts = 6
	for i, h := range hosts {
		if i == maxHosts {
			break
		}
		for _, name := range slices.Sorted(maps.Keys(h.Metrics)) {
			pts := r.Series[h.Name][name]
			if len(pts) < 2 {
				continue
			}
			m := h.Metrics[name]
			plots = append(plots, plot{
				Title: fmt.Sprintf("%s — %s (max score %.1f)", h.Name, name, m.MaxScore),
				SVG:   template.HTML(svgPlot(pts, m.Baseline, m.Stddev)),
			})
		}
	}
	var b strings.Builder
	err := pageTmpl.Execute(&b, map[string]any{
		"Title":    r.Name,
		"Markdown": Markdown(r),
		"Plots":    plots,
	})
	if err != nil {
		return "<pre>" + template.HTMLEscapeString(err.Error()) + "</pre>"
	}
	return b.String()
}

var pageTmpl = template.Must(template.New("report").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>rollguard: {{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}
pre{white-space:pre-wrap;background:#f6f8fa;padding:1em;border-radius:6px}
figure{display:inline-block;margin:.5em}figcaption{font-size:.85em;color:#444}</style></head>
<body><pre>{{.Markdown}}</pre>
{{if .Plots}}<h2>Metrics of the hosts that mattered</h2>{{end}}
{{range .Plots}}<figure>{{.SVG}}<figcaption>{{.Title}}</figcaption></figure>{{end}}
</body></html>
`))

// svgPlot draws the series as a polyline over the baseline band
// (baseline ± 2 spreads).
func svgPlot(pts []Point, baseline, stddev float64) string {
	const w, h, pad = 480.0, 160.0, 6.0
	lo, hi := baseline-2*stddev, baseline+2*stddev
	for _, p := range pts {
		if math.IsNaN(p.V) {
			continue
		}
		lo, hi = math.Min(lo, p.V), math.Max(hi, p.V)
	}
	if hi == lo {
		hi = lo + 1
	}
	t0, t1 := pts[0].T, pts[len(pts)-1].T
	span := t1.Sub(t0).Seconds()
	if span <= 0 {
		span = 1
	}
	x := func(i int) float64 { return pad + (w-2*pad)*pts[i].T.Sub(t0).Seconds()/span }
	y := func(v float64) float64 { return h - pad - (h-2*pad)*(v-lo)/(hi-lo) }
	var line strings.Builder
	for i, p := range pts {
		if math.IsNaN(p.V) {
			continue
		}
		fmt.Fprintf(&line, "%.1f,%.1f ", x(i), y(p.V))
	}
	bandTop, bandBot := y(baseline+2*stddev), y(baseline-2*stddev)
	return fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f">`+
		`<rect width="100%%" height="100%%" fill="#fff" stroke="#ddd"/>`+
		`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#d9f2d9"/>`+
		`<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#2a7" stroke-dasharray="4 3"/>`+
		`<polyline fill="none" stroke="#c33" stroke-width="1.5" points="%s"/></svg>`,
		w, h, w, h,
		pad, bandTop, w-2*pad, math.Max(bandBot-bandTop, 1),
		pad, w-pad, y(baseline), y(baseline),
		strings.TrimSpace(line.String()))
}
