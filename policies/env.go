// Package policies holds what decides a rollout: the policy files and their
// expr programs, the environment those programs see, the per-host detectors
// that turn raw metrics into degradation scores, and the engine that runs one
// tick (update every detector, evaluate every policy).
//
// It imports nothing of rollguard's: the runner and the steps build on it.
package policies

// Metric is one query's state for one host, as policies see it under
// host.metrics.<query name>.
type Metric struct {
	// Current is the smoothed (moving average) current value.
	Current float64 `expr:"current"`
	// Baseline is the robust centre (median) of the pre-change window.
	Baseline float64 `expr:"baseline"`
	// Stddev is the robust spread of the baseline (scaled MAD), after floors.
	Stddev float64 `expr:"stddev"`
	// Z is the deviation of Current from its expected value in spreads,
	// signed so that positive is the metric's worse direction. The
	// expected value is Baseline, moved by the untouched hosts' shift over
	// the same time when there are any (difference in differences).
	Z float64 `expr:"z"`
	// Ratio is Current / Baseline (0 when the baseline is 0).
	Ratio float64 `expr:"ratio"`
	// Delta is Current - Baseline.
	Delta float64 `expr:"delta"`
	// Score is the degradation score: the strongest of the burst, the
	// severity x duration (CUSUM), the repeats (three polls beyond
	// anything one baseline poll showed, once they decide) and, at the
	// end of a stage, the window test, each scaled to
	// detection.threshold (5): over it means
	// degraded, on every host, whatever that host's self-calibrated
	// limit. It is capped at 1.01 times the threshold.
	Score float64 `expr:"score"`
	// Tolerance is the largest change allowed, in the metric's unit: the
	// query's tolerance, or by default 10% of the baseline median (1% of
	// the cap for a lower-is-worse ratio at its cap, 1% of the level for a
	// lower-is-worse baseline that sits at one value).
	Tolerance float64 `expr:"tolerance"`
	// Control is the same metric's mean current value over untouched hosts,
	// or 0 when every host has been changed (see HasControl).
	Control float64 `expr:"control"`
	// Samples is the number of baseline samples.
	Samples int `expr:"samples"`
	// NoData is true when the latest tick brought no value for this host.
	NoData bool `expr:"nodata"`
	// Silent is true when NoData is and the host has had no value for
	// more consecutive ticks than the longest silence in its baseline
	// window that it came back from (or has no baseline): the no data
	// that on_no_data counts. A
	// metric whose baseline goes without a value for 3 polls now and then
	// (a latency of a service that serves no request in some minutes) is
	// not silent for its first 3 polls without one.
	Silent bool `expr:"-"`
	// HasControl is true when untouched hosts existed to compute Control.
	HasControl bool `expr:"has_control"`
	// LowConfidence is true when the baseline had fewer samples than
	// detection.min_baseline_samples.
	LowConfidence bool `expr:"low_confidence"`
}

// Host is one target host as policies see it (an element of hosts, or host).
type Host struct {
	// Name is the host's name in the target list.
	Name string `expr:"name"`
	// Wave is the name of the wave the host belongs to.
	Wave string `expr:"wave"`
	// Score is the largest score among the host's metrics.
	Score float64 `expr:"score"`
	// Degraded is Score over the detection threshold.
	Degraded bool `expr:"degraded"`
	// Metrics maps query names to their state on this host.
	Metrics map[string]*Metric `expr:"metrics"`
	// Applied is true once the change was applied to the host.
	Applied bool `expr:"applied"`
	// Failed is true when the apply failed or the host was unreachable.
	Failed bool `expr:"failed"`
}

// Fleet summarises the whole target fleet.
type Fleet struct {
	// Size is the number of target hosts.
	Size int `expr:"size"`
	// Changed is the number of hosts changed so far in this run.
	Changed int `expr:"changed"`
	// Degraded is the number of changed hosts that are degraded.
	Degraded int `expr:"degraded"`
	// FractionDegraded is Degraded / Changed (0 when nothing changed).
	FractionDegraded float64 `expr:"fraction_degraded"`
	// MeanScore is the mean score of the changed hosts.
	MeanScore float64 `expr:"mean_score"`
	// MaxScore is the largest score of the changed hosts.
	MaxScore float64 `expr:"max_score"`
}

// Wave names the wave being judged.
type Wave struct {
	Name  string `expr:"name"`
	Index int    `expr:"index"`
}

// Phase values.
const (
	PhaseApply   = "apply"
	PhaseMonitor = "monitor"
)

// Env is the environment every policy program is compiled against and run
// with. The engine keeps one Env and updates it in place each tick, so
// evaluating a policy allocates nothing per host.
type Env struct {
	// Hosts are the hosts changed so far in this run.
	Hosts []*Host `expr:"hosts"`
	// Host is the host being judged by a host_rollback_when program (nil
	// for fleet programs).
	Host  *Host `expr:"host"`
	Fleet Fleet `expr:"fleet"`
	Wave  Wave  `expr:"wave"`
	// Phase is "apply" while the playbook runs, "monitor" afterwards.
	Phase string `expr:"phase"`
	// Elapsed is the number of seconds since the wave's apply began.
	Elapsed float64 `expr:"elapsed"`
}
