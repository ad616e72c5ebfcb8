package nomad

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/nomad/api"

	"github.com/rollguard/rollguard/ports"
)

// Items of a state variable: "value" holds the value, as text or base64
// as "encoding" says. The encoding item also keeps a variable with an empty
// value from having no non-empty item.
const (
	itemValue    = "value"
	itemEncoding = "encoding"
	encText      = "text"
	encBase64    = "base64"
)

// DefaultPrefix is the Variables path prefix of a rollout's state:
// rollguard/<name>.
func DefaultPrefix(rollout string) string { return "rollguard/" + escapePath(rollout) }

// VarStore is a ports.StateStore on Nomad Variables: each key is one
// variable at <prefix>/<key>, its version the variable's ModifyIndex, and
// every write a check-and-set (?cas=<ModifyIndex>; 0 creates only). Nomad
// answers a lost race with 409 Conflict, which becomes ports.ErrConflict.
//
// Nomad variable paths allow only letters, digits and - _ ~ /; any other
// byte of a key is written as ~XX (hex), and ~ itself as ~7e, so keys such
// as "history/web-1.example.com" round-trip through List.
type VarStore struct {
	c         *Client
	prefix    string
	namespace string
}

// NewVarStore returns rollout's state store in Nomad Variables under
// prefix (default DefaultPrefix(rollout)), in namespace (default: the
// client's, NOMAD_NAMESPACE).
func NewVarStore(c *Client, rollout, prefix, namespace string) (*VarStore, error) {
	if prefix == "" {
		if rollout == "" {
			return nil, errors.New("nomad state store: rollout name or prefix is required")
		}
		prefix = DefaultPrefix(rollout)
	}
	return &VarStore{c: c, prefix: strings.Trim(prefix, "/"), namespace: namespace}, nil
}

// Prefix returns the Variables path prefix the store writes under.
func (s *VarStore) Prefix() string { return s.prefix }

func (s *VarStore) path(key string) string { return s.prefix + "/" + escapePath(key) }

// Get returns key's value and ModifyIndex; nil and 0 when the variable does
// not exist. Cancelling ctx aborts the request.
func (s *VarStore) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	p := s.path(key)
	v, _, err := s.c.api.Variables().Peek(p, query(ctx, &api.QueryOptions{Namespace: s.namespace}))
	if err != nil {
		return nil, 0, fmt.Errorf("nomad variable %q: read: %w", p, err)
	}
	if v == nil {
		return nil, 0, nil
	}
	value, err := decodeItems(v.Items)
	if err != nil {
		return nil, 0, fmt.Errorf("nomad variable %q: %w", p, err)
	}
	return value, v.ModifyIndex, nil
}

// Put writes value if key's ModifyIndex is still version (0: it must not
// exist) and returns the new ModifyIndex; an error wrapping
// ports.ErrConflict when another writer won.
func (s *VarStore) Put(ctx context.Context, key string, value []byte, version uint64) (uint64, error) {
	p := s.path(key)
	v, err := checkedWrite(ctx, s.c, &api.Variable{Namespace: s.namespace, Path: p, Items: encodeItems(value), ModifyIndex: version})
	if err != nil {
		return 0, fmt.Errorf("nomad variable %q at version %d: %w", p, version, err)
	}
	return v.ModifyIndex, nil
}

// Delete removes key if its ModifyIndex is still version (ports.ErrConflict
// otherwise).
func (s *VarStore) Delete(ctx context.Context, key string, version uint64) error {
	p := s.path(key)
	if err := checkedDelete(ctx, s.c, s.namespace, p, version); err != nil {
		return fmt.Errorf("nomad variable %q at version %d: %w", p, version, err)
	}
	return nil
}

// List returns the keys under prefix, sorted, following the API's pages.
func (s *VarStore) List(ctx context.Context, prefix string) ([]string, error) {
	full := s.prefix + "/" + escapePath(prefix)
	out := []string{}
	next := ""
	for {
		metas, qm, err := s.c.api.Variables().PrefixList(full, query(ctx, &api.QueryOptions{Namespace: s.namespace, NextToken: next}))
		if err != nil {
			return nil, fmt.Errorf("nomad variables under %q: %w", full, err)
		}
		for _, m := range metas {
			rel, ok := strings.CutPrefix(m.Path, s.prefix+"/")
			if !ok {
				continue
			}
			out = append(out, unescapePath(rel))
		}
		if qm == nil || qm.NextToken == "" {
			break
		}
		next = qm.NextToken
	}
	sort.Strings(out)
	return out, nil
}

// checkedWrite creates (ModifyIndex 0) or updates v with check-and-set.
func checkedWrite(ctx context.Context, c *Client, v *api.Variable) (*api.Variable, error) {
	var out *api.Variable
	var err error
	w := write(ctx, &api.WriteOptions{Namespace: v.Namespace})
	if v.ModifyIndex == 0 {
		out, _, err = c.api.Variables().CheckedCreate(v, w)
	} else {
		out, _, err = c.api.Variables().CheckedUpdate(v, w)
	}
	return out, casError(err)
}

func checkedDelete(ctx context.Context, c *Client, namespace, path string, version uint64) error {
	_, err := c.api.Variables().CheckedDelete(path, version, write(ctx, &api.WriteOptions{Namespace: namespace}))
	return casError(err)
}

// casError turns Nomad's conflict into ports.ErrConflict. (ErrCASConflict's
// own message dereferences the conflicting variable, which Nomad may send
// empty, so it is not used.)
func casError(err error) error {
	var conflict api.ErrCASConflict
	if errors.As(err, &conflict) {
		var found uint64
		if conflict.Conflict != nil {
			found = conflict.Conflict.ModifyIndex
		}
		return fmt.Errorf("expected ModifyIndex %d, found %d: %w", conflict.CheckIndex, found, ports.ErrConflict)
	}
	return err
}

func encodeItems(value []byte) api.VariableItems {
	if utf8.Valid(value) {
		return api.VariableItems{itemEncoding: encText, itemValue: string(value)}
	}
	return api.VariableItems{itemEncoding: encBase64, itemValue: base64.StdEncoding.EncodeToString(value)}
}

func decodeItems(items api.VariableItems) ([]byte, error) {
	v, ok := items[itemValue]
	if !ok {
		return nil, fmt.Errorf("no %q item: not written by rollguard", itemValue)
	}
	switch items[itemEncoding] {
	case encText:
		return []byte(v), nil
	case encBase64:
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return nil, fmt.Errorf("item %q: %w", itemValue, err)
		}
		return b, nil
	default:
		return nil, fmt.Errorf("unknown encoding %q", items[itemEncoding])
	}
}

// escapePath maps a key to Nomad's path alphabet [A-Za-z0-9-_~/].
func escapePath(key string) string {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		ch := key[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch == '-', ch == '_', ch == '/':
			b.WriteByte(ch)
		default:
			fmt.Fprintf(&b, "~%02x", ch)
		}
	}
	return b.String()
}

func unescapePath(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '~' && i+2 < len(p) {
			if ch, err := strconv.ParseUint(p[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(ch))
				i += 2
				continue
			}
		}
		b.WriteByte(p[i])
	}
	return b.String()
}
