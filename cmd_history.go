package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rollguard/rollguard/history"
	"github.com/rollguard/rollguard/runner"
)

func newHistoryCmd() *cobra.Command {
	var file, host string
	var asJSON bool
	c := &cobra.Command{
		Use:   "history -f rollout.yaml [--host H] [--json]",
		Short: "Show the versions applied to each host, the known-good ones marked",
		Long: `history reads the rollout's state store (state.store: the local state
directory, Consul KV or Nomad Variables) and prints, per host, every version
rollguard applied: when, by which run, and how it ended (applied, known_good,
reverted, failed). The newest known-good version is the one that
revert.known_good re-applies. It changes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			spec, _, err := loadSpec(file)
			if err != nil {
				return err
			}
			hosts, out, where, err := readHistory(c.Context(), spec, host)
			if err != nil {
				return failed(err)
			}
			if asJSON {
				enc := json.NewEncoder(c.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"hosts": out})
			}
			records := 0
			for _, recs := range out {
				records += len(recs)
			}
			if records == 0 {
				if host != "" {
					fmt.Fprintf(c.OutOrStdout(), "no history yet for host %q of rollout %q (%s)\n", host, spec.Name, where)
				} else {
					fmt.Fprintf(c.OutOrStdout(), "no history yet for rollout %q (%s)\n", spec.Name, where)
				}
				return nil
			}
			tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "HOST\tVERSION\tOUTCOME\tAT\tRUN\t")
			for _, n := range hosts {
				recs := out[n]
				good := -1
				for i := len(recs) - 1; i >= 0; i-- {
					if recs[i].Outcome == history.VersionKnownGood {
						good = i
						break
					}
				}
				for i, r := range recs {
					mark := ""
					if i == good {
						mark = "  ← last known-good"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", n, r.Version, r.Outcome, r.At.UTC().Format(time.RFC3339), r.RunID, mark)
				}
			}
			return tw.Flush()
		},
	}
	c.Example = `  rollguard history -f rollout.yaml
  rollguard history -f rollout.yaml --host web-1 --json | jq '.hosts["web-1"][-1]'`
	c.Flags().StringVarP(&file, "file", "f", "", "rollout spec (rollout.yaml)")
	c.Flags().StringVar(&host, "host", "", "show one host only")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON: {\"hosts\": {\"web-1\": [records...]}}")
	return c
}

// readHistory reads the records of host (every host when empty) from the
// spec's state store, and where that is. A local state directory that no
// run has created holds no history, and is not created: history only
// reads.
func readHistory(ctx context.Context, spec *runner.Spec, host string) ([]string, map[string][]history.VersionRecord, string, error) {
	out := map[string][]history.VersionRecord{}
	var hosts []string
	if host != "" {
		hosts = []string{host}
	}
	if spec.State.Store == "" || spec.State.Store == "local" {
		dir := localStateDir(spec)
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			for _, n := range hosts {
				out[n] = []history.VersionRecord{}
			}
			return hosts, out, dir, nil
		}
	}
	st, err := openState(ctx, spec, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, nil, "", err
	}
	h := history.History{Store: st.store}
	if host == "" {
		if hosts, err = h.Hosts(ctx); err != nil {
			return nil, nil, "", err
		}
	}
	for _, n := range hosts {
		recs, err := h.For(ctx, n)
		if err != nil {
			return nil, nil, "", err
		}
		if recs == nil {
			recs = []history.VersionRecord{} // [] in --json, as for a host never written
		}
		out[n] = recs
	}
	return hosts, out, st.where, nil
}
