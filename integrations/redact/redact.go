// Package redact keeps the tokens rollguard sends (Consul and Nomad ACL
// tokens) out of what it prints: the Consul and Nomad API clients put the
// body of an error answer into their errors verbatim, and a server or a
// proxy in front of it may echo the request's token there.
package redact

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
)

// Mask replaces a secret in an answer.
const Mask = "[redacted]"

// URL keeps what identifies a destination and drops what may be a
// credential (user info, path, query): scheme://host/… ("?" for a
// missing scheme).
func URL(u *url.URL) string {
	scheme := u.Scheme
	if scheme == "" {
		scheme = "?"
	}
	return scheme + "://" + u.Host + "/…"
}

// Worth says whether s is long enough to be a secret worth taking out of
// a message: a value shorter than 4 characters (a tenant "1", ?v=1) is no
// secret, and taking it out would garble the rest ("code 4041" would read
// "code …0…1").
func Worth(s string) bool { return len(s) >= 4 }

// maxErrorBody is how much of an error answer is read to redact it; the
// API clients print a few hundred bytes at most.
const maxErrorBody = 1 << 20

// Transport is an http.RoundTripper that replaces each of secrets (the
// empty ones are ignored) by Mask in the body of every answer whose
// status is 400 or more. Successful answers pass untouched: their bodies
// are data (a KV value), not messages.
type Transport struct {
	Next    http.RoundTripper
	Secrets []string
}

// RoundTrip sends req through Next and redacts an error answer's body.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.Next.RoundTrip(req)
	if err != nil || resp.StatusCode < 400 || !t.any() {
		return resp, err
	}
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	resp.Body.Close()
	for _, s := range t.Secrets {
		if s != "" {
			body = bytes.ReplaceAll(body, []byte(s), []byte(Mask))
		}
	}
	if rerr != nil {
		body = append(body, "… (answer cut short)"...)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Del("Content-Length")
	return resp, nil
}

func (t *Transport) any() bool {
	for _, s := range t.Secrets {
		if s != "" {
			return true
		}
	}
	return false
}

// Client wraps c's transport (http.DefaultTransport when nil) in a
// Transport that redacts secrets, in place, and returns c.
func Client(c *http.Client, secrets ...string) *http.Client {
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	c.Transport = &Transport{Next: next, Secrets: secrets}
	return c
}
