// Package victoriametrics connects rollguard to a Prometheus-compatible
// metrics store (VictoriaMetrics or Prometheus) and to recordings of metrics
// in VictoriaMetrics' export format.
//
// It holds four things, each implementing or serving steps.MetricsSource:
//
//   - Client queries the Prometheus HTTP API (/api/v1/query and
//     /api/v1/query_range): one request per query for all the hosts of a
//     rollout, decoded by a streaming decoder that allocates nothing per
//     series.
//   - Recording and Replay read an export file (/api/v1/export, one series a
//     line, plain or gzip) and answer queries from it, for dry runs.
//   - Recorder wraps any source and writes what a run saw in the export
//     format, so that a dry run over that file replays the run.
//   - Server starts and stops a real victoria-metrics process for tests,
//     the demo and the simulated fleet; Import loads export data into it.
package victoriametrics
