// Command gen copies what the evaluation harness reads from the real data
// sets in ../shared/data into evaluation/testdata/, so the tests need nothing
// outside the repository. Run it from the module root:
//
//	go run ./evaluation/testdata/gen [-from ../shared/data]
//
// It keeps every licence and label file as is, and only the columns the
// harness watches of each CSV, gzipped without a timestamp in the header, so
// the output is the same byte for byte on every run (the check: run it and
// `git diff --exit-code evaluation/testdata`).
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// columns are the CSV columns copied per kind of file; nil copies every
// column.
var columns = map[string][]string{
	"nab":         nil,
	"jumpstarter": {"timestamp", "m00", "m01", "m05", "m06", "m18"},
	"nezha/pod":   {"timestamp", "cpu_usage_pct", "mem_usage_pct", "server_latency_p90_s", "workload_ops"},
	"nezha/app":   {"timestamp", "success_rate_pct", "latency_p90_s"},
}

// verbatim are the files copied unchanged, per source.
var verbatim = map[string][]string{
	"nab":         {"LICENSE.txt", "SOURCE_COMMIT", "anomaly_windows.json"},
	"jumpstarter": {"LICENSE.JumpStarter-MIT.txt", "labels.json"},
	"nezha": {"LICENSE.nezha-MIT.txt", "labels.json", "manifest.json", "quiet_windows.json",
		"unlabelled_disturbances.json", "signal_check_method.json"},
}

func main() {
	from := flag.String("from", "../shared/data", "the shared data directory")
	to := flag.String("to", "evaluation/testdata", "where the copies go")
	flag.Parse()
	for src, files := range verbatim {
		for _, f := range files {
			copyFile(filepath.Join(*from, src, f), filepath.Join(*to, src, f))
		}
	}
	nab, err := filepath.Glob(filepath.Join(*from, "nab", "realAWSCloudwatch", "*.csv"))
	check(err)
	for _, f := range nab {
		copyCSV(f, filepath.Join(*to, "nab", "realAWSCloudwatch", filepath.Base(f)+".gz"), columns["nab"])
	}
	js, err := filepath.Glob(filepath.Join(*from, "jumpstarter", "hosts", "*.csv"))
	check(err)
	for _, f := range js {
		copyCSV(f, filepath.Join(*to, "jumpstarter", "hosts", filepath.Base(f)+".gz"), columns["jumpstarter"])
	}
	for _, day := range []string{"online_boutique/2022-08-22", "train_ticket/2023-01-30"} {
		pods, err := filepath.Glob(filepath.Join(*from, "nezha", day, "pods", "*.csv"))
		check(err)
		for _, f := range pods {
			copyCSV(f, filepath.Join(*to, "nezha", day, "pods", filepath.Base(f)+".gz"), columns["nezha/pod"])
		}
		f := filepath.Join(*from, "nezha", day, "frontend_service.csv")
		copyCSV(f, filepath.Join(*to, "nezha", day, "frontend_service.csv.gz"), columns["nezha/app"])
	}
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func copyFile(from, to string) {
	data, err := os.ReadFile(from)
	check(err)
	check(os.MkdirAll(filepath.Dir(to), 0o755))
	check(os.WriteFile(to, data, 0o644))
}

// copyCSV writes the named columns of from (all when keep is nil; a column
// the file lacks is left out) to the gzip file to.
func copyCSV(from, to string, keep []string) {
	f, err := os.Open(from)
	check(err)
	defer f.Close()
	r := csv.NewReader(f)
	header, err := r.Read()
	check(err)
	var idx []int
	for i, name := range header {
		if keep == nil || slices.Contains(keep, name) {
			idx = append(idx, i)
		}
	}
	var out bytes.Buffer
	w := csv.NewWriter(&out)
	row := make([]string, len(idx))
	for rec := header; ; {
		for j, i := range idx {
			row[j] = strings.TrimSpace(rec[i])
		}
		check(w.Write(row))
		rec, err = r.Read()
		if err == io.EOF {
			break
		}
		check(err)
	}
	w.Flush()
	check(w.Error())
	check(os.MkdirAll(filepath.Dir(to), 0o755))
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	check(err)
	_, err = zw.Write(out.Bytes())
	check(err)
	check(zw.Close())
	check(os.WriteFile(to, gz.Bytes(), 0o644))
	fmt.Printf("%s: %d columns\n", to, len(idx))
}
