package victoriametrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rollguard/rollguard/ports"
)

// fixture returns a recorded VictoriaMetrics response from testdata/.
func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// apiServer is an httptest server answering with a handler and keeping
// every request it received.
type apiServer struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
}

func newAPIServer(t testing.TB, h func(w http.ResponseWriter, r *http.Request, n int)) *apiServer {
	t.Helper()
	s := &apiServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.reqs = append(s.reqs, r.Clone(context.Background()))
		n := len(s.reqs)
		s.mu.Unlock()
		h(w, r, n)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *apiServer) requests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// serve answers every request with status and body.
func serve(status int, body []byte) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, _ *http.Request, _ int) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(body)
	}
}

func newClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var latency = ports.Query{Name: "latency_p95", Expr: `histogram_quantile(0.95, sum by (le, instance) (rate(x[1m])))`}

func TestClientInstantRequestAndValues(t *testing.T) {
	at := time.Unix(1704110460, 0)
	tests := []struct {
		name      string
		cfg       func(base string) Config
		wantAuth  string
		wantHdr   map[string]string
		wantParam map[string]string
	}{
		{name: "no auth", cfg: func(base string) Config { return Config{URL: base + "/prom/"} }},
		{name: "bearer token", cfg: func(base string) Config {
			return Config{URL: base + "/prom", BearerToken: "tok-123"}
		}, wantAuth: "Bearer tok-123"},
		{name: "basic auth", cfg: func(base string) Config {
			return Config{URL: base + "/prom", BasicAuthUser: "ops", BasicAuthPassword: "pw"}
		}, wantAuth: "Basic b3BzOnB3"},
		{name: "userinfo in the URL becomes basic auth", cfg: func(base string) Config {
			return Config{URL: strings.Replace(base, "http://", "http://ops:pw@", 1) + "/prom"}
		}, wantAuth: "Basic b3BzOnB3"},
		{name: "extra headers", cfg: func(base string) Config {
			return Config{URL: base + "/prom", Headers: map[string]string{"X-Scope-OrgID": "team-a"}}
		}, wantHdr: map[string]string{"X-Scope-OrgID": "team-a"}},
		{name: "query parameters of the URL are kept", cfg: func(base string) Config {
			return Config{URL: base + "/prom?extra_label=env%3Dprod"}
		}, wantParam: map[string]string{"extra_label": "env=prod"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newAPIServer(t, serve(200, fixture(t, "instant-latency.json")))
			c := newClient(t, tt.cfg(srv.URL))
			out := make([]float64, 4)
			err := c.Instant(context.Background(), latency, []string{"web-3", "web-1", "web-99", "web-10"}, at, out)
			if err != nil {
				t.Fatal(err)
			}
			if want := []float64{0.193779, 0.300334, math.NaN(), 0.191813}; !equalNaN(out, want) {
				t.Errorf("values = %v, want %v", out, want)
			}
			reqs := srv.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != http.MethodGet || r.URL.Path != "/prom/api/v1/query" {
				t.Errorf("request %s %s, want GET /prom/api/v1/query", r.Method, r.URL.Path)
			}
			if got := r.URL.Query().Get("query"); got != latency.Expr {
				t.Errorf("query = %q, want the expression %q", got, latency.Expr)
			}
			if got := r.URL.Query().Get("time"); got != "1704110460" {
				t.Errorf("time = %q, want 1704110460", got)
			}
			if got := r.Header.Get("Authorization"); got != tt.wantAuth {
				t.Errorf("Authorization = %q, want %q", got, tt.wantAuth)
			}
			for k, v := range tt.wantParam {
				if got := r.URL.Query().Get(k); got != v {
					t.Errorf("param %s = %q, want %q", k, got, v)
				}
			}
			for k, v := range tt.wantHdr {
				if got := r.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestClientRange(t *testing.T) {
	srv := newAPIServer(t, serve(200, fixture(t, "range-latency.json")))
	c := newClient(t, Config{URL: srv.URL})
	from, to := time.Unix(1704110400, 0), time.Unix(1704110580, 0)
	got, err := c.Range(context.Background(), latency, []string{"web-1", "nope", "web-9"}, from, to, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	want := []Samples{
		{Timestamps: []int64{1704110400000, 1704110460000, 1704110520000, 1704110580000}, Values: []float64{0.19644, 0.300334, 0.328031, 0.299666}},
		{},
		{Timestamps: []int64{1704110400000, 1704110460000, 1704110520000, 1704110580000}, Values: []float64{0.217295, 0.203991, 0.199557, 0.203104}},
	}
	for i := range want {
		if !slices.Equal(got[i].Timestamps, want[i].Timestamps) || !slices.Equal(got[i].Values, want[i].Values) {
			t.Errorf("key %d: got %v, want %v", i, got[i], want[i])
		}
	}
	q := srv.requests()[0].URL.Query()
	if p := srv.requests()[0].URL.Path; p != "/api/v1/query_range" {
		t.Errorf("path = %s, want /api/v1/query_range", p)
	}
	if q.Get("start") != "1704110400" || q.Get("end") != "1704110580" || q.Get("step") != "60" {
		t.Errorf("params = %v, want start=1704110400 end=1704110580 step=60", q)
	}
	vals, err := c.Range(context.Background(), latency, []string{"nope", "web-1"}, from, to, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(vals[0].Values) != 0 || len(vals[1].Values) != 4 || len(vals[1].Timestamps) != 4 {
		t.Errorf("Range = %v, want nothing for an absent key and 4 samples for web-1", vals)
	}
}

func TestClientErrors(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      []byte
		wantErr   []string
		wantTries int
	}{
		{name: "bad query: the server's message, no retry", status: 400, body: fixture(t, "error-bad-query.json"),
			wantErr: []string{`query "latency_p95"`, "server answered 400", `argList: unexpected token`}, wantTries: 1},
		{name: "two series for one host", status: 200, body: fixture(t, "instant-duplicate.json"),
			wantErr: []string{`query "latency_p95"`, `two series for one host: {"__name__":"latency_p95","instance":"web-1","zone":"a"} and {"__name__":"latency_p95","instance":"web-1","zone":"b"}`}, wantTries: 1},
		{name: "a proxy's page, retried once", status: 502, body: []byte("<html><body>\n<h1>502 Bad Gateway</h1></body></html>"),
			wantErr: []string{"server answered 502: <html><body> <h1>502 Bad Gateway</h1></body></html>"}, wantTries: 2},
		{name: "scalar result", status: 200, body: []byte(`{"status":"success","data":{"resultType":"scalar","result":[1704110460,"1"]}}`),
			wantErr: []string{"not a vector or a matrix"}, wantTries: 1},
		{name: "truncated JSON", status: 200, body: fixture(t, "instant-latency.json")[:300],
			wantErr: []string{`query "latency_p95"`, "decode response"}, wantTries: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newAPIServer(t, serve(tt.status, tt.body))
			c := newClient(t, Config{URL: srv.URL})
			err := c.Instant(context.Background(), latency, []string{"web-1"}, time.Unix(1704110460, 0), make([]float64, 1))
			if err == nil {
				t.Fatal("no error")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			if got := len(srv.requests()); got != tt.wantTries {
				t.Errorf("%d requests, want %d", got, tt.wantTries)
			}
		})
	}
}

func TestClientEmptyResultIsNaN(t *testing.T) {
	srv := newAPIServer(t, serve(200, fixture(t, "instant-empty.json")))
	c := newClient(t, Config{URL: srv.URL})
	out := []float64{1, 2}
	if err := c.Instant(context.Background(), latency, []string{"web-1", "web-2"}, time.Unix(1704110460, 0), out); err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(out[0]) || !math.IsNaN(out[1]) {
		t.Errorf("values = %v, want NaN for hosts without a series", out)
	}
}

func TestClientSplitsRangeRefusedForTooManyPoints(t *testing.T) {
	const maxPoints = 100
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		q := r.URL.Query()
		start, _ := strconv.ParseInt(q.Get("start"), 10, 64)
		end, _ := strconv.ParseInt(q.Get("end"), 10, 64)
		if (end-start)/60+1 > maxPoints {
			w.WriteHeader(422)
			w.Write(fixture(t, "error-too-many-points.json"))
			return
		}
		var pts []string
		for ts := start; ts <= end; ts += 60 {
			pts = append(pts, fmt.Sprintf(`[%d,"%d"]`, ts, ts))
		}
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"instance":"a"},"values":[%s]}]}}`, strings.Join(pts, ","))
	})
	c := newClient(t, Config{URL: srv.URL})
	from := time.Unix(1704000000, 0)
	to := from.Add(149 * time.Minute) // 150 points
	got, err := c.Range(context.Background(), latency, []string{"a"}, from, to, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(srv.requests()); n != 3 {
		t.Errorf("%d requests, want 3 (refused, then two halves)", n)
	}
	if len(got[0].Values) != 150 || got[0].Timestamps[0] != from.UnixMilli() || got[0].Timestamps[149] != to.UnixMilli() {
		t.Fatalf("got %d samples from %d to %d, want 150 covering the range", len(got[0].Values), got[0].Timestamps[0], got[0].Timestamps[len(got[0].Timestamps)-1])
	}
	for i, ts := range got[0].Timestamps {
		if want := from.Add(time.Duration(i) * time.Minute).UnixMilli(); ts != want || got[0].Values[i] != float64(want/1000) {
			t.Fatalf("sample %d = (%d, %v), want (%d, %d): halves overlap or leave a gap", i, ts, got[0].Values[i], want, want/1000)
		}
	}
}

// countingTransport counts round trips and can fail the first ones.
type countingTransport struct {
	n    atomic.Int32
	fail func(n int32) error
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	n := c.n.Add(1)
	if c.fail != nil {
		if err := c.fail(n); err != nil {
			return nil, err
		}
	}
	return http.DefaultTransport.RoundTrip(r)
}

func TestClientRetry(t *testing.T) {
	okBody := fixture(t, "instant-latency.json")
	tests := []struct {
		name      string
		handler   func(w http.ResponseWriter, r *http.Request, n int)
		timeout   time.Duration
		wantErr   bool
		wantTries int
	}{
		{name: "connection reset, then success", wantTries: 2, handler: func(w http.ResponseWriter, r *http.Request, n int) {
			if n == 1 {
				conn, _, _ := w.(http.Hijacker).Hijack()
				conn.Close()
				return
			}
			w.Write(okBody)
		}},
		{name: "timeout, then success", wantTries: 2, timeout: 200 * time.Millisecond, handler: func(w http.ResponseWriter, r *http.Request, n int) {
			if n == 1 {
				<-r.Context().Done() // hold the request until the client gives up
				return
			}
			w.Write(okBody)
		}},
		{name: "reset twice: one retry only", wantTries: 2, wantErr: true, handler: func(w http.ResponseWriter, r *http.Request, n int) {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		}},
		{name: "4xx is not retried", wantTries: 1, wantErr: true, handler: serve(401, []byte(`{"status":"error","errorType":"unauthorized","error":"bad token"}`))},
		{name: "503 is retried", wantTries: 2, handler: func(w http.ResponseWriter, r *http.Request, n int) {
			if n == 1 {
				w.WriteHeader(503)
				return
			}
			w.Write(okBody)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newAPIServer(t, tt.handler)
			c := newClient(t, Config{URL: srv.URL, Timeout: tt.timeout})
			out := make([]float64, 1)
			err := c.Instant(context.Background(), latency, []string{"web-1"}, time.Unix(1704110460, 0), out)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, want error: %v", err, tt.wantErr)
			}
			if !tt.wantErr && out[0] != 0.300334 {
				t.Errorf("value = %v, want 0.300334", out[0])
			}
			if got := len(srv.requests()); got != tt.wantTries {
				t.Errorf("%d requests, want %d", got, tt.wantTries)
			}
		})
	}

	t.Run("connection refused is retried once", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		base := srv.URL
		srv.Close()
		tr := &countingTransport{}
		c := newClient(t, Config{URL: base, HTTPClient: &http.Client{Transport: tr}})
		err := c.Instant(context.Background(), latency, []string{"web-1"}, time.Now(), make([]float64, 1))
		if err == nil || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("error = %v, want connection refused", err)
		}
		if n := tr.n.Load(); n != 2 {
			t.Errorf("%d attempts, want 2", n)
		}
	})
}

func TestClientNeverLeaksCredentials(t *testing.T) {
	const secret = "s3cr3t-pa55"
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	refused := httptest.NewServer(http.NotFoundHandler())
	refusedURL := refused.URL
	refused.Close()
	denied := newAPIServer(t, serve(403, []byte(`{"status":"error","errorType":"forbidden","error":"access denied"}`)))
	// A proxy that echoes the credentials in its error answer, which the
	// client quotes in its error.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		http.Error(w, fmt.Sprintf("denied: %s %s:%s %s", r.Header.Get("Authorization"), user, pass, r.Header.Get("X-Token")), 500)
	}))
	t.Cleanup(echo.Close)

	tests := []struct {
		name string
		cfg  Config
	}{
		{"userinfo, refused", Config{URL: strings.Replace(refusedURL, "http://", "http://ops:"+secret+"@", 1)}},
		{"bearer, refused", Config{URL: refusedURL, BearerToken: secret}},
		{"basic, denied", Config{URL: denied.URL, BasicAuthUser: "ops", BasicAuthPassword: secret}},
		{"userinfo, denied", Config{URL: strings.Replace(denied.URL, "http://", "http://ops:"+secret+"@", 1)}},
		{"bad URL with userinfo", Config{URL: "http://ops:" + secret + "@host:port:bad/"}},
		{"bearer, echoed", Config{URL: echo.URL, BearerToken: secret}},
		{"basic, echoed", Config{URL: echo.URL, BasicAuthUser: "ops", BasicAuthPassword: secret}},
		{"userinfo, echoed", Config{URL: strings.Replace(echo.URL, "http://", "http://ops:"+secret+"@", 1)}},
		{"header, echoed", Config{URL: echo.URL, Headers: map[string]string{"X-Token": secret}}},
		// A hosted service may carry its key in the path or the query.
		{"path, refused", Config{URL: refusedURL + "/tenant/" + secret}},
		{"path, denied", Config{URL: denied.URL + "/" + secret}},
		{"query, refused", Config{URL: refusedURL + "/?key=" + secret}},
		{"query, bad scheme", Config{URL: "ftp://host/?key=" + secret}},
		{"path, no host", Config{URL: "http:///" + secret}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Logger = logger
			c, err := New(tt.cfg)
			if err == nil {
				if strings.Contains(c.URL(), secret) {
					t.Errorf("URL() = %q holds the secret", c.URL())
				}
				err = c.Instant(context.Background(), latency, []string{"web-1"}, time.Now(), make([]float64, 1))
				if err == nil {
					t.Fatal("no error")
				}
				_, rerr := c.Range(context.Background(), latency, []string{"web-1"}, time.Now().Add(-time.Hour), time.Now(), time.Minute)
				err = errors.Join(err, rerr)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error holds the secret: %v", err)
			}
		})
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("logs hold the secret:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "retrying once") {
		t.Errorf("logs do not show the retries, so the check above proves little:\n%s", logs.String())
	}
}

func TestClientCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		cancel() // the request has reached the server: the caller gives up
		<-r.Context().Done()
	})
	c := newClient(t, Config{URL: srv.URL})
	err := c.Instant(ctx, latency, []string{"web-1"}, time.Now(), make([]float64, 1))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want one wrapping context.Canceled", err)
	}
	if n := len(srv.requests()); n != 1 {
		t.Errorf("%d requests, want 1 (a cancellation is not retried)", n)
	}
}

func TestClientQueriesPerTick(t *testing.T) {
	metrics := []string{"latency_p95", "error_rate", "cpu", "saturation"}
	for _, hosts := range []int{10, 1000, 10000} {
		t.Run(strconv.Itoa(hosts), func(t *testing.T) {
			keys := hostNames(hosts)
			bodies := map[string][]byte{}
			for mi, m := range metrics {
				bodies[m] = vmInstantResponse(m, keys, 1704110460, func(i int) float64 { return float64(mi*100000 + i) })
			}
			srv := newAPIServer(t, func(w http.ResponseWriter, r *http.Request, _ int) {
				w.Write(bodies[r.URL.Query().Get("query")])
			})
			c := newClient(t, Config{URL: srv.URL})
			out := make([]float64, hosts)
			const ticks = 3
			for tick := range ticks {
				for mi, m := range metrics {
					at := time.Unix(1704110460+int64(tick)*15, 0)
					if err := c.Instant(context.Background(), ports.Query{Name: m, Expr: m}, keys, at, out); err != nil {
						t.Fatal(err)
					}
					for _, i := range []int{0, hosts / 2, hosts - 1} {
						if want := float64(mi*100000 + i); out[i] != want {
							t.Fatalf("%s on %s = %v, want %v", m, keys[i], out[i], want)
						}
					}
				}
			}
			if got, want := len(srv.requests()), ticks*len(metrics); got != want {
				t.Errorf("%d requests for %d ticks over %d hosts, want %d (one per metric per tick)", got, ticks, hosts, want)
			}
		})
	}
}

// TestGeneratedResponseShape proves vmInstantResponse writes exactly what
// VictoriaMetrics writes, so the tick tests and the benchmark decode the
// real shape.
func TestGeneratedResponseShape(t *testing.T) {
	recorded := fixture(t, "instant-latency.json")
	var hosts []string
	var vals []float64
	_, err := decodeResponse(recorded, "instance", func(host []byte, _ bool, _ []byte, pts []point) error {
		hosts = append(hosts, string(host))
		vals = append(vals, pts[0].V)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := vmInstantResponse("latency_p95", hosts, 1704110460, func(i int) float64 { return vals[i] })
	if !bytes.Equal(got, recorded) {
		t.Errorf("generated response differs from the recorded one:\n got %s\nwant %s", got, recorded)
	}
}

func hostNames(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "web-" + strconv.Itoa(i+1)
	}
	return keys
}

// vmInstantResponse writes a /api/v1/query answer the way VictoriaMetrics
// v1.151 does (see app/vmselect/prometheus/query_response.qtpl).
func vmInstantResponse(name string, hosts []string, at int64, value func(i int) float64) []byte {
	var b []byte
	b = append(b, `{"status":"success","data":{"resultType":"vector","result":[`...)
	for i, h := range hosts {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"metric":{"__name__":`...)
		b = strconv.AppendQuote(b, name)
		b = append(b, `,"instance":`...)
		b = strconv.AppendQuote(b, h)
		b = append(b, `},"value":[`...)
		b = strconv.AppendInt(b, at, 10)
		b = append(b, `,"`...)
		b = strconv.AppendFloat(b, value(i), 'g', -1, 64)
		b = append(b, `"]}`...)
	}
	b = append(b, `]},"stats":{"seriesFetched": "`...)
	b = strconv.AppendInt(b, int64(len(hosts)), 10)
	b = append(b, `","executionTimeMsec":0}}`...)
	return b
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "URL is required"},
		{Config{URL: "ftp://host"}, "scheme must be http or https"},
		{Config{URL: "http://"}, "has no host"},
	}
	for _, tt := range tests {
		if _, err := New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) error = %v, want %q", tt.cfg, err, tt.want)
		}
	}
}

func TestClientKeyOrderFollowsEachCall(t *testing.T) {
	srv := newAPIServer(t, serve(200, fixture(t, "instant-latency.json")))
	c := newClient(t, Config{URL: srv.URL})
	at := time.Unix(1704110460, 0)
	for _, tt := range []struct {
		keys []string
		want []float64
	}{
		{[]string{"web-1", "web-2"}, []float64{0.300334, 0.192774}},
		{[]string{"web-2", "web-1"}, []float64{0.192774, 0.300334}},
		{[]string{"web-2", "web-1", "web-9"}, []float64{0.192774, 0.300334, 0.203991}},
	} {
		out := make([]float64, len(tt.keys))
		if err := c.Instant(context.Background(), latency, tt.keys, at, out); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(out, tt.want) {
			t.Errorf("keys %v: values %v, want %v", tt.keys, out, tt.want)
		}
	}
}

func TestDecodeResponse(t *testing.T) {
	type series struct {
		host    string
		hasHost bool
		points  []point
	}
	tests := []struct {
		name    string
		body    string
		want    []series
		wantErr string
	}{
		{name: "escaped label value, fractional time, special values",
			body: `{"status":"success","data":{"result":[{"metric":{"instance":"web-\"1\"\u00e9"},"values":[[1704110460.123,"NaN"],[-1.5,"+Inf"],[2,"1e-3"]]}],"resultType":"matrix"},"warnings":["x"]}`,
			want: []series{{`web-"1"é`, true, []point{{1704110460123, math.NaN()}, {-1500, math.Inf(1)}, {2000, 0.001}}}}},
		{name: "series without the host label",
			body: ` { "status" : "success" , "data" : { "resultType" : "vector" , "result" : [ { "metric" : { } , "value" : [ 1 , "2" ] } ] } } `,
			want: []series{{"", false, []point{{1000, 2}}}}},
		{name: "error answer", body: `{"status":"error","errorType":"bad_data","error":"boom","data":null}`},
		{name: "bad value", body: `{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"abc"]}]}}`, wantErr: `value "abc"`},
		{name: "not JSON", body: `<html>`, wantErr: "decode response at byte 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []series
			_, err := decodeResponse([]byte(tt.body), "instance", func(host []byte, hasHost bool, _ []byte, pts []point) error {
				got = append(got, series{string(host), hasHost, slices.Clone(pts)})
				return nil
			})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d series, want %d", len(got), len(tt.want))
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				samePoints := slices.EqualFunc(g.points, w.points, func(a, b point) bool {
					return a.T == b.T && (a.V == b.V || math.IsNaN(a.V) && math.IsNaN(b.V))
				})
				if g.host != w.host || g.hasHost != w.hasHost || !samePoints {
					t.Errorf("series %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

// A poll asks its queries at once (runner's observe): the client keeps a
// connection for each between polls instead of dialling again for all but
// two of them at every poll.
func TestClientKeepsAConnectionPerConcurrentQuery(t *testing.T) {
	const queries, polls = 5, 20
	keys := hostNames(3)
	body := vmInstantResponse("latency_p95", keys, 1704110460, func(i int) float64 { return float64(i) })
	var dialled atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(body) }))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dialled.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c := newClient(t, Config{URL: srv.URL})
	for range polls {
		var wg sync.WaitGroup
		for range queries {
			wg.Go(func() {
				if err := c.Instant(t.Context(), latency, keys, time.Unix(1704110460, 0), make([]float64, len(keys))); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	// 5 for the first poll (5-6 measured). A poll that begins before the
	// connections of the one before are back in the pool dials more; the
	// pool keeps those too, up to idleConns, and once it holds a poll's
	// worth no poll dials again: idleConns + queries leaves a busy machine
	// room. net/http's default of 2 idle connections a host dialled 59-62.
	t.Logf("%d connections dialled for %d polls of %d queries at once", dialled.Load(), polls, queries)
	if n := dialled.Load(); n > idleConns+queries {
		t.Errorf("%d connections dialled for %d polls of %d queries at once, want at most %d (about %d)", n, polls, queries, idleConns+queries, queries)
	}
}
