package seed_test

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/herald-gw/herald/routes"
)

// The routes file the README tells people to run is one Herald accepts,
// and it wires the seed as the original was: the connect Lambda decides
// who may connect, the three functions run from bin/ beside the file.
func TestRoutesFile(t *testing.T) {
	c, err := routes.Load("routes.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Auth != routes.AuthIntegration || c.SelectionExpression != "$request.body.action" || !c.AWSCompatible {
		t.Fatalf("settings: %+v", c)
	}
	for key, fn := range map[string]string{routes.KeyConnect: "connect", routes.KeyDisconnect: "disconnect"} {
		if r := c.Routes[key]; r.Kind != routes.KindLambda || r.Function != fn {
			t.Errorf("route %s: %+v", key, r)
		}
	}
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	for name, env := range map[string][]string{
		"connect":      {"DATABASE_URL", "TOKEN_SECRET"},
		"disconnect":   {"DATABASE_URL"},
		"notification": {"APIGW_ENDPOINT", "DATABASE_URL"},
	} {
		fn, ok := c.Functions[name]
		if !ok {
			t.Errorf("no function %s", name)
			continue
		}
		if want := filepath.Join(dir, "bin", name); !slices.Equal(fn.Command, []string{want}) {
			t.Errorf("function %s runs %q, want %s", name, fn.Command, want)
		}
		var keys []string
		for k := range fn.Env {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, env) {
			t.Errorf("function %s's env sets %v, want %v", name, keys, env)
		}
	}
}
