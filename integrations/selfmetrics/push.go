package selfmetrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/rollguard/rollguard/integrations/redact"
)

// pushTimeout bounds one push, so that a store that does not answer
// delays the end of a run by at most this.
const pushTimeout = 10 * time.Second

// Pusher pushes a run's metrics to one URL in Prometheus text format
// (gzip-compressed POST), e.g. VictoriaMetrics'
// http://host:8428/api/v1/import/prometheus. The URL may hold a
// credential: messages only ever name scheme://host/….
type Pusher struct {
	m        *Metrics
	url      string
	redacted string
	log      *slog.Logger
}

// CheckURL checks a push URL (http or https, with a host) and returns
// it redacted for messages (scheme://host/…). A caller checks it before
// it changes anything; NewPusher checks it again.
func CheckURL(rawURL string) (redacted string, err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", errors.New("push-metrics URL is malformed")
	}
	redacted = redact.URL(u)
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("push-metrics URL %s: scheme must be http or https", redacted)
	}
	if u.Host == "" {
		return "", fmt.Errorf("push-metrics URL %s: no host", redacted)
	}
	return redacted, nil
}

// NewPusher checks the URL (CheckURL) and returns a pusher of m to it.
// log receives failed periodic pushes (nil: discarded).
func NewPusher(m *Metrics, rawURL string, log *slog.Logger) (*Pusher, error) {
	redacted, err := CheckURL(rawURL)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Pusher{m: m, url: rawURL, redacted: redacted, log: log}, nil
}

func (p *Pusher) options() *metrics.PushOptions {
	return &metrics.PushOptions{
		Method: "POST",
		LogErr: func(format string, args ...any) {
			p.log.Warn("pushing rollguard's metrics failed", "url", p.redacted, "error", p.clean(fmt.Sprintf(format, args...)))
		},
	}
}

// Start pushes the metrics every interval until ctx is cancelled; a failed
// push is logged and retried at the next interval. Cancelling ctx stops
// the pushes (call Push for a last one).
func (p *Pusher) Start(ctx context.Context, interval time.Duration) error {
	if err := p.m.set.InitPushWithOptions(ctx, p.url, interval, p.options()); err != nil {
		return errors.New(p.clean(err.Error()))
	}
	return nil
}

// Push pushes the metrics once, within pushTimeout. Cancelling ctx aborts
// the request.
func (p *Pusher) Push(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, pushTimeout)
	defer cancel()
	if err := p.m.set.PushMetrics(ctx, p.url, p.options()); err != nil {
		return fmt.Errorf("push rollguard's metrics to %s: %s", p.redacted, p.clean(err.Error()))
	}
	if err := ctx.Err(); err != nil {
		// The library reports a cancelled request as a success.
		return fmt.Errorf("push rollguard's metrics to %s: %w", p.redacted, err)
	}
	return nil
}

// clean replaces the URL, as the library prints it, with its redacted
// form.
func (p *Pusher) clean(msg string) string {
	if u, err := url.Parse(p.url); err == nil {
		msg = strings.ReplaceAll(msg, u.Redacted(), p.redacted)
		msg = strings.ReplaceAll(msg, u.String(), p.redacted)
	}
	return strings.ReplaceAll(msg, p.url, p.redacted)
}
