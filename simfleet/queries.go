package simfleet

// The queries the demo's rollout watches, one series per host labelled
// instance=<host name> (see ScrapeConfig). The windows are short (15 s over
// 1 s scrapes) so that a configuration change shows within seconds: the
// demo runs minutes, not hours. A real fleet scraped every 15-30 s wants
// windows of a few minutes instead.
const (
	// Window is the rate window of the queries.
	Window = "15s"

	// QueryLatencyP95 is each host's 95th percentile request latency, in
	// seconds.
	QueryLatencyP95 = `histogram_quantile(0.95, sum by (le, instance) (rate(http_request_duration_seconds_bucket[` + Window + `])))`

	// QueryErrorRate is each host's share of requests answered 5xx.
	QueryErrorRate = `sum by (instance) (rate(http_requests_total{code=~"5.."}[` + Window + `])) / sum by (instance) (rate(http_requests_total[` + Window + `]))`

	// QueryCPU is each host's busy share of its CPUs.
	QueryCPU = `1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[` + Window + `]))`
)
