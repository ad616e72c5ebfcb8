package simfleet

import (
	"bytes"
	"embed"
	"encoding/csv"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
)

// The load of a simulated host is its configuration times four kinds of
// noise, each a pure function of the host and the simulated time, so a
// scrape at any moment is reproducible from the seed:
//
//   - shape: the slow, autocorrelated, heavy-tailed part, replayed from real
//     AWS CloudWatch series (shapes/, from the Numenta Anomaly Benchmark),
//     one recorded 5-minute point per shapeStep of simulated time, every
//     host at the fleet's offset (one balancer, one workload);
//   - drift: a slow sine, a period of 15 to 30 minutes, a few per cent deep;
//   - jitter: independent per second, a few per cent;
//   - spikes: now and then (about one 120 s window in 20) a few seconds of
//     higher latency and errors.

//go:embed shapes/ec2_cpu_utilization_5f5533.csv shapes/elb_request_count_8c0756.csv
var shapeFS embed.FS

const (
	// shapeStep is how much simulated time one recorded point lasts: a
	// minute for five, so the demo's minutes see the slow swings of real
	// hours without every 15 s query window jumping to another level.
	shapeStep = 60.0
	// spikeWindow is the span within which at most one spike happens.
	spikeWindow = 120
	// spikeChance is the probability of a spike in a window.
	spikeChance = 0.05
	// spikeLen is how long a spike lasts, in seconds. The demo compresses
	// an hour of real shape into minutes; a spike of one scrape keeps
	// spikes as short, relative to the 15 s query windows, as a real
	// few-second spike is relative to the minute-long windows of a real
	// fleet.
	spikeLen = 1
)

// anomalyWindows are NAB's labelled anomaly windows of the embedded
// shapes: the points inside them are left out, so the simulated hosts
// replay ordinary behaviour only and a good change is never judged
// against a real incident.
var anomalyWindows = map[string][][2]string{
	"ec2_cpu_utilization_5f5533.csv": {{"2014-02-18 16:02:00", "2014-02-19 08:42:00"}, {"2014-02-24 10:17:00", "2014-02-25 02:57:00"}},
	"elb_request_count_8c0756.csv":   {{"2014-04-12 09:04:00", "2014-04-13 01:44:00"}, {"2014-04-22 11:14:00", "2014-04-23 03:54:00"}},
}

// shape is a recorded series normalised by its median, so 1 is typical.
type shape []float64

func loadShape(name string) (shape, error) {
	data, err := shapeFS.ReadFile("shapes/" + name)
	if err != nil {
		return nil, fmt.Errorf("shape %s: %w", name, err)
	}
	rows, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("shape %s: %w", name, err)
	}
	var s shape
	for _, row := range rows[1:] {
		if len(row) != 2 {
			return nil, fmt.Errorf("shape %s: row %v: want timestamp,value", name, row)
		}
		if inWindow(anomalyWindows[name], row[0]) {
			continue
		}
		v, err := strconv.ParseFloat(row[1], 64)
		if err != nil {
			return nil, fmt.Errorf("shape %s: %w", name, err)
		}
		s = append(s, v)
	}
	if len(s) < 2 {
		return nil, fmt.Errorf("shape %s: too few points", name)
	}
	sorted := slices.Sorted(slices.Values(s))
	med := sorted[len(sorted)/2]
	if med <= 0 {
		return nil, fmt.Errorf("shape %s: median %g is not positive", name, med)
	}
	for i := range s {
		s[i] = math.Max(s[i], med/100) / med
	}
	return s, nil
}

// inWindow reports whether a NAB timestamp ("2014-02-18 16:02:00", which
// sorts as text) falls in one of the windows.
func inWindow(windows [][2]string, ts string) bool {
	for _, w := range windows {
		if ts >= w[0] && ts <= w[1] {
			return true
		}
	}
	return false
}

// at interpolates the series at position u (in points), wrapping around.
func (s shape) at(u float64) float64 {
	n := float64(len(s))
	u = math.Mod(u, n)
	if u < 0 {
		u += n
	}
	i := int(u)
	frac := u - float64(i)
	j := (i + 1) % len(s)
	return s[i]*(1-frac) + s[j]*frac
}

// noise holds one host's noise parameters, drawn from the fleet's seed.
type noise struct {
	key         uint64
	cpu         shape
	traffic     shape
	cpuOffset   float64
	trafOffset  float64
	driftPeriod float64
	driftPhase  float64
	// baseLatency is the host's median request latency at latency_factor 1.
	baseLatency float64
	// baseRPS is the host's request rate at a typical traffic point.
	baseRPS float64
}

func newNoise(seed int64, index int, cpu, traffic shape) noise {
	// The shapes' offsets are the fleet's (stream 0), not the host's: the
	// hosts share one balancer's traffic and one workload, so they swing
	// together, as a real fleet does; a host's own moves are its drift,
	// jitter and spikes. Independent offsets made each host's CPU swing
	// 10-25 % within a minute on its own, so whether a good change passed
	// depended on which minute of the shape a stage's polls fell in, and
	// on a loaded machine (slower playbooks, longer stages) it often did
	// not.
	fleet := rand.New(rand.NewPCG(uint64(seed), 0))
	r := rand.New(rand.NewPCG(uint64(seed), uint64(index)+1))
	key := r.Uint64()
	_, _ = r.Float64(), r.Float64() // the host offsets of before: the other parameters stay as they were
	return noise{
		key:         key,
		cpu:         cpu,
		traffic:     traffic,
		cpuOffset:   fleet.Float64() * float64(len(cpu)),
		trafOffset:  fleet.Float64() * float64(len(traffic)),
		driftPeriod: 900 + r.Float64()*900,
		driftPhase:  r.Float64() * 2 * math.Pi,
		baseLatency: 0.040 * (0.9 + 0.2*r.Float64()),
		baseRPS:     20 * (0.8 + 0.4*r.Float64()),
	}
}

// load is the noise's multipliers at simulated second t (seconds since the
// fleet's epoch).
type load struct {
	latency, errors, cpu, traffic float64
}

func (n noise) at(t float64) load {
	cpuShape := n.cpu.at(n.cpuOffset + t/shapeStep)
	// Request counts are far spikier than latency; a fractional power keeps
	// their shape and tames their range (median 1, 5th-95th pct ~0.5-1.5).
	traffic := math.Pow(n.traffic.at(n.trafOffset+t/shapeStep), 0.3)
	drift := 1 + 0.03*math.Sin(2*math.Pi*t/n.driftPeriod+n.driftPhase)
	sec := uint64(math.Floor(t))
	jitter := func(stream uint64, depth float64) float64 {
		return math.Exp(depth * (2*unit(n.key, stream, sec) - 1))
	}
	l := load{
		latency: math.Pow(cpuShape, 0.3) * drift * jitter(1, 0.04),
		errors:  math.Sqrt(cpuShape) * jitter(2, 0.10),
		cpu:     cpuShape * math.Pow(traffic, 0.3) * jitter(3, 0.03),
		traffic: traffic * jitter(4, 0.05),
	}
	win := sec / spikeWindow
	if unit(n.key, 5, win) < spikeChance {
		start := win*spikeWindow + uint64(unit(n.key, 6, win)*(spikeWindow-spikeLen))
		if sec >= start && sec < start+spikeLen {
			l.latency *= 1.4
			l.errors *= 3
		}
	}
	return l
}

// unit is a uniform number in [0, 1) from a hash of its arguments
// (splitmix64 finaliser), so noise needs no state.
func unit(key, stream, x uint64) float64 {
	z := key ^ (stream * 0x9e3779b97f4a7c15) ^ (x * 0xbf58476d1ce4e5b9)
	z ^= z >> 30
	z *= 0xbf58476d1ce4e5b9
	z ^= z >> 27
	z *= 0x94d049bb133111eb
	z ^= z >> 31
	return float64(z>>11) / (1 << 53)
}
