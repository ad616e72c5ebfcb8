package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rollguard/rollguard/integrations/redact"
	"github.com/rollguard/rollguard/ports"
)

// poster POSTs JSON with a per-attempt timeout and one retry on a 5xx
// answer or a network error.
type poster struct {
	client     *http.Client
	timeout    time.Duration
	retryDelay time.Duration
	clock      ports.Clock
	userAgent  string
}

// statusError is a non-2xx answer.
type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string {
	if e.body == "" {
		return fmt.Sprintf("HTTP %d", e.code)
	}
	return fmt.Sprintf("HTTP %d: %s", e.code, e.body)
}

// post sends body to u. header adds to Content-Type and User-Agent.
// Cancelling ctx aborts the attempt or the pause before the retry.
func (p *poster) post(ctx context.Context, u *url.URL, body []byte, header http.Header) error {
	err := p.attempt(ctx, u, body, header)
	if err == nil || !retryable(ctx, err) {
		return err
	}
	if serr := p.clock.Sleep(ctx, p.retryDelay); serr != nil {
		return fmt.Errorf("%w (retry abandoned: %w)", err, serr)
	}
	if err2 := p.attempt(ctx, u, body, header); err2 != nil {
		return fmt.Errorf("after a retry: %w (first attempt: %v)", err2, err)
	}
	return nil
}

func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	var se *statusError
	if errors.As(err, &se) {
		return se.code >= 500
	}
	return true // network error or the attempt's own timeout
}

func (p *poster) attempt(ctx context.Context, u *url.URL, body []byte, header http.Header) error {
	actx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return errors.New("cannot build the request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", p.userAgent)
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := p.client.Do(req)
	if err != nil {
		// *url.Error quotes the whole URL: keep only what went wrong.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no answer within %s: %w", p.timeout, err)
		}
		return scrubErr(u, err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
	if resp.StatusCode/100 == 2 {
		return nil
	}
	return &statusError{code: resp.StatusCode, body: scrub(u, oneLine(string(snippet), 200))}
}

// scrub removes u's secret parts from s, in case an answer or an error
// echoes them: the whole URL, its path and query, and each of their
// parts alone (a hook's token, a ?token= value), but for the words that
// name an endpoint (endpointWords).
func scrub(u *url.URL, s string) string {
	secrets := []string{u.String(), u.RawQuery}
	if u.Path != "" && u.Path != "/" {
		secrets = append(secrets, u.EscapedPath(), u.Path)
	}
	if pw, ok := u.User.Password(); ok && pw != "" {
		secrets = append(secrets, pw)
	}
	for _, part := range strings.Split(u.Path, "/") {
		if redact.Worth(part) && !endpointWord(part) {
			secrets = append(secrets, part)
		}
	}
	for _, vs := range u.Query() {
		for _, v := range vs {
			if redact.Worth(v) {
				secrets = append(secrets, v)
			}
		}
	}
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "…")
		}
	}
	return s
}

// endpointWords name the endpoints of the services alerts go to
// (Slack's /services/, Alertmanager's /api/v2/alerts): they are the
// parts of a path that are not secret, and an answer that names them
// stays readable.
var endpointWords = map[string]bool{"alerts": true, "services": true, "hooks": true, "hook": true, "webhooks": true, "webhook": true}

func endpointWord(part string) bool {
	return endpointWords[strings.ToLower(part)]
}

// scrubErr keeps err's chain (errors.Is still sees ctx errors) but not its
// message when the message holds a secret part of u.
func scrubErr(u *url.URL, err error) error {
	msg := err.Error()
	if clean := scrub(u, msg); clean != msg {
		return &scrubbed{msg: clean, err: err}
	}
	return err
}

type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }

// oneLine trims s to one line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}
