package consul

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/rollguard/rollguard/ports"
)

// DefaultPrefix is the KV prefix of a rollout's state: rollguard/<name>/.
func DefaultPrefix(rollout string) string {
	return "rollguard/" + rollout + "/"
}

// KVStore is a ports.StateStore on Consul KV. Keys are stored under a
// prefix; a value's version is its ModifyIndex. Writes are check-and-set
// operations in a one-operation transaction (/v1/txn), so the new
// ModifyIndex comes back with the write itself and no other writer can slip
// in between.
type KVStore struct {
	c      *Client
	prefix string
	// opts carries datacenter, namespace and partition to every call.
	dc, ns, partition string
}

// KVOptions places a KVStore.
type KVOptions struct {
	// Prefix of every key (default DefaultPrefix(rollout)); a trailing
	// slash is added when missing.
	Prefix string
	// Datacenter, Namespace and Partition are passed through when set.
	Datacenter string
	Namespace  string
	Partition  string
}

// NewKVStore returns the state store of rollout in Consul KV.
func NewKVStore(c *Client, rollout string, opts KVOptions) (*KVStore, error) {
	prefix := opts.Prefix
	if prefix == "" {
		if rollout == "" {
			return nil, errors.New("consul state store: rollout name or prefix is required")
		}
		prefix = DefaultPrefix(rollout)
	}
	prefix = strings.TrimPrefix(prefix, "/")
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &KVStore{c: c, prefix: prefix, dc: opts.Datacenter, ns: opts.Namespace, partition: opts.Partition}, nil
}

// Prefix returns the KV prefix the store writes under.
func (s *KVStore) Prefix() string { return s.prefix }

func (s *KVStore) queryOpts(ctx context.Context) *api.QueryOptions {
	return query(ctx, &api.QueryOptions{Datacenter: s.dc, Namespace: s.ns, Partition: s.partition})
}

// Get returns key's value and ModifyIndex; nil and 0 when it does not
// exist. Cancelling ctx aborts the request.
func (s *KVStore) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	pair, _, err := s.c.api.KV().Get(s.prefix+key, s.queryOpts(ctx))
	if err != nil {
		return nil, 0, fmt.Errorf("consul kv get %q: %w", s.prefix+key, err)
	}
	if pair == nil {
		return nil, 0, nil
	}
	return pair.Value, pair.ModifyIndex, nil
}

// Put writes value if key's ModifyIndex is still version (0: key must not
// exist) and returns the new ModifyIndex. A lost race returns an error
// wrapping ports.ErrConflict. Cancelling ctx aborts the request (the write
// may still have happened on the server).
func (s *KVStore) Put(ctx context.Context, key string, value []byte, version uint64) (uint64, error) {
	full := s.prefix + key
	res, err := s.txn(ctx, &api.KVTxnOp{Verb: api.KVCAS, Key: full, Value: value, Index: version})
	if err != nil {
		return 0, fmt.Errorf("consul kv put %q at version %d: %w", full, version, err)
	}
	if len(res) == 0 || res[0] == nil {
		return 0, fmt.Errorf("consul kv put %q: transaction returned no entry", full)
	}
	return res[0].ModifyIndex, nil
}

// Delete removes key if its ModifyIndex is still version; an error
// wrapping ports.ErrConflict otherwise. Deleting a missing key succeeds.
func (s *KVStore) Delete(ctx context.Context, key string, version uint64) error {
	full := s.prefix + key
	if _, err := s.txn(ctx, &api.KVTxnOp{Verb: api.KVDeleteCAS, Key: full, Index: version}); err != nil {
		return fmt.Errorf("consul kv delete %q at version %d: %w", full, version, err)
	}
	return nil
}

// List returns the keys under prefix (relative to the store's prefix),
// sorted. Cancelling ctx aborts the request.
func (s *KVStore) List(ctx context.Context, prefix string) ([]string, error) {
	keys, _, err := s.c.api.KV().Keys(s.prefix+prefix, "", s.queryOpts(ctx))
	if err != nil {
		return nil, fmt.Errorf("consul kv list %q: %w", s.prefix+prefix, err)
	}
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		rel := strings.TrimPrefix(k, s.prefix)
		if rel == "" || strings.HasSuffix(rel, "/") {
			continue // the prefix itself, or a folder marker
		}
		out = append(out, rel)
	}
	sort.Strings(out)
	return out, nil
}

// txn runs one KV operation in a transaction. A rolled-back CAS (Consul
// answers "index is stale") is ports.ErrConflict.
func (s *KVStore) txn(ctx context.Context, op *api.KVTxnOp) ([]*api.KVPair, error) {
	op.Namespace, op.Partition = s.ns, s.partition
	ok, resp, _, err := s.c.api.Txn().Txn(api.TxnOps{{KV: op}}, s.queryOpts(ctx))
	if err != nil {
		return nil, err
	}
	if !ok {
		var whats []string
		if resp != nil {
			for _, e := range resp.Errors {
				if strings.Contains(e.What, "index is stale") {
					return nil, ports.ErrConflict
				}
				whats = append(whats, e.What)
			}
		}
		return nil, fmt.Errorf("transaction rolled back: %s", strings.Join(whats, "; "))
	}
	out := make([]*api.KVPair, 0, len(resp.Results))
	for _, r := range resp.Results {
		out = append(out, r.KV)
	}
	return out, nil
}
