package victoriametrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rollguard/rollguard/integrations/redact"
	"github.com/rollguard/rollguard/ports"
)

// DefaultTimeout bounds one HTTP request when Config.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// idleConns is how many connections to the source a Client keeps open
// between polls: one per query a poll asks at once, up to this many.
const idleConns = 16

// Config configures a Client.
type Config struct {
	// URL is the query API's base, e.g. http://127.0.0.1:8428 or
	// https://prom.example.com/prometheus. Required. Userinfo in it is
	// used as basic auth and never appears in errors or logs; query
	// parameters in it (VictoriaMetrics' extra_label=...) are sent with
	// every query.
	URL string
	// HostLabel is the label naming the host in query results (default
	// DefaultHostLabel, "instance").
	HostLabel string
	// BearerToken, when set, is sent as "Authorization: Bearer <token>".
	BearerToken string
	// BasicAuthUser and BasicAuthPassword, when the user is set, are sent
	// as basic auth. They win over userinfo in URL.
	BasicAuthUser     string
	BasicAuthPassword string
	// Headers are added to every request (e.g. a tenant header).
	Headers map[string]string
	// Timeout bounds one HTTP request, retry excluded (default
	// DefaultTimeout).
	Timeout time.Duration
	// HTTPClient sends the requests (default: a client of its own).
	HTTPClient *http.Client
	// Logger receives retries and debug information (default: discard).
	Logger *slog.Logger
}

// Client queries a Prometheus-compatible HTTP API (VictoriaMetrics,
// Prometheus). It implements ports.MetricsSource with one request per
// query for all the hosts, and is safe for concurrent use.
type Client struct {
	base      *url.URL // without userinfo
	redacted  string   // base for messages
	hostLabel string
	auth      string // Authorization header value, or ""
	headers   map[string]string
	timeout   time.Duration
	hc        *http.Client
	log       *slog.Logger
	bufs      sync.Pool // *bytes.Buffer for response bodies
	matchers  matcherCache
}

var _ ports.MetricsSource = (*Client)(nil)

// New checks cfg and returns a Client. It does no I/O.
func New(cfg Config) (*Client, error) {
	if cfg.URL == "" {
		return nil, errors.New("metrics client: URL is required")
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		// url.Parse's error quotes the URL, userinfo included: drop it.
		return nil, errors.New("metrics client: URL is not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("metrics client: URL %s: scheme must be http or https", redact.URL(u))
	}
	if u.Host == "" {
		return nil, fmt.Errorf("metrics client: URL %s has no host", redact.URL(u))
	}
	c := &Client{
		hostLabel: cfg.HostLabel,
		headers:   cfg.Headers,
		timeout:   cfg.Timeout,
		hc:        cfg.HTTPClient,
		log:       cfg.Logger,
	}
	urlPass, _ := u.User.Password() // "" without one
	switch {
	case cfg.BearerToken != "":
		c.auth = "Bearer " + cfg.BearerToken
	case cfg.BasicAuthUser != "":
		c.auth = basicAuth(cfg.BasicAuthUser, cfg.BasicAuthPassword)
	case u.User != nil:
		c.auth = basicAuth(u.User.Username(), urlPass)
	}
	// An error answer is quoted in errors: a server or a proxy may echo
	// the credentials there, so they are redacted from it (a copy of
	// the caller's client is wrapped, not the client).
	hc := http.Client{}
	if c.hc != nil {
		hc = *c.hc
	} else {
		// A poll asks its queries at once: keep a connection for each
		// (net/http keeps 2 per host), so that an https source is not
		// dialled and handshaken again for the rest at every poll.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = idleConns
		hc.Transport = t
	}
	secrets := []string{cfg.BearerToken, cfg.BasicAuthPassword, urlPass, c.auth, strings.TrimPrefix(c.auth, "Basic ")}
	for _, v := range cfg.Headers {
		if redact.Worth(v) {
			secrets = append(secrets, v)
		}
	}
	c.hc = redact.Client(&hc, secrets...)
	u.User = nil
	u.Fragment = ""
	u.Path = strings.TrimSuffix(u.Path, "/")
	c.base = u
	// A hosted service may carry a key in the path or the query: messages
	// name the scheme and host alone (scheme://host/… when there is more).
	c.redacted = u.Scheme + "://" + u.Host
	if u.Path != "" || u.RawQuery != "" {
		c.redacted = redact.URL(u)
	}
	if c.hostLabel == "" {
		c.hostLabel = DefaultHostLabel
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.bufs.New = func() any { return new(bytes.Buffer) }
	c.matchers.hostLabel = c.hostLabel
	return c, nil
}

func basicAuth(user, pass string) string {
	req := http.Request{Header: http.Header{}}
	req.SetBasicAuth(user, pass)
	return req.Header.Get("Authorization")
}

// URL returns the base URL with any credentials removed.
func (c *Client) URL() string { return c.redacted }

// APIError is an error answer of the query API.
type APIError struct {
	// StatusCode is the HTTP status.
	StatusCode int
	// Type is the response's errorType ("bad_data", "422", ...).
	Type string
	// Message is the server's error message.
	Message string
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("server answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	}
	return fmt.Sprintf("server answered %d: %s", e.StatusCode, e.Message)
}

// tooManyPoints reports whether the server refused a range query for its
// number of points (VictoriaMetrics: 422 "too many points";
// Prometheus: 400 "exceeded maximum resolution").
func (e *APIError) tooManyPoints() bool {
	m := strings.ToLower(e.Message)
	return strings.Contains(m, "too many points") || strings.Contains(m, "exceeded maximum resolution") ||
		strings.Contains(m, "maxpointspertimeseries")
}

// Instant runs q.Expr at time at and writes each key's value into out (NaN
// for keys without a series). A key matched by two series is an error
// naming both label sets. Cancelling ctx aborts the request.
func (c *Client) Instant(ctx context.Context, q ports.Query, keys []string, at time.Time, out []float64) error {
	if len(out) != len(keys) {
		return fmt.Errorf("query %q: %d keys but room for %d values", q.Name, len(keys), len(out))
	}
	for i := range out {
		out[i] = math.NaN()
	}
	params := url.Values{"query": {q.Expr}, "time": {formatTime(at)}}
	m := c.matchers.matcher(keys)
	err := c.query(ctx, q, "/api/v1/query", params, func(body, host []byte, hasHost bool, labels []byte, pts []point) error {
		i, ok := m.match(host, hasHost, labels)
		if !ok || len(pts) == 0 {
			return nil
		}
		if err := m.claim(i, body, host, labels); err != nil {
			return err
		}
		out[i] = pts[len(pts)-1].V
		return nil
	})
	if err != nil {
		return err
	}
	if m.unmatched > 0 {
		c.log.DebugContext(ctx, "series without a target host ignored", "query", q.Name, "series", m.unmatched)
	}
	return nil
}

// Range runs q.Expr over [from, to] at step and returns each key's samples
// in time order (NaN points dropped; empty for keys without a series). It
// makes one request; when the server refuses it for too many points, it
// splits the range in two and asks again.
func (c *Client) Range(ctx context.Context, q ports.Query, keys []string, from, to time.Time, step time.Duration) ([]Samples, error) {
	if step <= 0 {
		return nil, fmt.Errorf("range query %q: step must be positive, got %s", q.Name, step)
	}
	out := make([]Samples, len(keys))
	err := c.rangeInto(ctx, q, keys, from, to, step, out)
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.tooManyPoints() && to.Sub(from) >= 2*step {
		c.log.InfoContext(ctx, "range refused for too many points, splitting in two", "query", q.Name)
		out = make([]Samples, len(keys))
		n := int64(to.Sub(from) / step)
		mid := from.Add(time.Duration(n/2) * step)
		if err = c.rangeInto(ctx, q, keys, from, mid, step, out); err == nil {
			err = c.rangeInto(ctx, q, keys, mid.Add(step), to, step, out)
		}
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// rangeInto appends each key's samples in [from, to] to out.
func (c *Client) rangeInto(ctx context.Context, q ports.Query, keys []string, from, to time.Time, step time.Duration, out []Samples) error {
	params := url.Values{
		"query": {q.Expr},
		"start": {formatTime(from)},
		"end":   {formatTime(to)},
		"step":  {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)},
	}
	m := c.matchers.matcher(keys)
	return c.query(ctx, q, "/api/v1/query_range", params, func(body, host []byte, hasHost bool, labels []byte, pts []point) error {
		i, ok := m.match(host, hasHost, labels)
		if !ok {
			return nil
		}
		if err := m.claim(i, body, host, labels); err != nil {
			return err
		}
		s := &out[i]
		for _, p := range pts {
			if !math.IsNaN(p.V) {
				s.Timestamps = append(s.Timestamps, p.T)
				s.Values = append(s.Values, p.V)
			}
		}
		return nil
	})
}

// keyMatcher maps result series to the caller's keys and catches a key
// matched twice.
type keyMatcher struct {
	index     map[string]int // shared, read-only
	seen      []bool
	label     string // the host label
	unmatched int
}

func (m *keyMatcher) hostLabel() string { return m.label }

func (m *keyMatcher) match(host []byte, hasHost bool, labels []byte) (int, bool) {
	if !hasHost {
		m.unmatched++
		return 0, false
	}
	i, ok := m.index[string(host)] // no allocation: map lookup by []byte conversion
	if !ok {
		m.unmatched++
	}
	return i, ok
}

// claim marks key i as answered; a second series for it is an error naming
// both label sets (the first one found again in body, off the hot path).
func (m *keyMatcher) claim(i int, body, host, labels []byte) error {
	if !m.seen[i] {
		m.seen[i] = true
		return nil
	}
	return fmt.Errorf("two series for one host: %s and %s", firstLabels(body, m.hostLabel(), host), compactLabels(labels))
}

// matcherCache keeps the index of the last key list: a rollout asks about
// the same hosts every tick, and building a 10,000-entry map each time
// would cost more than decoding the answer.
type matcherCache struct {
	mu        sync.Mutex
	keys      []string
	index     map[string]int
	hostLabel string
}

func (c *matcherCache) matcher(keys []string) *keyMatcher {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.index == nil || !slices.Equal(c.keys, keys) {
		c.keys = slices.Clone(keys)
		c.index = make(map[string]int, len(keys))
		for i, k := range keys {
			c.index[k] = i
		}
	}
	return &keyMatcher{index: c.index, seen: make([]bool, len(keys)), label: c.hostLabel}
}

// query sends one query (retrying once on a transient failure), decodes
// the answer and calls fn per series. Errors name the query.
func (c *Client) query(ctx context.Context, q ports.Query, path string, params url.Values,
	fn func(body, host []byte, hasHost bool, labels []byte, pts []point) error) error {
	u := *c.base
	u.Path += path
	for k, vs := range c.base.Query() {
		params[k] = append(params[k], vs...)
	}
	u.RawQuery = params.Encode()
	buf := c.bufs.Get().(*bytes.Buffer)
	defer c.bufs.Put(buf)

	var status int
	var err error
	for attempt := 0; ; attempt++ {
		status, err = c.send(ctx, u.String(), path, buf)
		if err == nil && !transientStatus(status) {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("query %q: %w", q.Name, ctx.Err())
		}
		if attempt > 0 || (err != nil && !transientNetError(err)) {
			break
		}
		c.log.WarnContext(ctx, "metrics query failed, retrying once", "query", q.Name, "url", c.redacted, "status", status, "error", err)
	}
	if err != nil {
		return fmt.Errorf("query %q: %w", q.Name, err)
	}

	body := buf.Bytes()
	resp, derr := decodeResponse(body, c.hostLabel, func(host []byte, hasHost bool, labels []byte, pts []point) error {
		return fn(body, host, hasHost, labels, pts)
	})
	if status/100 != 2 || resp.Status == "error" {
		apiErr := &APIError{StatusCode: status, Type: resp.ErrorType, Message: resp.Error}
		if apiErr.Message == "" && derr != nil { // not the API's JSON: a proxy's page
			apiErr.Message = snippet(buf.Bytes())
		}
		return fmt.Errorf("query %q on %s: %w", q.Name, c.redacted, apiErr)
	}
	if derr != nil {
		return fmt.Errorf("query %q on %s: %w", q.Name, c.redacted, derr)
	}
	if resp.Status != "success" {
		return fmt.Errorf("query %q on %s: response status %q, want success", q.Name, c.redacted, resp.Status)
	}
	return nil
}

// send makes one GET and reads the body into buf. The error never holds
// the URL's query string or credentials.
func (c *Client) send(ctx context.Context, rawURL, path string, buf *bytes.Buffer) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, fmt.Errorf("GET %s%s: %w", c.redacted, path, err)
	}
	defer resp.Body.Close()
	buf.Reset()
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return resp.StatusCode, fmt.Errorf("GET %s%s: read body: %w", c.redacted, path, err)
	}
	return resp.StatusCode, nil
}

// transientStatus is a gateway's answer that a second try may not get.
func transientStatus(status int) bool {
	return status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
}

// transientNetError reports a failure worth one more try: connection
// refused or reset, a timeout, or a connection closed mid-answer.
func transientNetError(err error) bool {
	var ne net.Error
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, io.EOF) || (errors.As(err, &ne) && ne.Timeout())
}

// snippet returns the start of a non-JSON body, on one line.
func snippet(body []byte) string {
	const max = 200
	s := strings.Join(strings.Fields(string(body[:min(len(body), max)])), " ")
	if len(body) > max {
		s += "..."
	}
	return s
}

// formatTime writes t as unix seconds with millisecond precision.
func formatTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', -1, 64)
}
