package notify

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/ports"
)

func TestSlackMessage(t *testing.T) {
	rec := newRecorder(t)
	al, err := New([]AlertConfig{{Type: TypeSlack, URL: rec.srv.URL + "/services/T0/B0/x"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := rollbackAlert()
	a.Reason = "error rate <!channel> & friends > 5%"
	if err := al.Send(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	if got := rec.reqs[0].Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type %q", got)
	}
	var msg slackMessage
	if err := json.Unmarshal(rec.bodies[0], &msg); err != nil {
		t.Fatalf("slack body: %v\n%s", err, rec.bodies[0])
	}
	wantText := "rollout web-nginx rolled back in wave canary (2 hosts): error rate &lt;!channel&gt; &amp; friends &gt; 5%"
	if msg.Text != wantText {
		t.Errorf("text\n got %q\nwant %q", msg.Text, wantText)
	}
	if len(msg.Blocks) < 4 {
		t.Fatalf("%d blocks, want header, fields, reason, values, context: %s", len(msg.Blocks), rec.bodies[0])
	}
	if h := msg.Blocks[0]; h.Type != "header" || h.Text.Text != ":rotating_light: Rollback: web-nginx" {
		t.Errorf("header block %+v", h)
	}
	var fields []string
	for _, f := range msg.Blocks[1].Fields {
		fields = append(fields, f.Text)
	}
	wantFields := []string{"*Event*\nrollback", "*Rollout*\nweb-nginx", "*Wave*\ncanary", "*Hosts*\nweb-1, web-2"}
	if strings.Join(fields, "|") != strings.Join(wantFields, "|") {
		t.Errorf("fields %q, want %q", fields, wantFields)
	}
	if r := msg.Blocks[2].Text.Text; r != "*Reason*\nerror rate &lt;!channel&gt; &amp; friends &gt; 5%" {
		t.Errorf("reason block %q: the reason must be escaped so it cannot ping a channel", r)
	}
	if v := msg.Blocks[3].Text.Text; !strings.Contains(v, "cpu=no data, fraction=0.5") {
		t.Errorf("values block %q", v)
	}
	last := msg.Blocks[len(msg.Blocks)-1]
	if last.Type != "context" || !strings.Contains(last.Elements[0].Text, "<https://github.com/acme/fleet/actions/runs/7|report>") ||
		!strings.Contains(last.Elements[0].Text, "run `run-42`") {
		t.Errorf("context block %+v", last)
	}
}

func TestSlackLimits(t *testing.T) {
	a := rollbackAlert()
	a.Rollout = strings.Repeat("r", 300)
	for i := range 500 {
		a.Hosts = append(a.Hosts, strings.Repeat("h", 30)+string(rune('a'+i%26)))
	}
	msg := slackPayload(a)
	if n := len([]rune(msg.Blocks[0].Text.Text)); n > slackHeaderMax {
		t.Errorf("header of %d characters, Slack allows %d", n, slackHeaderMax)
	}
	hosts := msg.Blocks[1].Fields[3].Text
	if n := len([]rune(hosts)); n > slackFieldMax {
		t.Errorf("hosts field of %d characters, Slack allows %d", n, slackFieldMax)
	}
	if !strings.Contains(hosts, "and 482 more") {
		t.Errorf("hosts field does not count the hosts left out: %q", hosts[len(hosts)-40:])
	}
}

func TestAlertmanagerRequest(t *testing.T) {
	tests := []struct {
		name     string
		path     string // of the configured URL
		alert    func(a *ports.Alert)
		wantPath string
		want     postableAlert
	}{
		{
			name: "rollback", path: "", alert: func(*ports.Alert) {}, wantPath: "/api/v2/alerts",
			want: postableAlert{
				Labels: map[string]string{"alertname": "RollguardRollback", "rollout": "web-nginx", "wave": "canary", "severity": "critical"},
				Annotations: map[string]string{
					"summary": "rollout web-nginx rolled back in wave canary (2 hosts)",
					"description": "latency-regression fired: fraction(hosts, .degraded) = 0.5 >= 0.3\nhosts: web-1, web-2\n" +
						"values: cpu=no data, fraction=0.5\nrun: run-42\nreport: https://github.com/acme/fleet/actions/runs/7",
					"run_id": "run-42", "hosts": "web-1,web-2", "report_url": "https://github.com/acme/fleet/actions/runs/7",
				},
				StartsAt:     t0,
				GeneratorURL: "https://github.com/acme/fleet/actions/runs/7",
			},
		},
		{
			name: "degraded resolved, behind a path prefix", path: "/am/",
			alert: func(a *ports.Alert) {
				a.Event, a.Resolved, a.Values, a.Reason, a.Hosts, a.ReportURL = ports.EventDegraded, true, nil, "", nil, "report.md"
			},
			wantPath: "/am/api/v2/alerts",
			want: postableAlert{
				Labels: map[string]string{"alertname": "RollguardDegraded", "rollout": "web-nginx", "wave": "canary", "severity": "warning"},
				Annotations: map[string]string{
					"summary": "resolved: rollout web-nginx is degrading in wave canary", "description": "run: run-42\nreport: report.md",
					"run_id": "run-42", "report_url": "report.md",
				},
				StartsAt: t0, EndsAt: t0,
			},
		},
		{
			name: "verify failed, no wave, full endpoint given", path: "/api/v2/alerts",
			alert:    func(a *ports.Alert) { a.Event, a.Wave, a.Values, a.ReportURL = ports.EventVerifyFailed, "", nil, "" },
			wantPath: "/api/v2/alerts",
			want: postableAlert{
				Labels: map[string]string{"alertname": "RollguardVerifyFailed", "rollout": "web-nginx", "severity": "critical"},
				Annotations: map[string]string{
					"summary":     "rollout web-nginx: the revert did not bring the metrics back to the baseline (2 hosts)",
					"description": "latency-regression fired: fraction(hosts, .degraded) = 0.5 >= 0.3\nhosts: web-1, web-2\nrun: run-42",
					"run_id":      "run-42", "hosts": "web-1,web-2",
				},
				StartsAt: t0,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(t)
			al, err := New([]AlertConfig{{Type: TypeAlertmanager, URL: rec.srv.URL + tt.path, On: ports.Events()}}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			a := rollbackAlert()
			tt.alert(&a)
			if err := al.Send(t.Context(), a); err != nil {
				t.Fatal(err)
			}
			if p := rec.reqs[0].URL.Path; p != tt.wantPath {
				t.Errorf("POST %s, want %s", p, tt.wantPath)
			}
			var got []postableAlert
			if err := json.Unmarshal(rec.bodies[0], &got); err != nil {
				t.Fatalf("body: %v\n%s", err, rec.bodies[0])
			}
			gotJSON, _ := json.MarshalIndent(got, "", " ")
			wantJSON, _ := json.MarshalIndent([]postableAlert{tt.want}, "", " ")
			if string(gotJSON) != string(wantJSON) {
				t.Errorf("alerts\n got %s\nwant %s", gotJSON, wantJSON)
			}
		})
	}
}

func TestAlertNameAndSeverity(t *testing.T) {
	want := map[string][2]string{
		"degraded":      {"RollguardDegraded", "warning"},
		"rollback":      {"RollguardRollback", "critical"},
		"halted":        {"RollguardHalted", "critical"},
		"promoted":      {"RollguardPromoted", "info"},
		"verify_failed": {"RollguardVerifyFailed", "critical"},
	}
	for _, ev := range ports.Events() {
		if got := [2]string{AlertName(ev), Severity(ev)}; got != want[ev] {
			t.Errorf("%s: %v, want %v", ev, got, want[ev])
		}
	}
}

func TestAnnotation(t *testing.T) {
	tests := []struct {
		name  string
		alert ports.Alert
		want  string
	}{
		{
			name:  "degraded is a warning; newlines, % and CR are escaped",
			alert: ports.Alert{Event: "degraded", Rollout: "web", Wave: "canary", Reason: "p95 +80%\r\nerrors 3%", At: t0},
			want:  "::warning title=rollguard Degraded%3A web::rollout web is degrading in wave canary%0Ap95 +80%25%0D%0Aerrors 3%25\n",
		},
		{
			name:  "rollback is an error; ':' and ',' in the title are escaped",
			alert: ports.Alert{Event: "rollback", Rollout: "a,b:c", Hosts: []string{"h1", "h2"}, RunID: "r1", At: t0},
			want:  "::error title=rollguard Rollback%3A a%2Cb%3Ac::rollout a,b:c rolled back (2 hosts)%0Ahosts: h1, h2%0Arun: r1\n",
		},
		{
			name:  "promoted is a notice",
			alert: ports.Alert{Event: "promoted", Rollout: "web", At: t0},
			want:  "::notice title=rollguard Promoted%3A web::rollout web promoted\n",
		},
		{
			name:  "a resolved degradation is a notice",
			alert: ports.Alert{Event: "degraded", Rollout: "web", Resolved: true, At: t0},
			want:  "::notice title=rollguard Resolved%3A Degraded%3A web::resolved: rollout web is degrading\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Annotation(tt.alert); got != tt.want {
				t.Errorf("\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// The time format of startsAt must be RFC 3339, as Alertmanager parses it.
func TestAlertmanagerTimeFormat(t *testing.T) {
	data, err := json.Marshal(amAlert(ports.Alert{Event: "halted", Rollout: "x", At: time.Date(2025, 1, 2, 3, 4, 5, 600, time.FixedZone("CET", 3600))}))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"startsAt":"2025-01-02T02:04:05.0000006Z"`) || strings.Contains(string(data), "endsAt") {
		t.Errorf("alert %s: want startsAt in UTC and no endsAt", data)
	}
}

// TestAttributionInEveryPayload: what changed next to what degraded
// reaches every destination, as the runner wrote it.
func TestAttributionInEveryPayload(t *testing.T) {
	a := rollbackAlert()
	line := "after `Write app.conf` changed on web-1, latency_p95 0.2033 → 0.3138 (+54%)"
	a.Attribution = []string{line}

	rec := newRecorder(t)
	al, err := New([]AlertConfig{{Type: TypeWebhook, URL: rec.srv.URL + "/hook"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := al.Send(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	var body struct {
		Attribution []string `json:"attribution"`
	}
	if err := json.Unmarshal(rec.bodies[0], &body); err != nil || len(body.Attribution) != 1 || body.Attribution[0] != line {
		t.Errorf("webhook body attribution %q (%v), want [%q]", body.Attribution, err, line)
	}

	var slackTexts []string
	for _, b := range slackPayload(a).Blocks {
		if b.Text != nil {
			slackTexts = append(slackTexts, b.Text.Text)
		}
	}
	if want := "*What changed, what degraded*\n" + line; !strings.Contains(strings.Join(slackTexts, "\n"), want) {
		t.Errorf("slack blocks %q, want a section %q", slackTexts, want)
	}
	if d := amAlert(a).Annotations["description"]; !strings.Contains(d, line) {
		t.Errorf("alertmanager description %q does not hold %q", d, line)
	}
	if got := Annotation(a); !strings.Contains(got, escapeData(line)) {
		t.Errorf("annotation %q does not hold %q", got, line)
	}
}
