package simfleet

import (
	"bufio"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// AppConf is a simulated host's configuration, the file Dir/<host>/app.conf
// that the playbooks write. The format is one key=value per line; blank
// lines and lines starting with # are ignored; unknown keys are errors.
//
//	version=v1          # any string; exported as app_info{version="v1"}
//	latency_factor=1.0  # multiplies request latency (> 0)
//	error_share=0.005   # share of requests answered 500 (0..1)
//	cpu_load=0.3        # busy share of the CPU at nominal traffic (0..1)
//
// A missing key keeps its neutral value (NeutralConf). A file that cannot
// be parsed leaves the host on its previous configuration.
type AppConf struct {
	Version       string
	LatencyFactor float64
	ErrorShare    float64
	CPULoad       float64
}

// NeutralConf is the configuration Start writes: version v1, nominal
// latency, a small error share and a moderate CPU load.
func NeutralConf() AppConf {
	return AppConf{Version: "v1", LatencyFactor: 1.0, ErrorShare: 0.005, CPULoad: 0.3}
}

// Format renders c in the app.conf format.
func (c AppConf) Format() string {
	return fmt.Sprintf("# app.conf of a simfleet host\nversion=%s\nlatency_factor=%s\nerror_share=%s\ncpu_load=%s\n",
		c.Version, fmtFloat(c.LatencyFactor), fmtFloat(c.ErrorShare), fmtFloat(c.CPULoad))
}

// ParseAppConf parses the app.conf format; every problem is reported with
// its line number.
func ParseAppConf(text string) (AppConf, error) {
	c := NeutralConf()
	var problems []string
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			problems = append(problems, fmt.Sprintf("line %d: want key=value, got %q", n, line))
			continue
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if key == "version" {
			c.Version = value
			continue
		}
		f, err := strconv.ParseFloat(value, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			problems = append(problems, fmt.Sprintf("line %d: %s: %q is not a number", n, key, value))
			continue
		}
		switch key {
		case "latency_factor":
			if f <= 0 {
				problems = append(problems, fmt.Sprintf("line %d: latency_factor must be > 0", n))
				continue
			}
			c.LatencyFactor = f
		case "error_share":
			if f < 0 || f > 1 {
				problems = append(problems, fmt.Sprintf("line %d: error_share must be in [0, 1]", n))
				continue
			}
			c.ErrorShare = f
		case "cpu_load":
			if f < 0 || f > 1 {
				problems = append(problems, fmt.Sprintf("line %d: cpu_load must be in [0, 1]", n))
				continue
			}
			c.CPULoad = f
		default:
			problems = append(problems, fmt.Sprintf("line %d: unknown key %q", n, key))
		}
	}
	if len(problems) > 0 {
		return c, fmt.Errorf("app.conf: %s", strings.Join(problems, "; "))
	}
	return c, nil
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
