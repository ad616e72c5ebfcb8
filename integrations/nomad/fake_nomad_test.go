package nomad

import (
	"testing"

	"github.com/hashicorp/nomad/api"

	"github.com/rollguard/rollguard/integrations/nomad/nomadtest"
)

const testToken = "s3cr3t-nomad-token"

// fakeVars is this package's view of a nomadtest.Server.
type fakeVars struct {
	srv *nomadtest.Server
	// puts receives the variable path of every PUT, successful or not.
	puts <-chan string
}

// newFakeVars starts a fake Nomad Variables API that accepts testToken and
// returns a client of it. The test fails if the code under test sent a
// request the fake does not model.
func newFakeVars(t *testing.T) (*fakeVars, *Client) {
	t.Helper()
	srv := nomadtest.New(testToken)
	t.Cleanup(func() {
		srv.Close()
		for _, u := range srv.Unexpected() {
			t.Errorf("fake nomad: unexpected request %s", u)
		}
	})
	c, err := New(&api.Config{Address: srv.URL, SecretID: testToken}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeVars{srv: srv, puts: srv.Puts()}, c
}

func (f *fakeVars) get(path string) *api.Variable            { return f.srv.Get(path) }
func (f *fakeVars) set(path string, items api.VariableItems) { f.srv.Set(path, items) }
func (f *fakeVars) setFailing(b bool)                        { f.srv.SetFailing(b) }
