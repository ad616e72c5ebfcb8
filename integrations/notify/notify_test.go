package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rollguard/rollguard/ports"
)

// fakeClock returns a fixed time and records the pauses asked of it.
type fakeClock struct {
	now    time.Time
	mu     sync.Mutex
	sleeps []time.Duration
}

func (c *fakeClock) Now() time.Time { return c.now }

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	c.sleeps = append(c.sleeps, d)
	c.mu.Unlock()
	return ctx.Err()
}

var t0 = time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)

func rollbackAlert() ports.Alert {
	return ports.Alert{
		Event:     ports.EventRollback,
		Rollout:   "web-nginx",
		RunID:     "run-42",
		Wave:      "canary",
		Hosts:     []string{"web-1", "web-2"},
		Reason:    "latency-regression fired: fraction(hosts, .degraded) = 0.5 >= 0.3",
		At:        t0,
		Values:    map[string]float64{"fraction": 0.5, "cpu": math.NaN()},
		ReportURL: "https://github.com/acme/fleet/actions/runs/7",
	}
}

// recorder is an httptest server that records requests and answers with
// the statuses given, in turn (200 once they run out).
type recorder struct {
	srv      *httptest.Server
	mu       sync.Mutex
	reqs     []*http.Request
	bodies   [][]byte
	statuses []int
	// always, when set, answers every request once statuses run out.
	always int
	answer string
}

func newRecorder(t *testing.T, statuses ...int) *recorder {
	t.Helper()
	r := &recorder{statuses: statuses}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.reqs = append(r.reqs, req)
		r.bodies = append(r.bodies, body)
		code := http.StatusOK
		if r.always != 0 {
			code = r.always
		}
		if len(r.statuses) > 0 {
			code, r.statuses = r.statuses[0], r.statuses[1:]
		}
		answer := r.answer
		r.mu.Unlock()
		w.WriteHeader(code)
		io.WriteString(w, answer)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reqs)
}

func TestNewRejectsBadConfig(t *testing.T) {
	const secret = "T000/B000/XXXXsecret"
	tests := []struct {
		name string
		cfg  []AlertConfig
		want []string // fragments of the error
	}{
		{"unknown type", []AlertConfig{{Type: "pager", URL: "https://x.example/" + secret}}, []string{`alerts[0]: unknown type "pager"`}},
		{"missing url", []AlertConfig{{Type: TypeWebhook}}, []string{"alerts[0] (webhook): url is required"}},
		{"bad scheme", []AlertConfig{{Type: TypeSlack, URL: "ftp://hooks.slack.com/services/" + secret}}, []string{"ftp://hooks.slack.com/…: scheme must be http or https"}},
		{"malformed", []AlertConfig{{Type: TypeWebhook, URL: "http://h\x7f/" + secret}}, []string{"url is malformed"}},
		{"github with url", []AlertConfig{{Type: TypeGitHub, URL: "https://x.example/"}}, []string{"takes no url"}},
		{"unknown event", []AlertConfig{{Type: TypeGitHub, On: []string{"rollback", "explode"}}}, []string{`unknown event "explode"`}},
		{"every problem at once", []AlertConfig{
			{Type: TypeWebhook},
			{Type: TypeAlertmanager, URL: "https://am.example:9093"},
			{Type: "email", URL: "mailto:ops@example.com"},
		}, []string{"alerts[0] (webhook): url is required", `alerts[2]: unknown type "email"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, Options{})
			if err == nil {
				t.Fatal("New accepted a bad configuration")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q leaks the URL's secret", err)
			}
		})
	}
}

func TestWebhookBodyAndHeaders(t *testing.T) {
	rec := newRecorder(t)
	al, err := New([]AlertConfig{{Type: TypeWebhook, URL: rec.srv.URL + "/hook?token=abc"}}, Options{Clock: &fakeClock{now: t0}})
	if err != nil {
		t.Fatal(err)
	}
	if err := al.Send(t.Context(), rollbackAlert()); err != nil {
		t.Fatal(err)
	}
	if rec.count() != 1 {
		t.Fatalf("%d requests, want 1", rec.count())
	}
	req := rec.reqs[0]
	if req.Method != http.MethodPost || req.URL.Path != "/hook" || req.URL.Query().Get("token") != "abc" {
		t.Errorf("request %s %s, want POST /hook?token=abc", req.Method, req.URL)
	}
	for k, want := range map[string]string{"Content-Type": "application/json", "X-Rollguard-Event": "rollback", "User-Agent": "rollguard"} {
		if got := req.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if req.Header.Get("X-Rollguard-Delivery") == "" {
		t.Error("no X-Rollguard-Delivery header")
	}
	var got map[string]any
	if err := json.Unmarshal(rec.bodies[0], &got); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, rec.bodies[0])
	}
	want := map[string]any{
		"event": "rollback", "rollout": "web-nginx", "run_id": "run-42", "wave": "canary",
		"hosts":      []any{"web-1", "web-2"},
		"reason":     "latency-regression fired: fraction(hosts, .degraded) = 0.5 >= 0.3",
		"at":         "2025-03-14T15:09:26Z",
		"values":     map[string]any{"fraction": 0.5, "cpu": nil},
		"report_url": "https://github.com/acme/fleet/actions/runs/7",
		"summary":    "rollout web-nginx rolled back in wave canary (2 hosts)",
	}
	gotJSON, _ := json.Marshal(got)
	wantJSON, _ := json.Marshal(want)
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Errorf("body\n got %s\nwant %s", gotJSON, wantJSON)
	}
}

func TestRetry(t *testing.T) {
	tests := []struct {
		name      string
		statuses  []int
		wantReqs  int
		wantErr   string // "" = success
		wantSleep []time.Duration
	}{
		{"ok at once", nil, 1, "", nil},
		{"5xx then ok", []int{503}, 2, "", []time.Duration{2 * time.Second}},
		{"5xx twice", []int{500, 502}, 2, "after a retry: HTTP 502", []time.Duration{2 * time.Second}},
		{"4xx is final", []int{400}, 1, "HTTP 400", nil},
		{"5xx then 4xx", []int{500, 404}, 2, "HTTP 404", []time.Duration{2 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(t, tt.statuses...)
			clk := &fakeClock{now: t0}
			al, err := New([]AlertConfig{{Type: TypeWebhook, URL: rec.srv.URL}}, Options{Clock: clk, RetryDelay: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			err = al.Send(t.Context(), rollbackAlert())
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Send: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Send error %v, want one containing %q", err, tt.wantErr)
			}
			if rec.count() != tt.wantReqs {
				t.Errorf("%d requests, want %d", rec.count(), tt.wantReqs)
			}
			if !slices.Equal(clk.sleeps, tt.wantSleep) {
				t.Errorf("pauses %v, want %v", clk.sleeps, tt.wantSleep)
			}
			if rec.count() == 2 && rec.reqs[0].Header.Get("X-Rollguard-Delivery") != rec.reqs[1].Header.Get("X-Rollguard-Delivery") {
				t.Error("the retry carries another delivery id")
			}
		})
	}
}

func TestRetryOnNetworkError(t *testing.T) {
	var n int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		first := n == 1
		mu.Unlock()
		if first { // drop the connection without an answer
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	clk := &fakeClock{now: t0}
	al, err := New([]AlertConfig{{Type: TypeWebhook, URL: srv.URL}}, Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	if err := al.Send(t.Context(), rollbackAlert()); err != nil {
		t.Fatalf("Send after a dropped connection and a retry: %v", err)
	}
	if n != 2 || len(clk.sleeps) != 1 || clk.sleeps[0] != time.Second {
		t.Errorf("%d requests, pauses %v; want 2 requests and one default 1s pause", n, clk.sleeps)
	}
}

func TestAttemptTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	clk := &fakeClock{now: t0}
	al, err := New([]AlertConfig{{Type: TypeWebhook, URL: srv.URL}}, Options{Clock: clk, Timeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	err = al.Send(t.Context(), rollbackAlert())
	if err == nil || !strings.Contains(err.Error(), "no answer within 20ms") {
		t.Fatalf("Send to a server that never answers: %v, want a timeout", err)
	}
	if len(clk.sleeps) != 1 {
		t.Errorf("pauses %v: a timed-out attempt is retried once", clk.sleeps)
	}
}

func TestCancellation(t *testing.T) {
	started := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // the server notices a gone client only once the body is read
		close(started)
		<-r.Context().Done()
	}))
	defer srv.Close()
	clk := &fakeClock{now: t0}
	al, err := New([]AlertConfig{{Type: TypeWebhook, URL: srv.URL}}, Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	go func() { <-started; cancel() }()
	err = al.Send(ctx, rollbackAlert())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Send cancelled: %v, want an error wrapping context.Canceled", err)
	}
	if len(clk.sleeps) != 0 {
		t.Errorf("a cancelled send paused for a retry: %v", clk.sleeps)
	}
}

func TestSecretsStayOutOfErrorsAndLogs(t *testing.T) {
	const secret = "T0SECRET/B0SECRET/xoxsecret"
	rec := newRecorder(t, 500, 500)
	rec.answer = "no_service for /services/" + secret
	// An answer that echoes a part of the URL alone: the hook's token, a
	// query parameter's value. A short part (v=4) is no secret, and
	// taking it out would garble the answer ("code …0…1").
	echo := newRecorder(t, 403)
	echo.answer = "unknown hook h00kSECRET, invalid token qSECRETq (code 4041)"
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close() // connection refused

	al, err := New([]AlertConfig{
		{Type: TypeSlack, URL: rec.srv.URL + "/services/" + secret},
		{Type: TypeWebhook, URL: downURL + "/hook/" + secret + "?token=" + secret},
		{Type: TypeAlertmanager, URL: strings.Replace(downURL, "http://", "http://admin:pwSECRET@", 1)},
		{Type: TypeWebhook, URL: echo.srv.URL + "/hooks/h00kSECRET?token=qSECRETq&v=4"},
	}, Options{Clock: &fakeClock{now: t0}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	err = al.Send(t.Context(), rollbackAlert())
	if err == nil {
		t.Fatal("Send to failing destinations succeeded")
	}
	host := strings.TrimPrefix(rec.srv.URL, "http://")
	for _, want := range []string{"alerts[0] slack http://" + host + "/…", "HTTP 500", "alerts[1] webhook", "alerts[2] alertmanager",
		"alerts[3] webhook", "HTTP 403: unknown hook …, invalid token … (code 4041)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	for what, s := range map[string]string{"error": err.Error(), "logs": logs.String()} {
		if strings.Contains(s, "SECRET") || strings.Contains(s, "xoxsecret") {
			t.Errorf("%s leak the secret:\n%s", what, s)
		}
	}
	if !strings.Contains(logs.String(), "alert failed") {
		t.Errorf("logs do not report the failure:\n%s", logs.String())
	}
}

func TestFanoutRoutesByEvent(t *testing.T) {
	def := newRecorder(t)    // default events
	prom := newRecorder(t)   // promoted only
	broken := newRecorder(t) // fails, must not stop the others
	broken.always = http.StatusBadRequest
	var ann bytes.Buffer
	al, err := New([]AlertConfig{
		{Type: TypeWebhook, URL: broken.srv.URL},
		{Type: TypeWebhook, URL: def.srv.URL},
		{Type: TypeWebhook, URL: prom.srv.URL, On: []string{"promoted"}},
		{Type: TypeGitHub, On: []string{"promoted", "rollback"}},
	}, Options{Clock: &fakeClock{now: t0}, Annotations: &ann})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range ports.Events() {
		a := rollbackAlert()
		a.Event = ev
		err := al.Send(t.Context(), a)
		wantErr := ev != ports.EventPromoted // the broken one wants every default event
		if (err != nil) != wantErr {
			t.Errorf("Send(%s): %v, want error: %t", ev, err, wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "alerts[0]") {
			t.Errorf("Send(%s): error %q does not name alerts[0]", ev, err)
		}
	}
	if def.count() != 4 || broken.count() != 4 || prom.count() != 1 {
		t.Errorf("requests: default %d (want 4), broken %d (want 4), promoted-only %d (want 1)", def.count(), broken.count(), prom.count())
	}
	var events []string
	for _, b := range def.bodies {
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		events = append(events, m["event"].(string))
	}
	if want := []string{"degraded", "rollback", "halted", "verify_failed"}; !slices.Equal(events, want) {
		t.Errorf("default destination got %v, want %v", events, want)
	}
	lines := strings.Split(strings.TrimSpace(ann.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "::error ") || !strings.HasPrefix(lines[1], "::notice ") {
		t.Errorf("annotations:\n%s\nwant one ::error (rollback) then one ::notice (promoted)", ann.String())
	}
}

func TestSendFillsTimeAndRejectsUnknownEvent(t *testing.T) {
	rec := newRecorder(t)
	al, err := New([]AlertConfig{{Type: TypeWebhook, URL: rec.srv.URL}}, Options{Clock: &fakeClock{now: t0}})
	if err != nil {
		t.Fatal(err)
	}
	a := rollbackAlert()
	a.At = time.Time{}
	if err := al.Send(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(rec.bodies[0], &m)
	if m["at"] != "2025-03-14T15:09:26Z" {
		t.Errorf("at = %v, want the clock's time", m["at"])
	}
	a.Event = "exploded"
	if err := al.Send(t.Context(), a); err == nil || !strings.Contains(err.Error(), `unknown event "exploded"`) {
		t.Errorf("Send(unknown event) = %v", err)
	}
	if rec.count() != 1 {
		t.Errorf("an unknown event was delivered")
	}
}
