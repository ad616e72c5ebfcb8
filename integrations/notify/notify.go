// Package notify sends rollguard's alerts: a JSON webhook, a Slack incoming
// webhook, Alertmanager's v2 API and GitHub workflow annotations. New builds
// one ports.Alerter that fans an alert out to every configured destination
// whose event list includes it.
//
// Webhook and Slack URLs are secrets (the path is the credential) and an
// Alertmanager URL may carry basic-auth credentials: no error or log line
// ever holds more of a URL than scheme://host/….
package notify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/rollguard/rollguard/integrations/redact"
	"github.com/rollguard/rollguard/ports"
)

// Destination types: the list is ports.AlertTypes().
const (
	TypeWebhook      = ports.AlertWebhook
	TypeSlack        = ports.AlertSlack
	TypeAlertmanager = ports.AlertAlertmanager
	TypeGitHub       = ports.AlertGitHub
)

// AlertConfig is one destination (the spec's alerts[] entry).
type AlertConfig struct {
	// Type is webhook | slack | alertmanager | github.
	Type string
	// URL is the webhook's or Slack webhook's URL, or Alertmanager's base
	// URL (http://am:9093; /api/v2/alerts is appended unless present).
	// A github destination takes none. Secret: never logged.
	URL string
	// On lists the events to send (default ports.DefaultEvents()).
	On []string
}

// Options tune every destination. The zero value is usable.
type Options struct {
	// HTTPClient sends the requests (default: a new http.Client; its own
	// Timeout, if any, still applies).
	HTTPClient *http.Client
	// Timeout bounds one delivery attempt (default 10s).
	Timeout time.Duration
	// RetryDelay is the pause before the single retry that follows a 5xx
	// answer or a network error (default 1s).
	RetryDelay time.Duration
	// Annotations receives the GitHub workflow commands (default
	// os.Stdout, where the Actions runner reads them).
	Annotations io.Writer
	// Clock gives the time of alerts sent without At and waits before a
	// retry (default: the wall clock).
	Clock ports.Clock
	// Logger receives one line per delivery (default: discard).
	Logger *slog.Logger
	// UserAgent is sent with every request (default "rollguard").
	UserAgent string
}

// sender delivers one alert to one destination.
type sender interface {
	send(ctx context.Context, a ports.Alert) error
}

// destination is one configured sender and the events it wants.
type destination struct {
	index int
	typ   string
	// name is what errors and logs call it: the type and the redacted URL.
	name string
	on   []string
	s    sender
}

// Fanout sends each alert to every destination that wants its event.
type Fanout struct {
	dests  []destination
	clock  ports.Clock
	logger *slog.Logger
}

var _ ports.Alerter = (*Fanout)(nil)

// New checks every destination and builds the fan-out. All problems are
// reported at once (unknown type, missing or malformed URL, unknown
// event); no error holds a URL's secret part.
func New(cfg []AlertConfig, opts Options) (ports.Alerter, error) {
	return newFanout(cfg, opts)
}

func newFanout(cfg []AlertConfig, opts Options) (*Fanout, error) {
	opts = opts.withDefaults()
	p := &poster{
		client:     opts.HTTPClient,
		timeout:    opts.Timeout,
		retryDelay: opts.RetryDelay,
		clock:      opts.Clock,
		userAgent:  opts.UserAgent,
	}
	var errs []error
	f := &Fanout{clock: opts.Clock, logger: opts.Logger}
	var ghMu sync.Mutex // one writer shared by every github destination
	for i, c := range cfg {
		d := destination{index: i, typ: c.Type, on: c.On}
		if len(d.on) == 0 {
			d.on = ports.DefaultEvents()
		}
		for _, ev := range d.on {
			if !slices.Contains(ports.Events(), ev) {
				errs = append(errs, fmt.Errorf("alerts[%d] (%s): unknown event %q (want one of %v)", i, c.Type, ev, ports.Events()))
			}
		}
		var u *url.URL
		if c.Type != TypeGitHub {
			var err error
			u, err = parseURL(c.URL)
			if err != nil {
				errs = append(errs, fmt.Errorf("alerts[%d] (%s): %w", i, c.Type, err))
			}
		}
		switch c.Type {
		case TypeWebhook:
			if u != nil {
				d.name = "webhook " + redact.URL(u)
				d.s = &webhook{url: u, post: p}
			}
		case TypeSlack:
			if u != nil {
				d.name = "slack " + redact.URL(u)
				d.s = &slack{url: u, post: p}
			}
		case TypeAlertmanager:
			if u != nil {
				d.name = "alertmanager " + redact.URL(u)
				d.s = &alertmanager{url: alertmanagerEndpoint(u), post: p}
			}
		case TypeGitHub:
			if c.URL != "" {
				errs = append(errs, fmt.Errorf("alerts[%d] (github): a github destination writes workflow annotations and takes no url", i))
			}
			d.name = "github annotations"
			d.s = &annotations{w: opts.Annotations, mu: &ghMu}
		default:
			errs = append(errs, fmt.Errorf("alerts[%d]: unknown type %q (want webhook, slack, alertmanager or github)", i, c.Type))
		}
		if d.s != nil {
			f.dests = append(f.dests, d)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return f, nil
}

func (o Options) withDefaults() Options {
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = time.Second
	}
	if o.Annotations == nil {
		o.Annotations = os.Stdout
	}
	if o.Clock == nil {
		o.Clock = ports.WallClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.UserAgent == "" {
		o.UserAgent = "rollguard"
	}
	return o
}

// Send delivers a to every destination whose On list has a.Event, all at
// once, and waits for them. One failing destination does not stop the
// others; the error joins every failure, in configuration order, each
// naming its destination (redacted). Cancelling ctx aborts the deliveries
// in flight; their errors wrap ctx.Err().
func (f *Fanout) Send(ctx context.Context, a ports.Alert) error {
	if !slices.Contains(ports.Events(), a.Event) {
		return fmt.Errorf("alert for rollout %q: unknown event %q", a.Rollout, a.Event)
	}
	if a.At.IsZero() {
		a.At = f.clock.Now()
	}
	errs := make([]error, len(f.dests))
	var wg sync.WaitGroup
	for i, d := range f.dests {
		if !slices.Contains(d.on, a.Event) {
			continue
		}
		wg.Go(func() {
			err := d.s.send(ctx, a)
			switch {
			case err == nil:
				f.logger.Info("alert sent", "event", a.Event, "rollout", a.Rollout, "wave", a.Wave, "destination", d.name)
			case ctx.Err() != nil:
				f.logger.Debug("alert cancelled", "event", a.Event, "rollout", a.Rollout, "destination", d.name)
			default:
				f.logger.Warn("alert failed", "event", a.Event, "rollout", a.Rollout, "destination", d.name, "err", err)
			}
			if err != nil {
				errs[i] = fmt.Errorf("alert %s for rollout %q to alerts[%d] %s: %w", a.Event, a.Rollout, d.index, d.name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// parseURL checks a destination URL without ever echoing it: url.Parse's
// own errors quote the whole input.
func parseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("url is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("url is malformed")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("url %s: scheme must be http or https", redact.URL(u))
	}
	if u.Host == "" {
		return nil, fmt.Errorf("url %s: no host", redact.URL(u))
	}
	return u, nil
}
