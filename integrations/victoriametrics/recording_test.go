package victoriametrics

import (
	"bytes"
	"compress/gzip"
	"context"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rollguard/rollguard/ports"
)

// change is the change time T of the committed recordings.
var change = time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)

func gzipped(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestReadRecording(t *testing.T) {
	const merged = `{"metric":{"__name__":"cpu","instance":"web-1"},"values":[0.3,null],"timestamps":[3000,4000]}
{"metric":{"__name__":"lat","instance":"web-1"},"values":[1,2],"timestamps":[1000,2000]}

{"metric":{"instance":"web-1","__name__":"cpu"},"values":[0.1,"NaN",0.2,"Infinity"],"timestamps":[1000,1500,2000,5000]}
`
	nan := math.NaN()
	tests := []struct {
		name      string
		in        string
		wantErr   string
		hostLabel string
		names     []string
		// series cpu's samples after merging
		cpuTimes  []int64
		cpuValues []float64
	}{
		{name: "merged and sorted, null and NaN missing", in: merged, hostLabel: "instance",
			names: []string{"cpu", "lat"}, cpuTimes: []int64{1000, 1500, 2000, 3000, 4000, 5000}, cpuValues: []float64{0.1, nan, 0.2, 0.3, nan, math.Inf(1)}},
		{name: "gzip detected", in: "GZ" + merged, hostLabel: "instance",
			names: []string{"cpu", "lat"}, cpuTimes: []int64{1000, 1500, 2000, 3000, 4000, 5000}, cpuValues: []float64{0.1, nan, 0.2, 0.3, nan, math.Inf(1)}},
		{name: "later line wins on the same timestamp",
			in: `{"metric":{"__name__":"cpu","host":"a"},"values":[1],"timestamps":[1000]}
{"metric":{"__name__":"cpu","host":"a"},"values":[2],"timestamps":[1000]}`,
			hostLabel: "host", names: []string{"cpu"}, cpuTimes: []int64{1000}, cpuValues: []float64{2}},
		{name: "bad JSON names the line", in: merged + "{not json\n", wantErr: "line 5:"},
		{name: "length mismatch names the line and the series",
			in:      `{"metric":{"__name__":"cpu","instance":"a"},"values":[1,2],"timestamps":[1000]}`,
			wantErr: `line 1: series cpu{instance="a"} has 2 values but 1 timestamps`},
		{name: "no name", in: "\n" + `{"metric":{"instance":"a"},"values":[],"timestamps":[]}`, wantErr: `line 2: series has no "__name__" label`},
		{name: "bad value", in: `{"metric":{"__name__":"cpu"},"values":["x"],"timestamps":[1]}`, wantErr: `line 1:`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			if rest, ok := strings.CutPrefix(in, "GZ"); ok {
				in = gzipped(t, rest)
			}
			rec, err := ReadRecording(strings.NewReader(in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rec.HostLabel != tt.hostLabel {
				t.Errorf("HostLabel = %q, want %q", rec.HostLabel, tt.hostLabel)
			}
			if got := rec.Names(); !slices.Equal(got, tt.names) {
				t.Errorf("Names() = %v, want %v", got, tt.names)
			}
			cpu := rec.Series[0]
			if !slices.Equal(cpu.Timestamps, tt.cpuTimes) || !equalNaN(cpu.Values, tt.cpuValues) {
				t.Errorf("cpu = %v %v, want %v %v", cpu.Timestamps, cpu.Values, tt.cpuTimes, tt.cpuValues)
			}
		})
	}
}

func TestCommittedRecordings(t *testing.T) {
	at := func(d time.Duration) time.Time { return change.Add(d) }
	tests := []struct {
		file string
		// check gets a Replay over the file and fails when the scenario's
		// story does not hold.
		check func(t *testing.T, r *Replay)
	}{
		{"good.jsonl", func(t *testing.T, r *Replay) {
			for _, h := range []string{"web-1", "web-7"} {
				if ratio := meanOver(t, r, "latency_p95", h, 1, 30) / meanOver(t, r, "latency_p95", h, -60, -1); ratio < 0.9 || ratio > 1.1 {
					t.Errorf("%s latency after/before = %.2f, want about 1", h, ratio)
				}
			}
		}},
		{"latency-50.jsonl", func(t *testing.T, r *Replay) {
			if ratio := meanOver(t, r, "latency_p95", "web-1", 1, 30) / meanOver(t, r, "latency_p95", "web-1", -60, -1); ratio < 1.35 || ratio > 1.65 {
				t.Errorf("web-1 latency after/before = %.2f, want about 1.5", ratio)
			}
			if ratio := meanOver(t, r, "latency_p95", "web-2", 1, 30) / meanOver(t, r, "latency_p95", "web-2", -60, -1); ratio > 1.1 {
				t.Errorf("web-2 latency after/before = %.2f, want about 1", ratio)
			}
		}},
		{"errors-from-zero.jsonl", func(t *testing.T, r *Replay) {
			if before := meanOver(t, r, "error_rate", "web-1", -120, -1); before != 0 {
				t.Errorf("web-1 error_rate before T = %v, want 0", before)
			}
			if after := meanOver(t, r, "error_rate", "web-1", 1, 60); after < 0.012 || after > 0.025 {
				t.Errorf("web-1 error_rate after T = %v, want about 0.02", after)
			}
		}},
		{"availability-drop.jsonl", func(t *testing.T, r *Replay) {
			// Just under 100% before T (never 100%), about 97% after on web-1.
			if before := meanOver(t, r, "availability", "web-1", -120, -1); before < 99.88 || before > 99.96 {
				t.Errorf("web-1 availability before T = %v, want about 99.93", before)
			}
			if after := meanOver(t, r, "availability", "web-1", 1, 60); after < 96 || after > 98 {
				t.Errorf("web-1 availability after T = %v, want about 97", after)
			}
			if after := meanOver(t, r, "availability", "web-2", 1, 60); after < 99.88 {
				t.Errorf("web-2 availability after T = %v, want about 99.93", after)
			}
		}},
		{"traffic-shift.jsonl.gz", func(t *testing.T, r *Replay) {
			for _, h := range []string{"web-1", "web-5", "web-10"} {
				if ratio := meanOver(t, r, "latency_p95", h, 1, 30) / meanOver(t, r, "latency_p95", h, -60, -1); ratio < 1.25 || ratio > 1.55 {
					t.Errorf("%s latency after/before = %.2f, want about 1.4", h, ratio)
				}
			}
		}},
		{"noisy-host.jsonl", func(t *testing.T, r *Replay) {
			if ratio := meanOver(t, r, "latency_p95", "web-7", 21, 40) / meanOver(t, r, "latency_p95", "web-7", -60, -1); ratio < 2.5 {
				t.Errorf("web-7 latency after/before = %.2f, want about 3", ratio)
			}
			if v := meanOver(t, r, "error_rate", "web-7", 21, 40); math.Abs(v-0.10) > 1e-9 {
				t.Errorf("web-7 error_rate = %v, want 0.10", v)
			}
			if v := meanOver(t, r, "latency_p95", "web-7", 1, 20) / meanOver(t, r, "latency_p95", "web-7", -60, -1); v > 1.1 {
				t.Errorf("web-7 latency before T+21m moved by %.2f", v)
			}
		}},
		{"nodata.jsonl", func(t *testing.T, r *Replay) {
			out := make([]float64, 2)
			for _, q := range []string{"latency_p95", "error_rate", "cpu", "availability"} {
				if err := r.Instant(context.Background(), ports.Query{Name: q}, []string{"web-1", "web-2"}, at(10*time.Minute), out); err != nil {
					t.Fatal(err)
				}
				if !math.IsNaN(out[0]) || math.IsNaN(out[1]) {
					t.Errorf("%s at T+10m = %v, want [NaN, a value]", q, out)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			rec, err := OpenRecording("../../testdata/recordings/" + tt.file)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := rec.Names(), []string{"availability", "cpu", "error_rate", "latency_p95"}; !slices.Equal(got, want) {
				t.Errorf("names = %v, want %v", got, want)
			}
			if got := len(rec.Hosts()); got != 10 || rec.HostLabel != "instance" {
				t.Errorf("%d hosts keyed by %q, want 10 keyed by instance", got, rec.HostLabel)
			}
			first, last := rec.Span()
			if !first.Equal(change.Add(-2*time.Hour)) || !last.Equal(change.Add(2*time.Hour)) {
				t.Errorf("span = %s .. %s, want 10:00 .. 14:00", first, last)
			}
			r, err := NewReplay(rec, ReplayOptions{})
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, r)
		})
	}
}

// meanOver is the mean of the samples of name on host in [T+fromMin, T+toMin].
func meanOver(t *testing.T, r *Replay, name, host string, fromMin, toMin int) float64 {
	t.Helper()
	vals, err := r.Range(context.Background(), ports.Query{Name: name}, []string{host},
		change.Add(time.Duration(fromMin)*time.Minute), change.Add(time.Duration(toMin)*time.Minute), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if want := toMin - fromMin + 1; len(vals[0].Values) != want {
		t.Fatalf("%s on %s: %d samples in [%d, %d] min, want %d", name, host, len(vals[0].Values), fromMin, toMin, want)
	}
	sum := 0.0
	for _, v := range vals[0].Values {
		sum += v
	}
	return sum / float64(len(vals[0].Values))
}

func TestReplayInstant(t *testing.T) {
	rec, err := ReadRecording(strings.NewReader(
		`{"metric":{"__name__":"cpu","instance":"a"},"values":[1,2,3],"timestamps":[60000,120000,600000]}
{"metric":{"__name__":"cpu","instance":"b"},"values":[7,null],"timestamps":[120000,240000]}
{"metric":{"__name__":"latency","instance":"a"},"values":[9],"timestamps":[60000]}`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReplay(rec, ReplayOptions{Lookback: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	nan := math.NaN()
	tests := []struct {
		name string
		q    string
		atS  int64
		want []float64 // for keys a, b, missing
	}{
		{"exact sample time", "cpu", 120, []float64{2, 7, nan}},
		{"latest before", "cpu", 179, []float64{2, 7, nan}},
		{"before the first sample", "cpu", 59, []float64{nan, nan, nan}},
		{"within lookback, until a missing value", "cpu", 419, []float64{2, nan, nan}},
		{"before the missing value", "cpu", 239, []float64{2, 7, nan}},
		{"lookback is open at its start", "cpu", 420, []float64{nan, nan, nan}},
		{"after a gap", "cpu", 600, []float64{3, nan, nan}},
		{"by name, not expression", "latency", 60, []float64{9, nan, nan}},
		{"unknown name", "nope", 60, []float64{nan, nan, nan}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := make([]float64, 3)
			q := ports.Query{Name: tt.q, Expr: "sum(whatever)"}
			if err := r.Instant(context.Background(), q, []string{"a", "b", "missing"}, time.Unix(tt.atS, 0), out); err != nil {
				t.Fatal(err)
			}
			if !equalNaN(out, tt.want) {
				t.Errorf("Instant at %ds = %v, want %v", tt.atS, out, tt.want)
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := r.Instant(ctx, ports.Query{Name: "cpu"}, []string{"a"}, time.Unix(60, 0), make([]float64, 1))
		if err == nil || !strings.Contains(err.Error(), "canceled") {
			t.Errorf("error = %v, want a cancellation", err)
		}
	})
}

func TestReplayRange(t *testing.T) {
	rec, err := ReadRecording(strings.NewReader(
		`{"metric":{"__name__":"cpu","instance":"a"},"values":[1,2,3,4],"timestamps":[60000,120000,180000,240000]}`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReplay(rec, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Range(context.Background(), ports.Query{Name: "cpu"}, []string{"a", "b"}, time.Unix(120, 0), time.Unix(180, 0), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !slices.Equal(got[0].Values, []float64{2, 3}) || !slices.Equal(got[0].Timestamps, []int64{120000, 180000}) || len(got[1].Values) != 0 {
		t.Errorf("Range = %v, want [[2 3] []] (bounds inclusive, nil for a missing host)", got)
	}
}

// A range query is an instant query at every step: polled more often than
// it was recorded, a series repeats its latest sample, up to twice its own
// resolution, and a missing value is a gap at once; polled less often, it
// gives the sample at or before each step.
func TestReplayRangeSteps(t *testing.T) {
	rec, err := ReadRecording(strings.NewReader(
		`{"metric":{"__name__":"cpu","instance":"a"},"values":[1,2,3,null,5,6],"timestamps":[0,60000,120000,180000,240000,600000]}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.Series[0].Resolution(); got != time.Minute {
		t.Errorf("resolution %s, want 1m (the median gap, a missing value counting)", got)
	}
	r, err := NewReplay(rec, ReplayOptions{Lookback: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	q := ports.Query{Name: "cpu"}
	sec := func(s ...int64) []int64 {
		for i := range s {
			s[i] *= 1000
		}
		return s
	}
	for _, tt := range []struct {
		name           string
		from, to, step int64 // seconds
		ts             []int64
		vs             []float64
	}{
		{"15s steps over 1m samples", 0, 135, 15, sec(0, 15, 30, 45, 60, 75, 90, 105, 120, 135), []float64{1, 1, 1, 1, 2, 2, 2, 2, 3, 3}},
		{"a missing value is a gap at once", 165, 255, 15, sec(165, 240, 255), []float64{3, 5, 5}},
		{"up to twice the resolution past the last sample", 300, 375, 15, sec(300, 315, 330, 345), []float64{5, 5, 5, 5}},
		{"steps between samples", 50, 130, 40, sec(50, 90, 130), []float64{1, 2, 3}},
		{"5m steps", 0, 600, 300, sec(0, 300, 600), []float64{1, 5, 6}},
		{"counted back from the end", 0, 130, 60, sec(10, 70, 130), []float64{1, 2, 3}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := r.Range(context.Background(), q, []string{"a"}, time.Unix(tt.from, 0), time.Unix(tt.to, 0), time.Duration(tt.step)*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got[0].Timestamps, tt.ts) || !slices.Equal(got[0].Values, tt.vs) {
				t.Errorf("Range = %v %v, want %v %v", got[0].Timestamps, got[0].Values, tt.ts, tt.vs)
			}
			// Each point is what an instant query then answers.
			out := make([]float64, 1)
			for i, ts := range got[0].Timestamps {
				if err := r.Instant(context.Background(), q, []string{"a"}, time.UnixMilli(ts), out); err != nil || out[0] != got[0].Values[i] {
					t.Errorf("Instant at %dms = %v (%v), Range gave %v", ts, out[0], err, got[0].Values[i])
				}
			}
		})
	}
	if got, err := r.Range(context.Background(), q, []string{"a"}, time.Unix(60, 0), time.Unix(55, 0), time.Minute); err != nil || len(got[0].Values) != 0 {
		t.Errorf("from after to: %v %v, want no points", got, err)
	}
	if _, err := r.Range(context.Background(), q, []string{"a"}, time.Unix(0, 0), time.Unix(60, 0), 0); err == nil || !strings.Contains(err.Error(), "step must be positive") {
		t.Errorf("step 0: error %v, want one naming the step", err)
	}
}

func TestRecordingResolution(t *testing.T) {
	rec, err := ReadRecording(strings.NewReader(
		`{"metric":{"__name__":"cpu","instance":"a"},"values":[1,2,3],"timestamps":[0,60000,120000]}
{"metric":{"__name__":"cpu","instance":"b"},"values":[1,2,3,4],"timestamps":[0,15000,30000,45000]}
{"metric":{"__name__":"cpu","instance":"c"},"values":[1,2],"timestamps":[0,60000]}
{"metric":{"__name__":"lat","instance":"a"},"values":[1],"timestamps":[0]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		want time.Duration
	}{{"cpu", time.Minute}, {"lat", 0}, {"absent", 0}} {
		if got := rec.Resolution(tt.name); got != tt.want {
			t.Errorf("Resolution(%s) = %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestReplayRejectsTwoSeriesForAHost(t *testing.T) {
	rec, err := ReadRecording(strings.NewReader(
		`{"metric":{"__name__":"cpu","instance":"a","zone":"x"},"values":[1],"timestamps":[1000]}
{"metric":{"__name__":"cpu","instance":"a","zone":"y"},"values":[1],"timestamps":[1000]}`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewReplay(rec, ReplayOptions{})
	want := `two series for cpu instance="a": cpu{instance="a",zone="x"} and cpu{instance="a",zone="y"}`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error = %v, want it to contain %q", err, want)
	}
}

func TestRecorderRoundTrip(t *testing.T) {
	src, err := OpenRecording("../../testdata/recordings/latency-50.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	replay, err := NewReplay(src, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var file bytes.Buffer
	rec := NewRecorder(replay, "instance", &file)
	ctx := context.Background()
	keys := []string{"web-1", "web-2", "web-3", "absent"}
	queries := []ports.Query{{Name: "latency_p95", Expr: "q1"}, {Name: "cpu", Expr: "q2"}}

	// What a run does: a baseline range, then instant ticks every 15s
	// (between the recording's samples, so values are carried forward).
	type seen struct {
		q    string
		at   time.Time
		vals []float64
	}
	var ticks []seen
	baseline := map[string][]Samples{}
	for _, q := range queries {
		b, err := rec.Range(ctx, q, keys, change.Add(-30*time.Minute), change, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		baseline[q.Name] = b
	}
	for at := change.Add(15 * time.Second); at.Before(change.Add(10 * time.Minute)); at = at.Add(15 * time.Second) {
		for _, q := range queries {
			out := make([]float64, len(keys))
			if err := rec.Instant(ctx, q, keys, at, out); err != nil {
				t.Fatal(err)
			}
			ticks = append(ticks, seen{q.Name, at, out})
		}
	}
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}

	// A dry run over the written file sees what the run saw.
	back, err := ReadRecording(&file)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(back.Series); got != 6 {
		t.Errorf("recording has %d series, want 6 (2 queries x 3 hosts with data)", got)
	}
	again, err := NewReplay(back, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ticks {
		out := make([]float64, len(keys))
		if err := again.Instant(ctx, ports.Query{Name: s.q}, keys, s.at, out); err != nil {
			t.Fatal(err)
		}
		if !equalNaN(out, s.vals) {
			t.Fatalf("replay of %s at %s = %v, the run saw %v", s.q, s.at, out, s.vals)
		}
	}
	for _, q := range queries {
		got, err := again.Range(ctx, q, keys, change.Add(-30*time.Minute), change, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		for i := range keys {
			if !slices.Equal(got[i].Values, baseline[q.Name][i].Values) || !slices.Equal(got[i].Timestamps, baseline[q.Name][i].Timestamps) {
				t.Errorf("replayed baseline of %s on %s = %v, the run saw %v", q.Name, keys[i], got[i], baseline[q.Name][i])
			}
		}
	}
	if ticks[0].vals[0] == ticks[len(ticks)-2].vals[0] {
		t.Errorf("web-1 latency did not change over the ticks: the test proves nothing")
	}
}

func equalNaN(a, b []float64) bool {
	return slices.EqualFunc(a, b, func(x, y float64) bool { return x == y || (math.IsNaN(x) && math.IsNaN(y)) })
}

func TestCreateRecorderGzip(t *testing.T) {
	src, err := OpenRecording("../../testdata/recordings/good.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	replay, err := NewReplay(src, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/run.jsonl.gz"
	rec, err := CreateRecorder(replay, "instance", path)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, 1)
	if err := rec.Instant(context.Background(), ports.Query{Name: "cpu"}, []string{"web-3"}, change, out); err != nil {
		t.Fatal(err)
	}
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) < 2 || raw[0] != 0x1f || raw[1] != 0x8b {
		t.Fatalf("%s is not gzip", path)
	}
	back, err := OpenRecording(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Series) != 1 || back.Series[0].Values[0] != out[0] || back.Series[0].Timestamps[0] != change.UnixMilli() {
		t.Errorf("read back %+v, want one cpu sample %v at T", back.Series, out[0])
	}
	if _, err := CreateRecorder(replay, "instance", t.TempDir()+"/no/such/dir/x.jsonl"); err == nil {
		t.Error("CreateRecorder in a missing directory: no error")
	}
}
