// Package nomad adapts Nomad to rollguard's ports and runs rollguard on
// Nomad: client-node discovery as targets, a StateStore and a lease lock on
// Nomad Variables (check-and-set), the rendering and registration of the
// periodic batch job that runs a rollout, and the allocation context a run
// reads from its environment.
//
// Every call goes through Client, which always sets the caller's context on
// the request options. The client starts from api.DefaultConfig(), so
// NOMAD_ADDR, NOMAD_TOKEN, NOMAD_NAMESPACE, NOMAD_REGION, NOMAD_CACERT and
// the other NOMAD_* variables work as they do for the nomad CLI. The token
// is sent as a header by the library and never appears in rollguard's
// errors or logs, not even when a server echoes it in an error answer
// (the library quotes those answers).
package nomad

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/rollguard/rollguard/integrations/redact"
)

// Client is a Nomad API client whose every call carries a context.
type Client struct {
	api    *api.Client
	logger *slog.Logger
}

// New returns a client configured by cfg, or by api.DefaultConfig() (the
// NOMAD_* environment variables) when cfg is nil. A nil logger discards.
//
// Whatever the address (http://, https://, or unix:// as a task's
// workload-identity API socket is given), the HTTP client's transport
// redacts the token from error answers: New builds the client that
// api.NewClient would (for a unix address, one that dials the socket),
// and wraps a copy of a client given in cfg rather than leaving it bare.
func New(cfg *api.Config, logger *slog.Logger) (*Client, error) {
	if cfg == nil {
		cfg = api.DefaultConfig()
	}
	if cfg.HttpClient == nil {
		hc, err := httpClient(cfg)
		if err != nil {
			return nil, fmt.Errorf("nomad client for %s: %w", cfg.Address, err)
		}
		cfg.HttpClient = hc
	} else {
		hc := *cfg.HttpClient
		cfg.HttpClient = &hc
	}
	secrets := []string{cfg.SecretID}
	if cfg.HttpAuth != nil {
		secrets = append(secrets, cfg.HttpAuth.Password)
	}
	cfg.HttpClient = redact.Client(cfg.HttpClient, secrets...)
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("nomad client for %s: %w", cfg.Address, err)
	}
	return FromAPI(c, logger), nil
}

// httpClient is the HTTP client api.NewClient would make for cfg: TLS 1.2
// at least, HTTP/1, cfg.TLSConfig; for a unix:// address, every
// connection dials the socket (api.NewClient's requests then go to
// http://127.0.0.1 over it).
func httpClient(cfg *api.Config) (*http.Client, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSHandshakeTimeout = 10 * time.Second
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	t.ForceAttemptHTTP2 = false
	if strings.HasPrefix(cfg.Address, "unix:") {
		u, err := url.Parse(cfg.Address)
		if err != nil {
			return nil, fmt.Errorf("address: %w", err)
		}
		socket := u.Path
		if socket == "" {
			socket = u.Opaque // unix:api.sock, a relative path
		}
		if socket == "" {
			return nil, errors.New("a unix:// address needs the socket's path")
		}
		t.Proxy = nil
		t.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}
	}
	hc := &http.Client{Transport: t}
	if err := api.ConfigureTLS(hc, cfg.TLSConfig); err != nil {
		return nil, err
	}
	return hc, nil
}

// FromAPI wraps an existing api.Client. A nil logger discards.
func FromAPI(c *api.Client, logger *slog.Logger) *Client {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Client{api: c, logger: logger}
}

// query returns q (or new options) bound to ctx. Every read goes through it.
func query(ctx context.Context, q *api.QueryOptions) *api.QueryOptions {
	if q == nil {
		q = &api.QueryOptions{}
	}
	return q.WithContext(ctx)
}

// write returns w (or new options) bound to ctx. Every write goes through it.
func write(ctx context.Context, w *api.WriteOptions) *api.WriteOptions {
	if w == nil {
		w = &api.WriteOptions{}
	}
	return w.WithContext(ctx)
}
