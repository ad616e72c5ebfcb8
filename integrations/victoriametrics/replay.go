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
//
// Each series is read as a Prometheus-compatible server reads it: at a
// time t, its latest sample in (t-lookback, t], none after a missing
// value. Its lookback is ReplayOptions.Lookback, or twice the series'
// Resolution when that is longer, so that a series recorded less often
// than the queries ask (an export at a 1-minute scrape interval, polled
// every 15 s) repeats its last sample between two samples, as a live
// query does, instead of reading as no data there.
type Replay struct {
	// series maps a query name, then a host label value, to its series.
	series map[string]map[string]replayed
}

// replayed is a series and its lookback in milliseconds.
type replayed struct {
	*Series
	lookback int64
}

// latest is the value the series has at t (unix ms): its latest sample
// in (t-lookback, t], NaN when there is none or when it is a missing
// value. j is the index of the first sample after t.
func (s replayed) latest(t int64, j int) float64 {
	if j > 0 && s.Timestamps[j-1] > t-s.lookback {
		return s.Values[j-1] // NaN for a missing value
	}
	return math.NaN()
}

var _ ports.MetricsSource = (*Replay)(nil)

// NewReplay indexes rec by name and rec.HostLabel. Two series with the same
// name and host (differing in another label) are an error naming both.
// Series without the host label are ignored.
func NewReplay(rec *Recording, opts ReplayOptions) (*Replay, error) {
	if opts.Lookback <= 0 {
		opts.Lookback = DefaultLookback
	}
	r := &Replay{series: map[string]map[string]replayed{}}
	for _, s := range rec.Series {
		host, ok := s.Labels[rec.HostLabel]
		if !ok {
			continue
		}
		byHost := r.series[s.Name()]
		if byHost == nil {
			byHost = map[string]replayed{}
			r.series[s.Name()] = byHost
		}
		if prev, ok := byHost[host]; ok {
			return nil, fmt.Errorf("recording has two series for %s %s=%q: %s and %s",
				s.Name(), rec.HostLabel, host, formatLabels(prev.Labels), formatLabels(s.Labels))
		}
		byHost[host] = replayed{Series: s, lookback: max(opts.Lookback, 2*s.Resolution()).Milliseconds()}
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
	byHost := r.series[q.Name]
	for i, key := range keys {
		out[i] = math.NaN()
		s, ok := byHost[key]
		if !ok {
			continue
		}
		j := sort.Search(len(s.Timestamps), func(k int) bool { return s.Timestamps[k] > atMs })
		out[i] = s.latest(atMs, j)
	}
	return nil
}

// Range returns, for each key, q.Name at every step from from to to,
// each point what Instant would answer then (a range query is an instant
// query at every step): points without a value are left out, so a gap
// stays a gap. Empty for a key without a series. The points are counted
// back from to, so that the last is at to: a baseline ending just before
// a change holds the latest sample before it, and a recording with a
// sample every step (what run --record writes) gives back its samples in
// [from, to].
func (r *Replay) Range(ctx context.Context, q ports.Query, keys []string, from, to time.Time, step time.Duration) ([]Samples, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("replay range query %q: %w", q.Name, err)
	}
	if step <= 0 {
		return nil, fmt.Errorf("replay range query %q: step must be positive, got %s", q.Name, step)
	}
	fromMs, toMs, stepMs := from.UnixMilli(), to.UnixMilli(), max(step.Milliseconds(), 1)
	byHost := r.series[q.Name]
	out := make([]Samples, len(keys))
	if toMs < fromMs { // an empty window
		return out, nil
	}
	start := toMs - (toMs-fromMs)/stepMs*stepMs
	for i, key := range keys {
		s, ok := byHost[key]
		if !ok {
			continue
		}
		// j is the first sample after t; it only moves forward.
		j := sort.Search(len(s.Timestamps), func(k int) bool { return s.Timestamps[k] > start })
		for t := start; t <= toMs; t += stepMs {
			for j < len(s.Timestamps) && s.Timestamps[j] <= t {
				j++
			}
			if v := s.latest(t, j); !math.IsNaN(v) {
				out[i].Timestamps = append(out[i].Timestamps, t)
				out[i].Values = append(out[i].Values, v)
			}
		}
	}
	return out, nil
}
