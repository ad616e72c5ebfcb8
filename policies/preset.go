package policies

import "fmt"

// Sensitivity presets.
const (
	SensitivityLow    = "low"
	SensitivityMedium = "medium"
	SensitivityHigh   = "high"
)

// Preset returns the detector configuration of a sensitivity preset: low,
// medium (the default; "" means medium) or high.
//
// The values were tuned on real AWS CloudWatch series (TestDetectionQuality)
// under three constraints, and the reasons are these:
//
//   - Threshold > ZCap, so that one sample, which adds at most ZCap to the
//     score, cannot fire alone: real CPU and network series spike to 20x
//     their level several times a day and recover the next poll.
//   - A step of 2 x Threshold spreads is decided within 3 polls: with
//     Smoothing 2 the score after 3 polls is 2.5 ZCap - 3 Allowance, which
//     is over Threshold for every preset.
//   - How many polls at the cap fire: with Smoothing 2 an excursion of n
//     polls at ZCap, wherever it falls, scores n ZCap - (n+1) Allowance
//     (its first and last ticks average it with a normal poll). Medium's
//     6.5 is exactly that score for n = 2: two polls never fire, three
//     (10.0) do. Low needs three (13.0 > 10, two reach 8.5), high fires on
//     two (6.5 > 5).
//   - Smoothing 2 rather than more: a longer window delays a real step by a
//     poll per tick of width and, on the replay, bought no fewer false
//     rollbacks than the tail floor did.
//   - TailQuantile 0.925: the replay's false rollbacks come from series with
//     normal bursts (batch jobs, disk flushes) that the MAD ignores because
//     they fill less than half the baseline; flooring the spread by the
//     baseline's own 92.5th percentile widens the band of a host that
//     bursts normally. Higher quantiles (0.95+) let a degradation that began
//     a few points before the change hide in its own baseline.
//   - RelFloor 5% of the level: a flat series (a CPU reading 0.066 at every
//     poll) still has a spread, so that one quantum does not read as
//     infinitely far; AbsFloor only guards a baseline of constant zeros.
//   - SelfCalibrate: a host whose own baseline window reaches a score of
//     M while nothing changes is degraded only above max(Threshold, M); on
//     the replay this removed a fifth of the false rollbacks (bursty disk,
//     network and CPU series). Below 6.5 the replay fires on c6585a, whose
//     normal two-poll spikes the target says must not roll back.
//   - Allowance 0.5: a small slack lets moderate sustained shifts (2-3
//     spreads) accumulate within the hour; the threshold, not the
//     allowance, sets the false-rollback rate.
func Preset(name string) (DetectorConfig, error) {
	c := DetectorConfig{
		Allowance:          0.5,
		Smoothing:          2,
		RelFloor:           0.05,
		AbsFloor:           1e-9,
		TailQuantile:       0.925,
		MinBaselineSamples: 10,
		Band:               3,
		SelfCalibrate:      true,
	}
	switch name {
	case SensitivityLow:
		c.ZCap, c.Threshold = 5, 10
	case SensitivityMedium, "":
		c.ZCap, c.Threshold = 4, 6.5
	case SensitivityHigh:
		c.ZCap, c.Threshold = 4, 5
	default:
		return DetectorConfig{}, fmt.Errorf("sensitivity %q: must be low, medium or high", name)
	}
	return c, nil
}
