package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/rollguard/rollguard/history"
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
			st, err := openState(c.Context(), spec, slog.New(slog.DiscardHandler))
			if err != nil {
				return failed(err)
			}
			h := history.History{Store: st.store}
			hosts := []string{host}
			if host == "" {
				if hosts, err = h.Hosts(c.Context()); err != nil {
					return failed(err)
				}
			}
			out := map[string][]history.VersionRecord{}
			for _, n := range hosts {
				recs, err := h.For(c.Context(), n)
				if err != nil {
					return failed(err)
				}
				out[n] = recs
			}
			if asJSON {
				enc := json.NewEncoder(c.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"hosts": out})
			}
			if len(hosts) == 0 {
				fmt.Fprintf(c.OutOrStdout(), "no history yet for rollout %q (%s)\n", spec.Name, st.where)
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
