// Package victoriametrics connects rollguard to a Prometheus-compatible
// metrics store (VictoriaMetrics or Prometheus) and to recordings of metrics
// in VictoriaMetrics' export format.
//
// It holds four things, each implementing or serving ports.MetricsSource:
//
//   - Client queries the Prometheus HTTP API (/api/v1/query and
//     /api/v1/query_range): one request per query for all the hosts of a
//     rollout, decoded in place by a scanner that allocates nothing per
//     series (about 1.2 µs per host for a 4-metric tick of 10,000 hosts).
//   - Recording and Replay read an export file (/api/v1/export, one series a
//     line, plain or gzip) and answer queries from it, for dry runs.
//   - Recorder wraps any source and writes what a run saw in the export
//     format, so that a dry run over that file replays the run.
//   - Server starts and stops a real victoria-metrics process for tests,
//     the demo and the simulated fleet; Import loads export data into it.
package victoriametrics
