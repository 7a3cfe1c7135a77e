package registry_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/jackc/pgx/v5"

	"github.com/herald-gw/herald/examples/seed/internal/registry"
	"github.com/herald-gw/herald/servicetest"
)

// open migrates a registry in a fresh schema of the test database.
func open(t *testing.T, dsn string) *registry.Registry {
	t.Helper()
	ctx := context.Background()
	r, err := registry.OpenSource(ctx, registry.Source{DatabaseURL: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	if err := r.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

// The schema file deployments apply by hand and the one Migrate applies
// are the same text.
func TestSchemaFile(t *testing.T) {
	b, err := os.ReadFile("../../schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != registry.Schema {
		t.Fatalf("examples/seed/schema.sql and registry.Schema differ:\n%s\n---\n%s", b, registry.Schema)
	}
}

// Migrate is idempotent: a second cold start against the same database
// (and one racing it) keeps the rows the first one's table holds.
func TestMigrateTwice(t *testing.T) {
	dsn := servicetest.Postgres(t)
	ctx := context.Background()
	r := open(t, dsn)
	if err := r.Add(ctx, "c1", 42); err != nil {
		t.Fatal(err)
	}
	if err := r.Migrate(ctx); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	// Two more processes' cold starts at once: the advisory lock makes
	// them take turns instead of colliding on the catalog.
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			other, err := registry.OpenSource(ctx, registry.Source{DatabaseURL: dsn})
			if err != nil {
				errs <- err
				return
			}
			defer other.Close(ctx)
			errs <- other.Migrate(ctx)
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent migrate: %v", err)
		}
	}
	if ids, err := r.List(ctx, 42); err != nil || !slices.Equal(ids, []string{"c1"}) {
		t.Fatalf("after migrating again: %v %v", ids, err)
	}
}

func TestAddListRemove(t *testing.T) {
	ctx := context.Background()
	r := open(t, servicetest.Postgres(t))
	for _, c := range []struct {
		id   string
		user int64
	}{{"a=", 42}, {"b=", 42}, {"c=", 7}} {
		if err := r.Add(ctx, c.id, c.user); err != nil {
			t.Fatal(err)
		}
	}
	// A retried $connect for the same id is not an error.
	if err := r.Add(ctx, "a=", 42); err != nil {
		t.Fatalf("add again: %v", err)
	}
	list := func(user int64) []string {
		t.Helper()
		ids, err := r.List(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(ids)
		return ids
	}
	if got := list(42); !slices.Equal(got, []string{"a=", "b="}) {
		t.Fatalf("user 42: %v", got)
	}
	if got := list(7); !slices.Equal(got, []string{"c="}) {
		t.Fatalf("user 7: %v", got)
	}
	if got := list(1); len(got) != 0 {
		t.Fatalf("user 1: %v", got)
	}

	for _, c := range []struct {
		id  string
		had bool
	}{{"a=", true}, {"a=", false}, {"never", false}} {
		had, err := r.Remove(ctx, c.id)
		if err != nil || had != c.had {
			t.Fatalf("remove %s: %v %v, want %v", c.id, had, err, c.had)
		}
	}
	if got := list(42); !slices.Equal(got, []string{"b="}) {
		t.Fatalf("user 42 after remove: %v", got)
	}
}

// A connection the database dropped — a restart, an idle timeout while the
// Lambda was frozen — is replaced, and the call that found it broken
// succeeds.
func TestReconnect(t *testing.T) {
	ctx := context.Background()
	base := servicetest.Postgres(t)
	app := "seed_registry_" + randomHex(t)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", app) // how the test finds the registry's backend
	u.RawQuery = q.Encode()
	r := open(t, u.String())
	if err := r.Add(ctx, "c1", 42); err != nil {
		t.Fatal(err)
	}

	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	var killed int
	if err := admin.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminate the registry's backend: %d %v", killed, err)
	}

	ids, err := r.List(ctx, 42)
	if err != nil || !slices.Equal(ids, []string{"c1"}) {
		t.Fatalf("list after the connection was dropped: %v %v", ids, err)
	}
}

// fakeSecrets is Secrets Manager's GetSecretValue over its real wire
// protocol (JSON 1.1), holding secrets by id.
func fakeSecrets(t *testing.T, secrets map[string]string) *secretsmanager.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		if r.Header.Get("X-Amz-Target") != "secretsmanager.GetSecretValue" || !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"__type":"InvalidRequestException","message":"unexpected request"}`)
			return
		}
		var in struct{ SecretId string }
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		s, ok := secrets[in.SecretId]
		if !ok {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"__type":"ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}`)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"ARN": in.SecretId, "Name": "seed", "SecretString": s})
	}))
	t.Cleanup(srv.Close)
	return secretsmanager.New(secretsmanager.Options{
		BaseEndpoint: aws.String(srv.URL),
		Region:       "us-east-1",
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "AKID", SecretAccessKey: "secret"}, nil
		}),
		RetryMaxAttempts: 1,
	})
}

// The DSN comes from DATABASE_URL, else from the secret's "dsn"; a bad
// secret is an error that does not quote the secret.
func TestSourceDSN(t *testing.T) {
	const arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:seed-db"
	sm := fakeSecrets(t, map[string]string{
		arn:         `{"dsn":"postgres://seed:pw@db:5432/seed"}`,
		arn + "-no": `postgres://seed:hunter2@db/seed`,
		arn + "-na": `{"username":"seed","password":"hunter2"}`,
	})
	for _, c := range []struct {
		name    string
		src     registry.Source
		want    string
		wantErr string
	}{
		{"url wins", registry.Source{DatabaseURL: "postgres://u@h/d", SecretARN: arn, Secrets: sm}, "postgres://u@h/d", ""},
		{"secret", registry.Source{SecretARN: arn, Secrets: sm}, "postgres://seed:pw@db:5432/seed", ""},
		{"secret not JSON", registry.Source{SecretARN: arn + "-no", Secrets: sm}, "", "not JSON"},
		{"secret without dsn", registry.Source{SecretARN: arn + "-na", Secrets: sm}, "", "not JSON"},
		{"no such secret", registry.Source{SecretARN: arn + "-missing", Secrets: sm}, "", "ResourceNotFoundException"},
		{"neither", registry.Source{}, "", "DATABASE_URL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.src.DSN(context.Background())
			if c.wantErr == "" {
				if err != nil || got != c.want {
					t.Fatalf("got %q, %v; want %q", got, err, c.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("got %q, %v; want an error with %q", got, err, c.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("the error quotes the secret: %v", err)
			}
		})
	}
}

// OpenSource with a secret connects to the database the secret names.
func TestOpenFromSecret(t *testing.T) {
	dsn := servicetest.Postgres(t)
	const arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:seed-db"
	secret, _ := json.Marshal(map[string]string{"dsn": dsn})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := registry.OpenSource(ctx, registry.Source{SecretARN: arn, Secrets: fakeSecrets(t, map[string]string{arn: string(secret)})})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	if err := r.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(ctx, "s1", 9); err != nil {
		t.Fatal(err)
	}
}

func randomHex(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
