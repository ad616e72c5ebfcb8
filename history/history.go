// Package history keeps the configuration versions applied to each host,
// the known-good ones marked, in a rollout's ports.StateStore: what a
// known_good revert re-applies and what `rollguard history` prints.
package history

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/rollguard/rollguard/ports"
)

// Outcomes of a version on a host (VersionRecord.Outcome).
const (
	// VersionApplied: the change was applied; not judged yet.
	VersionApplied = "applied"
	// VersionKnownGood: the change passed its monitoring period; a
	// known_good revert goes back to the newest such version.
	VersionKnownGood = "known_good"
	// VersionReverted: the change was applied, then reverted.
	VersionReverted = "reverted"
	// VersionFailed: the apply failed on the host.
	VersionFailed = "failed"
)

// HistoryLimit is how many records a host's history keeps. The oldest are
// dropped first, except the newest known-good record, which is kept even
// when older than the limit so that a revert to known-good always has one.
const HistoryLimit = 50

// historyAttempts bounds the re-reads of Record and SetOutcome when other
// writers win the check-and-set.
const historyAttempts = 8

// VersionRecord is one configuration version applied to one host.
type VersionRecord struct {
	// Seq numbers a host's records, from 1, in the order they were
	// recorded; Record sets it.
	Seq uint64 `json:"seq"`
	// Version is the config version id (apply.version).
	Version string `json:"version"`
	// Playbook is the playbook that applied it.
	Playbook string `json:"playbook"`
	// ExtraVars are the variables it was applied with (as JSON: numbers
	// come back as float64).
	ExtraVars map[string]any `json:"extra_vars,omitempty"`
	// At is when it was applied.
	At time.Time `json:"at"`
	// RunID is the run that applied it.
	RunID string `json:"run_id"`
	// Outcome is applied | known_good | reverted | failed.
	Outcome string `json:"outcome"`
}

// History is the applied versions of each host, kept in a ports.StateStore under
// history/<host>.json as a JSON list, oldest first. Every write is a
// check-and-set on the version read, so concurrent runs (which the lock
// should prevent, but a resumed or misconfigured run may not) never lose
// each other's records.
type History struct {
	// Store holds the records.
	Store ports.StateStore
}

const historyPrefix = "history/"

// historyKey is host's key. The name is path-escaped (a "/" or a leading
// dot cannot make it another path).
func historyKey(host string) string {
	esc := url.PathEscape(host)
	if strings.HasPrefix(esc, ".") {
		esc = "%2E" + esc[1:]
	}
	return historyPrefix + esc + ".json"
}

func validOutcome(o string) bool {
	switch o {
	case VersionApplied, VersionKnownGood, VersionReverted, VersionFailed:
		return true
	}
	return false
}

// load reads host's records and their store version.
func (h History) load(ctx context.Context, host string) ([]VersionRecord, uint64, error) {
	key := historyKey(host)
	data, version, err := h.Store.Get(ctx, key)
	if err != nil {
		return nil, 0, fmt.Errorf("history of host %s: %w", host, err)
	}
	if data == nil {
		return nil, version, nil
	}
	var recs []VersionRecord
	if err := json.Unmarshal(data, &recs); err != nil {
		return nil, 0, fmt.Errorf("history of host %s (%s): decode: %w", host, key, err)
	}
	return recs, version, nil
}

func (h History) save(ctx context.Context, host string, recs []VersionRecord, version uint64) error {
	data, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return fmt.Errorf("history of host %s: encode: %w", host, err)
	}
	if _, err := h.Store.Put(ctx, historyKey(host), append(data, '\n'), version); err != nil {
		return fmt.Errorf("history of host %s: %w", host, err)
	}
	return nil
}

// Record appends rec to host's history and sets rec.Seq. When another
// writer changed the history between the read and the write, Record reads
// it again and appends to the new list, a bounded number of times, but
// only if that writer appended records or changed outcomes: when the
// records it had read are gone or rewritten (a deleted or replaced
// history), it returns an error wrapping ports.ErrConflict and writes nothing.
// Cancelling ctx aborts the store calls.
func (h History) Record(ctx context.Context, host string, rec VersionRecord) error {
	switch {
	case host == "":
		return errors.New("history record: empty host name")
	case rec.Version == "":
		return fmt.Errorf("history record for host %s: empty version", host)
	case !validOutcome(rec.Outcome):
		return fmt.Errorf("history record for host %s: outcome %q is not applied, known_good, reverted or failed", host, rec.Outcome)
	}
	var seen []VersionRecord
	var err error
	for attempt := range historyAttempts {
		recs, version, lerr := h.load(ctx, host)
		if lerr != nil {
			return lerr
		}
		if attempt > 0 && !appendedTo(seen, recs) {
			return fmt.Errorf("history of host %s was rewritten by another writer, not appended to; not recording version %s of run %s: %w",
				host, rec.Version, rec.RunID, ports.ErrConflict)
		}
		seen = recs
		r := rec
		r.Seq = 1
		if n := len(recs); n > 0 {
			r.Seq = recs[n-1].Seq + 1
		}
		next := capHistory(append(recs[:len(recs):len(recs)], r))
		if err = h.save(ctx, host, next, version); err == nil {
			return nil
		}
		if !errors.Is(err, ports.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("history of host %s: %d attempts lost to other writers: %w", host, historyAttempts, err)
}

// appendedTo reports whether now is before plus appended records (and
// possibly changed outcomes, or records dropped by the cap): the newest
// record of before is still there, and only newer records follow it.
func appendedTo(before, now []VersionRecord) bool {
	if len(before) == 0 {
		return true
	}
	last := before[len(before)-1]
	for i, r := range now {
		if r.Seq != last.Seq {
			continue
		}
		if r.Version != last.Version || r.RunID != last.RunID || !r.At.Equal(last.At) {
			return false
		}
		for _, newer := range now[i+1:] {
			if newer.Seq <= last.Seq {
				return false
			}
		}
		return true
	}
	return false
}

// capHistory keeps the newest HistoryLimit records, and the newest
// known-good record when it would fall out of them.
func capHistory(recs []VersionRecord) []VersionRecord {
	if len(recs) <= HistoryLimit {
		return recs
	}
	good := lastKnownGood(recs)
	cut := len(recs) - HistoryLimit
	if good >= 0 && good < cut {
		return append([]VersionRecord{recs[good]}, recs[cut+1:]...)
	}
	return recs[cut:]
}

func lastKnownGood(recs []VersionRecord) int {
	for i := len(recs) - 1; i >= 0; i-- {
		if recs[i].Outcome == VersionKnownGood {
			return i
		}
	}
	return -1
}

// MarkKnownGood marks version, as applied by run runID, known-good on each
// of hosts. See SetOutcome.
func (h History) MarkKnownGood(ctx context.Context, hosts []string, version, runID string) error {
	return h.SetOutcome(ctx, hosts, version, runID, VersionKnownGood)
}

// SetOutcome sets the outcome of the newest record of version by run
// runID on each of hosts (re-reading and re-applying the change when
// another writer wins the check-and-set). A host without such a record is
// an error; the other hosts are still marked, and the error lists every
// host that failed. Cancelling ctx aborts the store calls.
func (h History) SetOutcome(ctx context.Context, hosts []string, version, runID, outcome string) error {
	if !validOutcome(outcome) {
		return fmt.Errorf("history: outcome %q is not applied, known_good, reverted or failed", outcome)
	}
	var errs []error
	for _, host := range hosts {
		if err := h.setOutcome(ctx, host, version, runID, outcome); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (h History) setOutcome(ctx context.Context, host, version, runID, outcome string) error {
	var err error
	for range historyAttempts {
		recs, storeVersion, lerr := h.load(ctx, host)
		if lerr != nil {
			return lerr
		}
		i := len(recs) - 1
		for ; i >= 0; i-- {
			if recs[i].Version == version && recs[i].RunID == runID {
				break
			}
		}
		if i < 0 {
			return fmt.Errorf("history of host %s has no record of version %s from run %s to mark %s", host, version, runID, outcome)
		}
		if recs[i].Outcome == outcome {
			return nil
		}
		recs[i].Outcome = outcome
		if err = h.save(ctx, host, recs, storeVersion); err == nil {
			return nil
		}
		if !errors.Is(err, ports.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("history of host %s: %d attempts lost to other writers: %w", host, historyAttempts, err)
}

// For returns host's records, oldest first (nil when it has none).
// Cancelling ctx aborts the store call.
func (h History) For(ctx context.Context, host string) ([]VersionRecord, error) {
	recs, _, err := h.load(ctx, host)
	return recs, err
}

// LastKnownGood returns host's newest known-good record, and false when it
// has none. Cancelling ctx aborts the store call.
func (h History) LastKnownGood(ctx context.Context, host string) (VersionRecord, bool, error) {
	recs, _, err := h.load(ctx, host)
	if err != nil {
		return VersionRecord{}, false, err
	}
	if i := lastKnownGood(recs); i >= 0 {
		return recs[i], true, nil
	}
	return VersionRecord{}, false, nil
}

// Hosts returns the hosts that have a history, sorted. Cancelling
// ctx aborts the store call.
func (h History) Hosts(ctx context.Context) ([]string, error) {
	keys, err := h.Store.List(ctx, historyPrefix)
	if err != nil {
		return nil, fmt.Errorf("history hosts: %w", err)
	}
	var hosts []string
	for _, k := range keys {
		name, ok := strings.CutSuffix(strings.TrimPrefix(k, historyPrefix), ".json")
		if !ok || strings.Contains(name, "/") {
			continue
		}
		host, err := url.PathUnescape(name)
		if err != nil {
			continue
		}
		hosts = append(hosts, host)
	}
	slices.Sort(hosts)
	return hosts, nil
}
