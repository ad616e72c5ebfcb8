package nomad

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/rollguard/rollguard/ports"
)

func TestVarStoreCheckAndSet(t *testing.T) {
	ctx := context.Background()
	fake, c := newFakeVars(t)
	a, err := NewVarStore(c, "web-nginx", "", "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewVarStore(c, "web-nginx", "", "")
	if err != nil {
		t.Fatal(err)
	}

	if value, version, err := a.Get(ctx, "journal"); err != nil || value != nil || version != 0 {
		t.Fatalf("Get of a missing key = %q, %d, %v; want nil, 0, nil", value, version, err)
	}
	v1, err := a.Put(ctx, "journal", []byte(`{"step":1}`), 0)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := b.Put(ctx, "journal", []byte("b"), 0); !errors.Is(err, ports.ErrConflict) {
		t.Fatalf("second create = %v, want ErrConflict", err)
	}
	v2, err := a.Put(ctx, "journal", []byte(`{"step":2}`), v1)
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	_, err = b.Put(ctx, "journal", []byte("b"), v1)
	if !errors.Is(err, ports.ErrConflict) {
		t.Fatalf("stale update = %v, want ErrConflict", err)
	}
	if !strings.Contains(err.Error(), "rollguard/web-nginx/journal") || strings.Contains(err.Error(), testToken) {
		t.Errorf("error %q should name the variable and not the token", err)
	}
	if _, err := b.Put(ctx, "missing", []byte("b"), 7); !errors.Is(err, ports.ErrConflict) {
		t.Errorf("update of a missing variable = %v, want ErrConflict", err)
	}
	value, version, err := b.Get(ctx, "journal")
	if err != nil || string(value) != `{"step":2}` || version != v2 {
		t.Errorf("Get = %q, %d, %v; want a's second write at %d", value, version, err, v2)
	}
	stored := fake.get("rollguard/web-nginx/journal")
	if stored.Items["value"] != `{"step":2}` || stored.Items["encoding"] != "text" {
		t.Errorf("stored items = %v, want readable text", stored.Items)
	}

	if err := b.Delete(ctx, "journal", v1); !errors.Is(err, ports.ErrConflict) {
		t.Errorf("stale Delete = %v, want ErrConflict", err)
	}
	if err := b.Delete(ctx, "journal", v2); err != nil {
		t.Errorf("Delete: %v", err)
	}
	if fake.get("rollguard/web-nginx/journal") != nil {
		t.Error("variable still exists after Delete")
	}
}

func TestVarStoreValuesAndKeysRoundTrip(t *testing.T) {
	ctx := context.Background()
	fake, c := newFakeVars(t)
	s, err := NewVarStore(c, "web nginx", "", "")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key, path string
		value     []byte
	}{
		{"history/web-1.example.com", "rollguard/web~20nginx/history/web-1~2eexample~2ecom", []byte("text")},
		{"history/odd~name", "rollguard/web~20nginx/history/odd~7ename", []byte{0xff, 0x00, 0x01}},
		{"journal", "rollguard/web~20nginx/journal", []byte{}},
	}
	for _, tt := range tests {
		if _, err := s.Put(ctx, tt.key, tt.value, 0); err != nil {
			t.Fatalf("Put(%q): %v", tt.key, err)
		}
		if fake.get(tt.path) == nil {
			t.Errorf("key %q not stored at path %q", tt.key, tt.path)
		}
		got, _, err := s.Get(ctx, tt.key)
		if err != nil || !reflect.DeepEqual(got, tt.value) {
			t.Errorf("Get(%q) = %v, %v; want %v", tt.key, got, err, tt.value)
		}
	}
	fake.set("rollguard/other/history/x", map[string]string{"encoding": "text", "value": "x"})
	for prefix, want := range map[string][]string{
		"history/": {"history/odd~name", "history/web-1.example.com"},
		"":         {"history/odd~name", "history/web-1.example.com", "journal"},
		"none/":    {},
	} {
		got, err := s.List(ctx, prefix)
		if err != nil {
			t.Fatalf("List(%q): %v", prefix, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("List(%q) = %q, want %q", prefix, got, want)
		}
	}
}
