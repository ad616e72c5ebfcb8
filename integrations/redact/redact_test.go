package redact

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// An error answer has the secrets replaced; a successful one (data, such
// as a KV value) is passed as it came.
func TestTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ok" {
			io.WriteString(w, "value tok3n")
			return
		}
		http.Error(w, "denied for tok3n and tok3n", http.StatusForbidden)
	}))
	t.Cleanup(srv.Close)
	c := Client(&http.Client{}, "", "tok3n")
	for path, want := range map[string]string{"/ok": "value tok3n", "/denied": "denied for [redacted] and [redacted]\n"} {
		resp, err := c.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(body) != want {
			t.Errorf("%s: %q, %v; want %q", path, body, err, want)
		}
	}
}
