package victoriametrics

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rollguard/rollguard/policies"
)

// NameLabel is the label holding a series' metric name; in a recording it is
// the query's name in the spec.
const NameLabel = "__name__"

// DefaultHostLabel is the host label assumed when a recording does not
// reveal one (see Recording.HostLabel).
const DefaultHostLabel = "instance"

// Series is one recorded series: a label set and its samples, sorted by
// time.
type Series struct {
	// Labels is the full label set, __name__ included.
	Labels map[string]string
	// Timestamps are unix milliseconds, strictly increasing.
	Timestamps []int64
	// Values[i] is the value at Timestamps[i]. NaN (null or NaN in the
	// file) is a missing value: it is no sample, but like Prometheus'
	// staleness marker it ends the previous sample's lookback, so that a
	// recorded run that saw no data replays as no data.
	Values []float64
}

// Name returns the series' metric name (its __name__ label).
func (s *Series) Name() string { return s.Labels[NameLabel] }

// Resolution is the series' usual time between two samples: the median of
// the gaps between consecutive timestamps, missing values included (a
// scraper writes one when a scrape fails); 0 with fewer than two.
func (s *Series) Resolution() time.Duration {
	if len(s.Timestamps) < 2 {
		return 0
	}
	gaps := make([]int64, len(s.Timestamps)-1)
	for i := range gaps {
		gaps[i] = s.Timestamps[i+1] - s.Timestamps[i]
	}
	return time.Duration(medianInt(gaps)) * time.Millisecond
}

// Resolution is the usual time between two samples of the series named
// name: the median of their Resolutions (0 when none has two samples).
func (r *Recording) Resolution(name string) time.Duration {
	var res []int64
	for _, s := range r.Series {
		if s.Name() == name {
			if d := s.Resolution(); d > 0 {
				res = append(res, int64(d))
			}
		}
	}
	if len(res) == 0 {
		return 0
	}
	return time.Duration(medianInt(res))
}

// medianInt is the lower median of xs (not empty), which it sorts.
func medianInt(xs []int64) int64 {
	slices.Sort(xs)
	return xs[(len(xs)-1)/2]
}

// Recording is a set of series read from an export file.
type Recording struct {
	// Series are in the order of their first line in the file.
	Series []*Series
	// HostLabel is the label the recording is keyed by: set by
	// ReadRecording to the one label other than __name__ that every series
	// carries ("instance" when several qualify or none does). Set it to
	// key the recording by another label before building a Replay.
	HostLabel string
}

// OpenRecording reads the recording at path (plain or gzip). A line that
// does not read is a policies.ErrorList of one *policies.PosError at
// path:line:column, as a spec's problems are.
func OpenRecording(path string) (*Recording, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open recording: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, fmt.Errorf("recording %s is a directory, not a file", path)
	}
	rec, err := ReadRecording(f)
	var le *LineError
	if errors.As(err, &le) {
		return nil, policies.ErrorList{&policies.PosError{File: path, Line: le.Line, Col: le.Col, Msg: "recording: " + le.Err.Error()}}
	}
	if err != nil {
		return nil, fmt.Errorf("recording %s: %w", path, err)
	}
	return rec, nil
}

// LineError is a line of a recording that does not read: its 1-based
// line and column (in bytes of the uncompressed data) and what is wrong.
type LineError struct {
	Line, Col int
	Err       error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// column is where in line (trimmed of the indent before it) err is: a
// JSON syntax or type error's offset, a bad value's text, else the
// line's start.
func column(line []byte, indent int, err error) int {
	var se *json.SyntaxError
	var te *typeError
	var ve *valueError
	switch {
	case errors.As(err, &se):
		return indent + max(int(se.Offset), 1)
	case errors.As(err, &te):
		// At the key: the offset is past the value.
		field := te.te.Field[strings.LastIndex(te.te.Field, ".")+1:]
		if i := bytes.Index(line, []byte(`"`+field+`"`)); i >= 0 && field != "" {
			return indent + i + 1
		}
		return indent + max(int(te.te.Offset), 1)
	case errors.As(err, &ve):
		if i := bytes.Index(line, []byte(`"values"`)); i >= 0 {
			if j := bytes.Index(line[i:], ve.text); j >= 0 {
				return indent + i + j + 1
			}
		}
	case errors.As(err, new(*countError)):
		if i := bytes.Index(line, []byte(`"values"`)); i >= 0 {
			return indent + i + 1
		}
	}
	return indent + 1
}

// typeError is a JSON value of the wrong type, named by its key.
type typeError struct{ te *json.UnmarshalTypeError }

func (e *typeError) Error() string {
	want := "a number"
	switch e.te.Type.Kind() {
	case reflect.Map, reflect.Struct:
		want = "an object"
	case reflect.Slice:
		want = "a list"
	case reflect.String:
		want = "a string"
	}
	return fmt.Sprintf("%s: got a JSON %s, want %s", e.te.Field, e.te.Value, want)
}

func (e *typeError) Unwrap() error { return e.te }

// valueError is a sample value that is not a number.
type valueError struct{ text []byte }

func (e *valueError) Error() string { return fmt.Sprintf("value %q is not a number", e.text) }

// countError is a series whose values and timestamps differ in number.
type countError struct {
	series             string
	values, timestamps int
}

func (e *countError) Error() string {
	return fmt.Sprintf("series %s has %d values but %d timestamps", e.series, e.values, e.timestamps)
}

// exportLine is one line of the export format.
type exportLine struct {
	Metric     map[string]string `json:"metric"`
	Values     []exportValue     `json:"values"`
	Timestamps []int64           `json:"timestamps"`
}

// exportValue is a sample value as VictoriaMetrics exports it: a number,
// null for NaN, or a string ("Infinity", "NaN", "0.5").
type exportValue float64

func (v *exportValue) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*v = exportValue(math.NaN())
		return nil
	}
	if len(b) >= 2 && b[0] == '"' {
		b = b[1 : len(b)-1]
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return &valueError{text: bytes.Clone(b)}
	}
	*v = exportValue(f)
	return nil
}

// ReadRecording reads export-format data (one JSON series a line, plain or
// gzip, detected by its magic bytes). Several lines of the same series are
// merged and sorted by time; when two samples share a timestamp the later
// line wins. NaN and null values are missing data (see Series.Values).
// Errors name the line.
func ReadRecording(r io.Reader) (*Recording, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 64<<10)
	}

	rec := &Recording{}
	byKey := map[string]*Series{}
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, &LineError{Line: lineNo, Col: 1, Err: err}
		}
		if trimmed := bytes.TrimSpace(line); len(trimmed) > 0 {
			if perr := addLine(rec, byKey, trimmed); perr != nil {
				indent := len(line) - len(bytes.TrimLeft(line, " \t\r\n"))
				return nil, &LineError{Line: lineNo, Col: column(trimmed, indent, perr), Err: perr}
			}
		}
		if err != nil { // io.EOF
			break
		}
	}
	for _, s := range rec.Series {
		normalize(s)
	}
	rec.HostLabel = inferHostLabel(rec.Series)
	return rec, nil
}

func addLine(rec *Recording, byKey map[string]*Series, line []byte) error {
	var l exportLine
	if err := json.Unmarshal(line, &l); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			// Not "cannot unmarshal string into Go struct field
			// exportLine.timestamps of type int64".
			return &typeError{te: te}
		}
		return err
	}
	if l.Metric[NameLabel] == "" {
		return errors.New(`series has no "__name__" label`)
	}
	if len(l.Values) != len(l.Timestamps) {
		return &countError{series: formatLabels(l.Metric), values: len(l.Values), timestamps: len(l.Timestamps)}
	}
	key := formatLabels(l.Metric)
	s := byKey[key]
	if s == nil {
		s = &Series{Labels: l.Metric}
		byKey[key] = s
		rec.Series = append(rec.Series, s)
	}
	for i, v := range l.Values {
		s.Timestamps = append(s.Timestamps, l.Timestamps[i])
		s.Values = append(s.Values, float64(v))
	}
	return nil
}

// normalize sorts s by time and keeps the last value given for a timestamp.
func normalize(s *Series) {
	idx := make([]int, len(s.Timestamps))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return s.Timestamps[idx[a]] < s.Timestamps[idx[b]] })
	ts := make([]int64, 0, len(idx))
	vs := make([]float64, 0, len(idx))
	for _, i := range idx {
		if n := len(ts); n > 0 && ts[n-1] == s.Timestamps[i] {
			vs[n-1] = s.Values[i] // stable sort: i is the later line
			continue
		}
		ts = append(ts, s.Timestamps[i])
		vs = append(vs, s.Values[i])
	}
	s.Timestamps, s.Values = ts, vs
}

// inferHostLabel returns the label other than __name__ carried by every
// series, when exactly one is, else DefaultHostLabel.
func inferHostLabel(series []*Series) string {
	if len(series) == 0 {
		return DefaultHostLabel
	}
	var common []string
	for k := range series[0].Labels {
		if k != NameLabel {
			common = append(common, k)
		}
	}
	for _, s := range series[1:] {
		common = slices.DeleteFunc(common, func(k string) bool { _, ok := s.Labels[k]; return !ok })
	}
	if len(common) == 1 {
		return common[0]
	}
	return DefaultHostLabel
}

// Names returns the metric names present, sorted.
func (r *Recording) Names() []string {
	var names []string
	for _, s := range r.Series {
		if !slices.Contains(names, s.Name()) {
			names = append(names, s.Name())
		}
	}
	slices.Sort(names)
	return names
}

// Hosts returns the values of the host label present, sorted.
func (r *Recording) Hosts() []string {
	var hosts []string
	for _, s := range r.Series {
		if h, ok := s.Labels[r.HostLabel]; ok && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	slices.Sort(hosts)
	return hosts
}

// Span returns the times of the first and the last sample; zero times when
// the recording has no samples.
func (r *Recording) Span() (first, last time.Time) {
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for _, s := range r.Series {
		for i, t := range s.Timestamps {
			if !math.IsNaN(s.Values[i]) {
				lo, hi = min(lo, t), max(hi, t)
			}
		}
	}
	if lo > hi {
		return time.Time{}, time.Time{}
	}
	return time.UnixMilli(lo).UTC(), time.UnixMilli(hi).UTC()
}

// formatLabels writes a label set the way Prometheus prints it, sorted:
// name{a="1",b="2"}. It is also the identity of a series.
func formatLabels(labels map[string]string) string {
	keys := slices.DeleteFunc(sortedLabelNames(labels), func(k string) bool { return k == NameLabel })
	var b strings.Builder
	b.WriteString(labels[NameLabel])
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(labels[k]))
	}
	b.WriteByte('}')
	return b.String()
}

// sortedLabelNames returns the label names of labels, sorted.
func sortedLabelNames(labels map[string]string) []string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
