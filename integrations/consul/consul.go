// Package consul adapts Consul to rollguard's ports: target discovery through
// the health API, a StateStore on the KV store (check-and-set through the
// transaction API) and a Locker on a session lock.
//
// Every call goes through Client, which always sets the caller's context on
// the request options, so a cancelled run never leaves a request hanging.
// The client starts from api.DefaultConfig(), so CONSUL_HTTP_ADDR,
// CONSUL_HTTP_TOKEN, CONSUL_CACERT and the other CONSUL_* variables work as
// they do for the consul CLI. The token is sent as a header by the library;
// it never appears in rollguard's errors or logs, not even when a server
// echoes it in an error answer (the library quotes those answers).
package consul

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/hashicorp/consul/api"

	"github.com/rollguard/rollguard/integrations/redact"
)

// Client is a Consul API client whose every call carries a context.
type Client struct {
	api    *api.Client
	logger *slog.Logger
}

// New returns a client configured by cfg, or by api.DefaultConfig() (the
// CONSUL_* environment variables) when cfg is nil. A nil logger discards.
func New(cfg *api.Config, logger *slog.Logger) (*Client, error) {
	if cfg == nil {
		cfg = api.DefaultConfig()
	}
	c, err := api.NewClient(cfg)
	if err != nil {
		// The config's address is not secret, its token is: name the address only.
		return nil, fmt.Errorf("consul client for %s: %w", cfg.Address, err)
	}
	// NewClient has read the token (from a CONSUL_HTTP_TOKEN_FILE too)
	// and made the HTTP client it uses.
	redact.Client(cfg.HttpClient, cfg.Token)
	return FromAPI(c, logger), nil
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
