// Command gen writes the recorded-metrics fixtures of the dry-run scenarios
// into testdata/recordings/, in VictoriaMetrics' export format. Run it from
// the module root:
//
//	go run ./testdata/gen
//
// The output is deterministic: the noise comes from real CloudWatch series
// of the Numenta Anomaly Benchmark (testdata/gen/nab/, MIT licence), each
// normalised by its median and used as a multiplicative factor on a
// per-metric base level; the sparse error blips come from a seeded PRNG.
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The shape every scenario shares.
var (
	start  = time.Date(2024, 1, 1, 10, 0, 0, 0, time.UTC)
	end    = time.Date(2024, 1, 1, 14, 0, 0, 0, time.UTC)
	change = time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC) // T, unix 1704110400
	every  = time.Minute
)

const hostLabel = "instance"

// metrics in file order, with their base levels.
var metrics = []struct {
	name string
	base float64
}{
	{"latency_p95", 0.200},
	{"error_rate", 0},
	{"cpu", 0.35},
	{"availability", 100},
}

// nabFiles are the NAB series the noise is cut from: CPU utilisation of
// EC2 and RDS instances, chosen for a realistic few-percent wobble without
// the benchmark's labelled anomalies dominating a 4-hour window.
var nabFiles = []string{
	"ec2_cpu_utilization_53ea38.csv",
	"ec2_cpu_utilization_5f5533.csv",
	"rds_cpu_utilization_cc0c53.csv",
	"rds_cpu_utilization_e47b3b.csv",
}

// effect changes one sample of a scenario: it returns the new value, or
// false to drop the sample (no data).
type effect func(host, metric string, t time.Time, v float64, rng *rand.Rand) (float64, bool)

type scenario struct {
	file   string
	about  string
	effect effect
}

func after(t time.Time, d time.Duration) bool { return !t.Before(change.Add(d)) }

var scenarios = []scenario{
	{"good.jsonl", "nothing changes", func(_, _ string, _ time.Time, v float64, _ *rand.Rand) (float64, bool) {
		return v, true
	}},
	{"latency-50.jsonl", "web-1's latency_p95 rises by 50% from T+1m", func(h, m string, t time.Time, v float64, _ *rand.Rand) (float64, bool) {
		if h == "web-1" && m == "latency_p95" && after(t, time.Minute) {
			return v * 1.5, true
		}
		return v, true
	}},
	{"errors-from-zero.jsonl", "web-1's error_rate jumps from 0 to ~2% (0.01-0.03, some zeros) from T+1m", func(h, m string, t time.Time, v float64, rng *rand.Rand) (float64, bool) {
		if h == "web-1" && m == "error_rate" && after(t, time.Minute) {
			if rng.IntN(8) == 0 {
				return 0, true
			}
			return 0.01 + 0.02*rng.Float64(), true
		}
		return v, true
	}},
	{"availability-drop.jsonl", "web-1's availability falls from about 99.93% to about 97% (40 times the errors) from T+1m", func(h, m string, t time.Time, v float64, _ *rand.Rand) (float64, bool) {
		if h == "web-1" && m == "availability" && after(t, time.Minute) {
			return 100 - 40*(100-v), true
		}
		return v, true
	}},
	{"traffic-shift.jsonl.gz", "every host's latency_p95 +40% and cpu +30% from T+1m (fleet-wide)", func(_, m string, t time.Time, v float64, _ *rand.Rand) (float64, bool) {
		if after(t, time.Minute) {
			switch m {
			case "latency_p95":
				return v * 1.4, true
			case "cpu":
				return min(v*1.3, 0.98), true
			}
		}
		return v, true
	}},
	{"noisy-host.jsonl", "web-7 (wave-2) latency x3 and error_rate 10% from T+21m", func(h, m string, t time.Time, v float64, _ *rand.Rand) (float64, bool) {
		if h == "web-7" && after(t, 21*time.Minute) {
			switch m {
			case "latency_p95":
				return v * 3, true
			case "error_rate":
				return 0.10, true
			}
		}
		return v, true
	}},
	{"nodata.jsonl", "web-1's series (every metric) stop from T+1m to the end", func(h, _ string, t time.Time, v float64, _ *rand.Rand) (float64, bool) {
		if h == "web-1" && after(t, time.Minute) {
			return 0, false
		}
		return v, true
	}},
}

func main() {
	nabDir := flag.String("nab", "testdata/gen/nab", "directory of the NAB CSV files")
	outDir := flag.String("out", "testdata/recordings", "output directory")
	flag.Parse()
	if err := run(*nabDir, *outDir); err != nil {
		log.Fatal(err)
	}
}

func run(nabDir, outDir string) error {
	nab := make([][]float64, len(nabFiles))
	for i, f := range nabFiles {
		var err error
		if nab[i], err = readNAB(filepath.Join(nabDir, f)); err != nil {
			return err
		}
	}
	hosts := make([]string, 10)
	for i := range hosts {
		hosts[i] = "web-" + strconv.Itoa(i+1)
	}
	n := int(end.Sub(start)/every) + 1
	base := baseSeries(nab, hosts, n)

	for _, sc := range scenarios {
		// One PRNG per scenario, so that scenarios do not shift each other.
		rng := rand.New(rand.NewPCG(20240101, uint64(len(sc.file))))
		var buf bytes.Buffer
		for mi, m := range metrics {
			for hi, h := range hosts {
				var ts []int64
				var vs []float64
				for k := range n {
					t := start.Add(time.Duration(k) * every)
					v, keep := sc.effect(h, m.name, t, base[mi][hi][k], rng)
					if keep {
						ts = append(ts, t.UnixMilli())
						vs = append(vs, math.Round(v*1e6)/1e6)
					}
				}
				writeLine(&buf, m.name, h, vs, ts)
			}
		}
		if err := writeFile(filepath.Join(outDir, sc.file), buf.Bytes()); err != nil {
			return err
		}
		fmt.Printf("%-24s %s\n", sc.file, sc.about)
	}
	return nil
}

// baseSeries returns base[metric][host][sample]: each metric's base level
// times a NAB noise factor, a different file and offset per host and
// metric. error_rate is sparse: zero, with rare small blips on some hosts.
func baseSeries(nab [][]float64, hosts []string, n int) [][][]float64 {
	out := make([][][]float64, len(metrics))
	for mi, m := range metrics {
		out[mi] = make([][]float64, len(hosts))
		for hi := range hosts {
			src := nab[(hi+mi)%len(nab)]
			offset := (hi*379 + mi*1013) % (len(src) - n)
			f := factors(src[offset : offset+n])
			vs := make([]float64, n)
			for k := range n {
				switch m.name {
				case "error_rate":
					// Blips where the noise peaks, on every third host.
					if hi%3 == 1 && f[k] > 1.15 {
						vs[k] = 0.002 * f[k]
					}
				case "cpu":
					vs[k] = min(max(m.base*f[k], 0.02), 0.98)
				case "availability":
					// A percentage just under its cap: 0.04-0.11% of
					// requests fail, with the noise.
					vs[k] = m.base - 0.07*f[k]
				default:
					vs[k] = m.base * f[k]
				}
			}
			out[mi][hi] = vs
		}
	}
	return out
}

// factors normalises w by its median and clips to [0.6, 1.6].
func factors(w []float64) []float64 {
	sorted := slices.Clone(w)
	slices.Sort(sorted)
	med := sorted[len(sorted)/2]
	out := make([]float64, len(w))
	for i, x := range w {
		out[i] = min(max(x/med, 0.6), 1.6)
	}
	return out
}

func readNAB(path string) ([]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	if _, err := r.Read(); err != nil { // timestamp,value
		return nil, fmt.Errorf("%s: header: %w", path, err)
	}
	var vs []float64
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return vs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		v, err := strconv.ParseFloat(rec[1], 64)
		if err != nil {
			return nil, fmt.Errorf("%s: value %q: %w", path, rec[1], err)
		}
		vs = append(vs, v)
	}
}

func writeLine(buf *bytes.Buffer, name, host string, vs []float64, ts []int64) {
	fmt.Fprintf(buf, `{"metric":{"__name__":%q,%q:%q},"values":[`, name, hostLabel, host)
	for i, v := range vs {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	}
	buf.WriteString(`],"timestamps":[`)
	for i, t := range ts {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString(strconv.FormatInt(t, 10))
	}
	buf.WriteString("]}\n")
}

// writeFile writes data, gzip-compressed (with a zero header time, so the
// bytes are reproducible) when path ends in .gz.
func writeFile(path string, data []byte) error {
	if strings.HasSuffix(path, ".gz") {
		var zbuf bytes.Buffer
		zw, err := gzip.NewWriterLevel(&zbuf, gzip.BestCompression)
		if err != nil {
			return err
		}
		if _, err := zw.Write(data); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
		data = zbuf.Bytes()
	}
	return os.WriteFile(path, data, 0o644)
}
