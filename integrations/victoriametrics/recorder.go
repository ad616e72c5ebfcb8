package victoriametrics

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rollguard/rollguard/ports"
)

// Recorder wraps a ports.MetricsSource and remembers every value the run
// saw: Instant results at the query time (NaN as a missing value), Range
// results at their samples' times. WriteTo and Close write them in
// the export format, one line per series, so that a Replay of the file
// answers the run's queries with the values the run saw.
//
// It is safe for concurrent use.
type Recorder struct {
	src       ports.MetricsSource
	hostLabel string
	out       io.Writer

	mu sync.Mutex
	// samples maps name, then host, to the times and values seen.
	samples map[string]map[string]map[int64]float64
}

var _ ports.MetricsSource = (*Recorder)(nil)

// NewRecorder records what src answers, keyed by hostLabel (default
// DefaultHostLabel). Close writes the recording to out (nil: Close only
// discards) and closes out when it is an io.Closer.
func NewRecorder(src ports.MetricsSource, hostLabel string, out io.Writer) *Recorder {
	if hostLabel == "" {
		hostLabel = DefaultHostLabel
	}
	return &Recorder{src: src, hostLabel: hostLabel, out: out, samples: map[string]map[string]map[int64]float64{}}
}

// CreateRecorder is NewRecorder writing to the file at path, gzip-compressed
// when path ends in ".gz". The file is created now, so that a path that
// cannot be written fails before the run starts.
func CreateRecorder(src ports.MetricsSource, hostLabel, path string) (*Recorder, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create recording: %w", err)
	}
	var out io.WriteCloser = f
	if strings.HasSuffix(path, ".gz") {
		out = &gzipFile{Writer: gzip.NewWriter(f), f: f}
	}
	return NewRecorder(src, hostLabel, out), nil
}

type gzipFile struct {
	*gzip.Writer
	f *os.File
}

func (g *gzipFile) Close() error {
	return errors.Join(g.Writer.Close(), g.f.Close())
}

// Instant queries the wrapped source and records the values it returned at
// time at. A NaN is recorded as a missing value (null), so that a replay
// does not carry an earlier value over a tick that saw none.
func (r *Recorder) Instant(ctx context.Context, q ports.Query, keys []string, at time.Time, out []float64) error {
	if err := r.src.Instant(ctx, q, keys, at, out); err != nil {
		return err
	}
	atMs := at.UnixMilli()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, key := range keys {
		r.add(q.Name, key, atMs, out[i])
	}
	return nil
}

// Range queries the wrapped source and records the samples it returned.
func (r *Recorder) Range(ctx context.Context, q ports.Query, keys []string, from, to time.Time, step time.Duration) ([]Samples, error) {
	samples, err := r.src.Range(ctx, q, keys, from, to, step)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, key := range keys {
		for j, t := range samples[i].Timestamps {
			r.add(q.Name, key, t, samples[i].Values[j])
		}
	}
	return samples, nil
}

func (r *Recorder) add(name, key string, t int64, v float64) {
	byHost := r.samples[name]
	if byHost == nil {
		byHost = map[string]map[int64]float64{}
		r.samples[name] = byHost
	}
	byTime := byHost[key]
	if byTime == nil {
		byTime = map[int64]float64{}
		byHost[key] = byTime
	}
	byTime[t] = v
}

// WriteTo writes everything recorded so far in the export format: one line
// per series, sorted by name then host, samples in time order.
func (r *Recorder) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	bw := bufio.NewWriter(w)
	var n int64
	var line []byte
	for _, name := range slices.Sorted(mapKeys(r.samples)) {
		byHost := r.samples[name]
		for _, host := range slices.Sorted(mapKeys(byHost)) {
			byTime := byHost[host]
			if !hasValue(byTime) {
				continue // a host the source never had: no series
			}
			times := slices.Sorted(mapKeys(byTime))
			line = appendExportLine(line[:0], name, r.hostLabel, host, times, byTime)
			if _, err := bw.Write(line); err != nil {
				return n, fmt.Errorf("write recording: %w", err)
			}
			n += int64(len(line))
		}
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("write recording: %w", err)
	}
	return n, nil
}

// Close writes the recording to the writer given to NewRecorder and closes
// that writer when it is an io.Closer.
func (r *Recorder) Close() error {
	if r.out == nil {
		return nil
	}
	_, err := r.WriteTo(r.out)
	if c, ok := r.out.(io.Closer); ok {
		err = errors.Join(err, c.Close())
	}
	return err
}

func hasValue(byTime map[int64]float64) bool {
	for _, v := range byTime {
		if !math.IsNaN(v) {
			return true
		}
	}
	return false
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// appendExportLine appends one export-format line for a two-label series.
func appendExportLine(b []byte, name, hostLabel, host string, times []int64, byTime map[int64]float64) []byte {
	b = append(b, `{"metric":{"__name__":`...)
	b = strconv.AppendQuote(b, name)
	b = append(b, ',')
	b = strconv.AppendQuote(b, hostLabel)
	b = append(b, ':')
	b = strconv.AppendQuote(b, host)
	b = append(b, `},"values":[`...)
	for i, t := range times {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendExportValue(b, byTime[t])
	}
	b = append(b, `],"timestamps":[`...)
	for i, t := range times {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, t, 10)
	}
	return append(b, "]}\n"...)
}

// appendExportValue writes v as VictoriaMetrics' export does: a number, or
// a string for the infinities, which JSON cannot hold.
func appendExportValue(b []byte, v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(v, -1):
		return append(b, `"-Infinity"`...)
	case math.IsNaN(v):
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}
