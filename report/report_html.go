package report

import (
	"fmt"
	"html/template"
	"slices"
	"strings"
	"time"
)

// Limits of what report.html draws; report.json has everything.
const (
	// htmlMaxBad bounds the reverted and degraded hosts drawn.
	htmlMaxBad = 8
	// htmlFill is how many hosts are drawn at least when enough changed
	// hosts scored: the worst healthy ones fill up to it.
	htmlFill = 3
	// htmlMaxFocus bounds the large charts of the deciding metrics.
	htmlMaxFocus = 2
	// htmlMaxLead bounds the hosts that did not apply named in the
	// header.
	htmlMaxLead = 5
)

// HTML renders the report as one page that works offline and as a CI
// artifact (inline CSS and SVG, nothing fetched; every value escaped by
// html/template). It reads top-down like report.md: the verdict, the
// deciding metric and host with baseline → observed and when, a chart of
// it, the timeline; then every host that mattered with its metrics
// classified and charted (baseline band over the baseline window and the
// run, the untouched hosts' median as a reference, apply, fire, revert and
// verification marked), the rollback, the waves and every host.
func HTML(r *Report) string {
	var b strings.Builder
	if err := pageTmpl.Execute(&b, newPage(r)); err != nil {
		return "<!doctype html><pre>" + template.HTMLEscapeString(err.Error()) + "</pre>"
	}
	return b.String()
}

type page struct {
	R        *Report
	Title    string
	Verdict  string
	Tone     string // good | bad | warn
	Summary  string
	Deciding []Finding
	// Valued and Missing are Deciding as the header reads it.
	Valued   []Finding
	Missing  []pageNoData
	Largest  *Finding
	Facts    []fact
	Focus    []chart
	Moments  []pageMoment
	Day      string
	Hosts    []pageHost
	More     int
	Order    []string
	All      []pageRow
	AllMore  int
	Fired    []Decision
	Duration string
	// NotApplied are the hosts whose play did not run to its end;
	// NotAppliedMore counts those left out of the table.
	NotApplied     []*HostReport
	NotAppliedMore int
	// NotAppliedLead are the first of them, named in the header.
	NotAppliedLead     []*HostReport
	NotAppliedLeadMore int
}

type pageNoData struct {
	Host    string
	Metrics []string
	Since   string
}

type fact struct {
	Label, Value string
	Bad          bool
}

type pageMoment struct {
	When, Kind, Text string
	Bad              bool
}

type pageHost struct {
	H           *HostReport
	Degraded    bool
	Findings    []Finding
	Attribution Attributed
	Charts      []chart
}

type pageRow struct {
	H     *HostReport
	Cells []Finding
}

func newPage(r *Report) page {
	p := page{R: r, Title: r.Name, Verdict: upperFirst(Verdict(r)), Summary: Summary(r),
		Day: r.StartedAt.UTC().Format(time.DateOnly), Duration: r.FinishedAt.Sub(r.StartedAt).Round(time.Second).String()}
	switch r.Outcome {
	case OutcomePromoted:
		p.Tone = "good"
	case OutcomeHalted:
		p.Tone = "warn"
	default:
		p.Tone = "bad"
	}
	p.Deciding = Deciding(r)
	var missing []NoDataGroup
	p.Valued, missing = groupNoData(r, p.Deciding)
	for _, g := range missing {
		nd := pageNoData{Host: g.Host, Metrics: g.Metrics}
		if !g.Since.IsZero() {
			nd.Since = clock(g.Since, p.Day)
		}
		p.Missing = append(p.Missing, nd)
	}
	if len(p.Deciding) == 0 {
		if f, ok := Largest(r); ok {
			p.Largest = &f
		}
	}
	p.Facts = facts(r, p.Deciding, p.Day)
	p.NotApplied = NotApplied(r)
	p.NotAppliedLead = p.NotApplied[:min(len(p.NotApplied), htmlMaxLead)]
	p.NotAppliedLeadMore = len(p.NotApplied) - len(p.NotAppliedLead)
	if len(p.NotApplied) > mdMaxRows {
		p.NotAppliedMore = len(p.NotApplied) - mdMaxRows
		p.NotApplied = p.NotApplied[:mdMaxRows]
	}
	p.Order = r.metricOrder(p.Deciding)

	focus := p.Valued
	if len(focus) == 0 && len(p.Deciding) > 0 {
		focus = p.Deciding[:1] // one chart shows where the data stopped
	}
	for i, f := range focus {
		if i == htmlMaxFocus {
			break
		}
		if h := r.host(f.Host); h != nil {
			if c, ok := hostChart(r, h, f.Metric, bigChart); ok {
				p.Focus = append(p.Focus, c)
			}
		}
	}
	for _, m := range Moments(r) {
		when := clock(m.At, p.Day)
		if m.End != nil && !m.End.Equal(m.At) {
			when += " → " + clock(*m.End, p.Day)
		}
		p.Moments = append(p.Moments, pageMoment{When: when, Kind: m.Kind, Text: m.Text, Bad: m.Bad})
	}

	hosts, more := Mattered(r, htmlMaxBad, htmlFill)
	p.More = more
	for _, h := range hosts {
		ph := pageHost{H: h, Degraded: r.degraded(h), Findings: r.findings(h, p.Order), Attribution: Attribution(r, h)}
		for _, n := range p.Order {
			if c, ok := hostChart(r, h, n, smallChart); ok {
				ph.Charts = append(ph.Charts, c)
			}
		}
		p.Hosts = append(p.Hosts, ph)
	}
	for i, h := range RankedHosts(r) {
		if i == mdMaxRows {
			p.AllMore = len(r.Hosts) - mdMaxRows
			break
		}
		row := pageRow{H: h}
		for _, n := range p.Order {
			if _, ok := h.Metrics[n]; ok {
				row.Cells = append(row.Cells, r.finding(h, n))
			} else {
				row.Cells = append(row.Cells, Finding{Metric: n})
			}
		}
		p.All = append(p.All, row)
	}
	for _, d := range r.Decisions {
		if d.Fired {
			p.Fired = append(p.Fired, d)
		}
	}
	return p
}

// facts are the header's answers: which host, which metric, how much,
// when it fired, when it was reverted and whether that was verified.
func facts(r *Report, deciding []Finding, day string) []fact {
	var fs []fact
	if len(deciding) > 0 {
		var hosts, metrics []string
		for _, f := range deciding {
			if !slices.Contains(hosts, f.Host) {
				hosts = append(hosts, f.Host)
			}
			if !slices.Contains(metrics, f.Metric) {
				metrics = append(metrics, f.Metric)
			}
		}
		f := deciding[0]
		much := f.Change() + " (" + f.Effect() + ")"
		if f.Class == ClassNoData {
			much = "no data"
			if h := r.host(f.Host); h != nil {
				if s := noDataSince(r, h, f.Metric); !s.IsZero() {
					much += " since " + clock(s, day)
				}
			}
		}
		fs = append(fs,
			fact{Label: "host", Value: listNames(hosts, 4), Bad: true},
			fact{Label: "metric", Value: strings.Join(metrics, ", "), Bad: true},
			fact{Label: "how much", Value: much, Bad: true})
	}
	// The fleet decision that ended the run, or else the first host-level
	// fire (a promoted run with a host reverted).
	d, on := r.firedDecision(), ""
	for i := 0; d == nil && i < len(r.Decisions); i++ {
		if r.Decisions[i].Fired && r.Decisions[i].Host != "" {
			d, on = &r.Decisions[i], " on "+r.Decisions[i].Host
		}
	}
	if d != nil {
		v := clock(d.At, day)
		if a := r.firstApply(); !a.IsZero() {
			v += fmt.Sprintf(" (%s after the first apply)", d.At.Sub(a).Round(time.Second))
		}
		fs = append(fs, fact{Label: "fired", Value: v + " · " + d.Policy + on, Bad: true})
	}
	for _, rb := range r.rollbacks() {
		if len(rb.Hosts) == 0 {
			continue
		}
		fs = append(fs, fact{Label: "reverted", Value: clock(rb.StartedAt, day) + " · " + listNames(rb.Hosts, 4)})
		v := "no"
		if rb.Verified {
			v = "yes"
		}
		switch {
		case r.DryRun:
			v = "not run (dry run)"
		case rb.Verification != "":
			v += " — " + rb.Verification
		}
		fs = append(fs, fact{Label: "verified", Value: v, Bad: !rb.Verified && !r.DryRun})
	}
	return fs
}

var pageTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"num":   num,
	"fixed": func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"score": func(v float64) string { return fmt.Sprintf("%.2f", v) },
	"stamp": stamp,
	"join":  strings.Join,
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rollguard: {{.Verdict}} · {{.Title}}</title>
<style>
:root{--bad:#c62828;--good:#2e7d32;--warn:#b26a00;--ink:#1d2430;--mute:#5f6b7a;--line:#d9dee5;--apply:#1f5fa8;--revert:#e07b00;--verify:#2e7d32}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);max-width:1140px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:30px;margin:0}h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}h3{font-size:16px;margin:18px 0 6px}
.verdict{border-radius:8px;padding:14px 18px;color:#fff}
.verdict.bad{background:var(--bad)}.verdict.good{background:var(--good)}.verdict.warn{background:var(--warn)}
.verdict .name{font-size:17px;opacity:.95}.verdict .summary{margin-top:6px;font-size:15px}
.deciding{font-size:20px;margin:14px 0 6px;font-weight:600}
.deciding code{font-size:19px}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:8px;margin:10px 0 6px}
.facts div{border:1px solid var(--line);border-radius:6px;padding:6px 10px}
.facts .k{display:block;font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--mute)}
.facts .v{font-size:16px;font-weight:600}.facts .bad .v{color:var(--bad)}
code{font:13.5px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f3f5f8;padding:0 3px;border-radius:3px}
table{border-collapse:collapse;margin:6px 0;font-size:14px}th,td{border:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f5f8}td.n{text-align:right;font-variant-numeric:tabular-nums}
.cls{display:inline-block;min-width:58px;text-align:center;border-radius:4px;padding:0 6px;font-size:12px;font-weight:700;text-transform:uppercase;color:#fff}
.cls.pass{background:var(--good)}.cls.high,.cls.low{background:var(--bad)}.cls.nodata{background:#6b7280}
.cls.failed,.cls.unreachable{background:var(--bad)}.cls.skipped,.cls.unmatched{background:var(--warn)}
.timeline td.when{white-space:nowrap;font-variant-numeric:tabular-nums}
.timeline .k{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
.k.baseline{background:#cfd6df}.k.apply{background:var(--apply)}.k.passed{background:var(--good)}.k.fire{background:var(--bad)}.k.revert{background:var(--revert)}.k.verify{background:var(--verify)}
tr.bad td{color:var(--bad);font-weight:600}
.host{border:1px solid var(--line);border-radius:8px;padding:4px 14px 10px;margin:12px 0}
.host.bad{border-color:#e8b4b4;background:#fffafa}
.charts{display:flex;flex-wrap:wrap;gap:6px}
figure{margin:0}figure.small{width:340px}figcaption{font-size:13px;color:var(--mute)}figcaption b{color:var(--ink)}
svg text{font:11px system-ui,sans-serif;fill:#3b4452}
svg .title{font-size:12px;font-weight:600}
.axis{stroke:#8a94a3}.grid{stroke:#eceff3}
.bwin{fill:#eef1f5}.band{fill:#2e7d32;fill-opacity:.13}.base{stroke:#2e7d32;stroke-opacity:.6}
.series{fill:none;stroke:var(--apply);stroke-width:2}.chart.bad .series{stroke:var(--bad)}
.dot{fill:var(--apply)}.chart.bad .dot{fill:var(--bad)}
.control{fill:none;stroke:#4b5563;stroke-width:1.6;stroke-dasharray:6 4}
.nodata{fill:#9ca3af;fill-opacity:.12;stroke:#6b7280;stroke-dasharray:2 3}
line.mark{stroke-width:1.5}line.mark.apply{stroke:var(--apply)}line.mark.fire{stroke:var(--bad);stroke-width:2}line.mark.revert{stroke:var(--revert)}line.mark.verify{stroke:var(--verify)}
text.mark.apply{fill:var(--apply)}text.mark.fire{fill:var(--bad);font-weight:700}text.mark.revert{fill:var(--revert)}text.mark.verify{fill:var(--verify)}
.legend{font-size:12.5px;color:var(--mute);margin:2px 0 6px}
.legend i{display:inline-block;width:18px;height:0;border-top:2px solid;vertical-align:middle;margin:0 4px 0 10px}
.legend i.band{height:10px;border:0;background:#2e7d32;opacity:.25}.legend i.bwin{height:10px;border:0;background:#e3e7ed}
.legend i.control{border-top:2px dashed #4b5563}.legend i.series{border-color:var(--apply)}.legend i.bad{border-color:var(--bad)}
.muted{color:var(--mute)}details{margin:8px 0}summary{cursor:pointer;font-weight:600}
</style></head>
<body>
<section id="verdict" class="verdict {{.Tone}}">
<h1>{{.Verdict}}</h1>
<div class="name">{{.Title}}{{if .R.DryRun}} · dry run{{end}} · run {{.R.RunID}}{{with .R.Version}} · version {{.}}{{end}}</div>
<div class="summary">{{.Summary}}</div>
</section>
<section id="deciding">
{{$lead := "Deciding: "}}{{if eq .R.Outcome "promoted"}}{{$lead = "Host revert: "}}{{end}}
{{range $i, $f := .Valued}}<div class="deciding">{{if $i}}and {{else}}{{$lead}}{{end}}<code>{{$f.Metric}}</code> on {{$f.Host}}: {{$f.Change}} ({{$f.Effect}}, z {{fixed $f.Z}}, <span class="cls {{$f.Class}}">{{$f.Class}}</span>)</div>
{{end}}{{range $i, $g := .Missing}}<div class="deciding">{{if or $i $.Valued}}and {{else}}{{$lead}}{{end}}no data from {{$g.Host}} for {{range $j, $m := $g.Metrics}}{{if $j}}, {{end}}<code>{{$m}}</code>{{end}}{{with $g.Since}} since {{.}}{{end}} <span class="cls nodata">nodata</span></div>
{{end}}{{with .Largest}}<div class="deciding">Largest score: <code>{{.Metric}}</code> on {{.Host}}: {{.Change}} ({{.Effect}}, z {{fixed .Z}}, <span class="cls {{.Class}}">{{.Class}}</span>)</div>
{{end}}{{with .NotAppliedLead}}<div class="deciding">Did not apply: {{range $i, $h := .}}{{if $i}}, {{end}}{{$h.Name}} <span class="cls {{$h.Status}}">{{$h.Status}}</span>{{if $h.Reverted}} (reverted){{end}}{{end}}{{with $.NotAppliedLeadMore}} and {{.}} more{{end}}</div>
{{end}}{{range .R.Warnings}}<div class="deciding">Warning: {{.}}</div>
{{end}}{{if .Facts}}<div class="facts">{{range .Facts}}<div{{if .Bad}} class="bad"{{end}}><span class="k">{{.Label}}</span><span class="v">{{.Value}}</span></div>{{end}}</div>{{end}}
{{range .Focus}}{{template "chart" .}}{{end}}
</section>
{{if .Moments}}<section id="timeline"><h2>Timeline <span class="muted">(UTC, {{.Day}})</span></h2>
<table class="timeline"><tr><th>when</th><th>what</th></tr>
{{range .Moments}}<tr{{if .Bad}} class="bad"{{end}}><td class="when">{{.When}}</td><td><span class="k {{.Kind}}"></span>{{.Text}}</td></tr>
{{end}}</table>
<div class="muted">Run {{stamp .R.StartedAt}} → {{stamp .R.FinishedAt}} ({{.Duration}}).</div></section>{{end}}
{{with .NotApplied}}<section id="notapplied"><h2>Did not apply</h2>
<table><tr><th>host</th><th>wave</th><th>status</th><th>why</th><th>what became of it</th></tr>
{{range .}}<tr><td>{{.Name}}</td><td>{{.Wave}}</td><td><span class="cls {{.Status}}">{{.Status}}</span></td><td>{{.Message}}</td><td>{{.Fate}}</td></tr>
{{end}}</table>{{if $.NotAppliedMore}}<p class="muted">…and {{$.NotAppliedMore}} more hosts in report.json.</p>{{end}}</section>
{{end}}{{if .Hosts}}<section id="hosts"><h2>Hosts that mattered</h2>
<div class="legend">Charts: <i class="series"></i>the host <i class="bad"></i>a host whose metric left its band <i class="bwin"></i>baseline window <i class="band"></i>baseline band (green line: baseline) <i class="control"></i>untouched hosts' median (controls) · vertical lines: apply, fire, revert, verified</div>
{{range .Hosts}}<div class="host{{if or .H.Reverted .Degraded}} bad{{end}}">
<h3>{{.H.Name}} <span class="muted">· {{.H.Wave}}{{with .H.Status}} · {{.}}{{end}}{{if .H.Reverted}} · reverted{{else if .Degraded}} · degraded{{end}} · max score {{score .H.MaxScore}}</span></h3>
{{if .H.Reverted}}{{with .H.RevertReason}}<div>Reverted: {{.}}</div>{{end}}{{else if .H.DidNotApply}}<div>Did not apply ({{.H.Status}}{{with .H.Message}}: {{.}}{{end}}): {{.H.Fate}}</div>{{end}}
{{if .Attribution.Moved}}<div>{{if .Attribution.Tasks}}After {{range $i, $t := .Attribution.Tasks}}{{if $i}}, {{end}}<code>{{$t}}</code>{{end}} changed on {{.Attribution.Host}}: {{else}}On {{.Attribution.Host}}: {{end}}{{range $i, $f := .Attribution.Moved}}{{if $i}}, {{end}}<b>{{$f.Metric}}</b> {{$f.Change}} ({{$f.Effect}}){{end}}</div>
{{else if .H.ChangedTasks}}<div class="muted">Changed: {{join .H.ChangedTasks ", "}}</div>{{end}}
<table><tr><th>metric</th><th>class</th><th>baseline → observed</th><th>effect</th><th>z</th><th>max score</th></tr>
{{range .Findings}}<tr><td>{{.Metric}}</td><td><span class="cls {{.Class}}">{{.Class}}</span></td><td>{{.Change}}{{if .Worst}} <span class="muted">(worst)</span>{{end}}</td><td class="n">{{.Effect}}</td><td class="n">{{fixed .Z}}</td><td class="n">{{score .MaxScore}}</td></tr>
{{end}}</table>
<div class="charts">{{range .Charts}}{{template "chart" .}}{{end}}</div>
</div>
{{end}}{{if .More}}<p class="muted">…and {{.More}} more reverted or degraded hosts in report.json.</p>{{end}}
</section>{{end}}
{{range .R.Rollbacks}}<section class="rollback"><h2>{{if .HostLevel}}Host-level revert{{else}}Rollback{{end}}: {{join .Hosts ", "}}</h2>
<table><tr><th>trigger</th><td><code>{{.Trigger}}</code></td></tr><tr><th>reason</th><td>{{.Reason}}</td></tr><tr><th>scope</th><td>{{.Scope}}</td></tr>
<tr><th>started → finished</th><td>{{stamp .StartedAt}} → {{stamp .FinishedAt}}</td></tr>
{{range .Methods}}<tr><th>method <code>{{.Name}}</code></th><td>{{join .Hosts ", "}}: {{if .OK}}ok{{else}}<b style="color:var(--bad)">FAILED</b>{{end}}{{with .Detail}} ({{.}}){{end}}</td></tr>{{end}}
<tr><th>verified</th><td>{{if .Verified}}yes{{else}}no{{end}}{{with .Verification}} — {{.}}{{end}}</td></tr></table></section>
{{end}}
<section id="waves"><h2>Waves</h2><table><tr><th>wave</th><th>hosts</th><th>monitor</th><th>apply started</th><th>outcome</th></tr>
{{range .R.Waves}}<tr><td>{{.Name}}</td><td>{{join .Hosts ", "}}</td><td>{{.Monitor}}</td><td>{{with .ApplyStartedAt}}{{stamp .}}{{else}}–{{end}}</td><td>{{.Outcome}}</td></tr>
{{end}}</table></section>
<section id="all"><details><summary>Every host, worst first ({{len .R.Hosts}})</summary>
<table><tr><th>host</th><th>wave</th><th>applied</th><th>reverted</th><th>max score</th>{{range .Order}}<th>{{.}}</th>{{end}}</tr>
{{range .All}}<tr><td>{{.H.Name}}</td><td>{{.H.Wave}}</td><td>{{if .H.DidNotApply}}<span class="cls {{.H.Status}}">{{.H.Status}}</span>{{else if .H.Status}}{{.H.Status}}{{else if .H.Applied}}yes{{else}}no{{end}}</td><td>{{if .H.Reverted}}yes{{else if .H.DidNotApply}}no: {{.H.Fate}}{{end}}</td><td class="n">{{score .H.MaxScore}}</td>{{range .Cells}}<td>{{if .Class}}<span class="cls {{.Class}}">{{.Class}}</span> {{.Change}}{{else}}–{{end}}</td>{{end}}</tr>
{{end}}</table>{{if .AllMore}}<p class="muted">…and {{.AllMore}} more hosts in report.json.</p>{{end}}</details></section>
{{if .Fired}}<section id="decisions"><h2>Decisions that fired</h2><ul>
{{range .Fired}}<li>{{stamp .At}}, wave {{.Wave}}, <code>{{.Policy}}</code> ({{.Scope}}{{with .Host}} {{.}}{{end}}): {{.Reason}}</li>
{{end}}</ul></section>{{end}}
{{with .R.Context}}<section id="context"><h2>Where it ran</h2><table>{{range $k, $v := .}}<tr><th>{{$k}}</th><td>{{$v}}</td></tr>{{end}}</table></section>{{end}}
</body></html>
{{define "chart"}}<figure class="chart{{if .Bad}} bad{{end}}{{if lt .W 600.0}} small{{end}}">
<svg width="{{.W}}" height="{{.H}}" viewBox="0 0 {{.W}} {{.H}}" role="img" aria-label="{{.Title}}">
{{with .BaselineWindow}}<rect class="bwin" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"/>{{end}}
{{range .YTicks}}<line class="grid" x1="{{$.Left}}" x2="{{$.Right}}" y1="{{.Pos}}" y2="{{.Pos}}"/><text x="{{$.Left}}" dx="-5" y="{{.Pos}}" dy="4" text-anchor="end">{{.Label}}</text>{{end}}
{{with .Band}}<rect class="band" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"/>{{end}}
<line class="base" x1="{{.Left}}" x2="{{.Right}}" y1="{{.BaselineY}}" y2="{{.BaselineY}}"/>
{{with .NoData}}<rect class="nodata" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"/><text x="{{.X}}" dx="6" y="{{.Y}}" dy="{{.H}}" transform="translate(0,-8)">no data</text>{{end}}
{{range .Control}}<polyline class="control" points="{{.}}"/>{{end}}
{{range .Host}}<polyline class="series" points="{{.}}"/>{{end}}
{{range .Dots}}<circle class="dot" cx="{{.X}}" cy="{{.Y}}" r="2.5"/>{{end}}
{{range .Marks}}<line class="mark {{.Kind}}" x1="{{.X}}" x2="{{.X}}" y1="{{$.Top}}" y2="{{$.Bottom}}"/><text class="mark {{.Kind}}" x="{{.X}}" {{if .End}}dx="-3" text-anchor="end"{{else}}dx="3"{{end}} y="{{$.Top}}" dy="{{.LabelY}}">{{.Label}}</text>{{end}}
<line class="axis" x1="{{.Left}}" x2="{{.Right}}" y1="{{.Bottom}}" y2="{{.Bottom}}"/><line class="axis" x1="{{.Left}}" x2="{{.Left}}" y1="{{.Top}}" y2="{{.Bottom}}"/>
{{range .XTicks}}<line class="grid" x1="{{.Pos}}" x2="{{.Pos}}" y1="{{$.Top}}" y2="{{$.Bottom}}"/><text x="{{.Pos}}" y="{{$.Bottom}}" dy="15" text-anchor="middle">{{.Label}}</text>{{end}}
<text x="{{.Right}}" y="{{.H}}" dy="-4" text-anchor="end">{{.XLabel}}</text>
<text x="12" y="{{.Top}}" transform="rotate(-90 12 {{.Top}})" text-anchor="end" dy="0">{{.YLabel}}</text>
</svg>
<figcaption><b>{{.Title}}</b> · {{.Sub}}{{with .ControlLabel}} · {{.}}{{end}}{{with .Clipped}} · {{.}}{{end}}</figcaption>
</figure>{{end}}
`))
