package victoriametrics

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/rollguard/rollguard/ports"
)

// DefaultLookback is how far back an instant query looks for the latest
// sample, like Prometheus' default lookback delta.
const DefaultLookback = 5 * time.Minute

// Samples is one host's samples from a range query, in time order.
type Samples = ports.Samples

// ReplayOptions tune a Replay.
type ReplayOptions struct {
	// Lookback is how far back Instant looks for the latest sample
	// (default DefaultLookback).
	Lookback time.Duration
}

// Replay answers queries from a Recording: it implements
// ports.MetricsSource for dry runs. A query is looked up by its Name (the
// recording's __name__), never by its expression; a host by the value of
// the recording's HostLabel. It is safe for concurrent use.
type Replay struct {
	lookback time.Duration
	// series maps a query name, then a host label value, to its series.
	series map[string]map[string]*Series
}

var _ ports.MetricsSource = (*Replay)(nil)

// NewReplay indexes rec by name and rec.HostLabel. Two series with the same
// name and host (differing in another label) are an error naming both.
// Series without the host label are ignored.
func NewReplay(rec *Recording, opts ReplayOptions) (*Replay, error) {
	if opts.Lookback <= 0 {
		opts.Lookback = DefaultLookback
	}
	r := &Replay{lookback: opts.Lookback, series: map[string]map[string]*Series{}}
	for _, s := range rec.Series {
		host, ok := s.Labels[rec.HostLabel]
		if !ok {
			continue
		}
		byHost := r.series[s.Name()]
		if byHost == nil {
			byHost = map[string]*Series{}
			r.series[s.Name()] = byHost
		}
		if prev := byHost[host]; prev != nil {
			return nil, fmt.Errorf("recording has two series for %s %s=%q: %s and %s",
				s.Name(), rec.HostLabel, host, formatLabels(prev.Labels), formatLabels(s.Labels))
		}
		byHost[host] = s
	}
	return r, nil
}

// Instant writes, for each key, the latest sample of q.Name in
// (at-lookback, at], NaN when there is none or when a missing value
// (a staleness marker) follows it. It does no I/O; ctx is only
// checked for cancellation.
func (r *Replay) Instant(ctx context.Context, q ports.Query, keys []string, at time.Time, out []float64) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("replay query %q: %w", q.Name, err)
	}
	if len(out) != len(keys) {
		return fmt.Errorf("replay query %q: %d keys but room for %d values", q.Name, len(keys), len(out))
	}
	atMs := at.UnixMilli()
	fromMs := at.Add(-r.lookback).UnixMilli()
	byHost := r.series[q.Name]
	for i, key := range keys {
		out[i] = math.NaN()
		s := byHost[key]
		if s == nil {
			continue
		}
		// j is the first sample after at; j-1 the latest at or before it.
		j := sort.Search(len(s.Timestamps), func(k int) bool { return s.Timestamps[k] > atMs })
		if j > 0 && s.Timestamps[j-1] > fromMs {
			out[i] = s.Values[j-1]
		}
	}
	return nil
}

// Range returns, for each key, the samples of q.Name with from <= t <= to
// (empty where there are none), missing values left out. The recording is
// not resampled: step is ignored.
func (r *Replay) Range(ctx context.Context, q ports.Query, keys []string, from, to time.Time, _ time.Duration) ([]Samples, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("replay range query %q: %w", q.Name, err)
	}
	fromMs, toMs := from.UnixMilli(), to.UnixMilli()
	byHost := r.series[q.Name]
	out := make([]Samples, len(keys))
	for i, key := range keys {
		s := byHost[key]
		if s == nil {
			continue
		}
		lo := sort.Search(len(s.Timestamps), func(k int) bool { return s.Timestamps[k] >= fromMs })
		hi := sort.Search(len(s.Timestamps), func(k int) bool { return s.Timestamps[k] > toMs })
		for j := lo; j < hi; j++ {
			if !math.IsNaN(s.Values[j]) {
				out[i].Timestamps = append(out[i].Timestamps, s.Timestamps[j])
				out[i].Values = append(out[i].Values, s.Values[j])
			}
		}
	}
	return out, nil
}
