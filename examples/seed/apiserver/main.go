// Command apiserver is the application's side of the seed, cut down to the
// one thing it does with notifications: POST /notify with
// {"user_id": 42, "json": "..."} invokes the notification Lambda with that
// body, synchronously, through the AWS SDK's Lambda client — exactly how the
// original API server reached it. Pointed at Herald (LAMBDA_ENDPOINT), the
// same call reaches the same function running under Herald instead.
//
// Configuration, from the environment:
//
//	ADDR             where to listen (default 127.0.0.1:8081; port 0 picks one)
//	NOTIFY_FUNCTION  the function to invoke (default "notification")
//	LAMBDA_ENDPOINT  the Lambda API's address; empty means AWS's own
//	AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
//	                 as for any AWS SDK; what is unset here comes from the
//	                 SDK's default chain (shared files, the instance role)
//
// Answers: 200 with the function's result; 502 with the function's error
// document when the function failed, or {"error": ...} when the invocation
// itself did; 400 for a body that is not a notification.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
)

// maxBody bounds a request: the notification's json is at most 128 KiB
// (API Gateway's limit), so 1 MiB is plenty and still cheap to hold.
const maxBody = 1 << 20

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "apiserver:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends, then shuts down gracefully. It prints
// "apiserver listening on http://ADDR" once it listens.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stdout)
	addr := fs.String("addr", or(getenv("ADDR"), "127.0.0.1:8081"), "listen address (ADDR)")
	function := fs.String("function", or(getenv("NOTIFY_FUNCTION"), "notification"), "the function to invoke (NOTIFY_FUNCTION)")
	endpoint := fs.String("lambda-endpoint", getenv("LAMBDA_ENDPOINT"), "the Lambda API's address, e.g. Herald's; empty: AWS (LAMBDA_ENDPOINT)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stdout, nil))

	// One AWS configuration and one client for the life of the server.
	cfg, err := config.LoadDefaultConfig(ctx, awsOptions(getenv)...)
	if err != nil {
		return fmt.Errorf("AWS config: %w", err)
	}
	client := lambda.NewFromConfig(cfg, func(o *lambda.Options) {
		if *endpoint != "" {
			o.BaseEndpoint = aws.String(*endpoint)
		}
	})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           routes(&notifier{lambda: client, function: *function, log: log}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Fprintf(stdout, "apiserver listening on http://%s\n", ln.Addr())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return err
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// awsOptions passes the AWS variables of getenv to the SDK, so that run's
// environment, not only the process's, decides them.
func awsOptions(getenv func(string) string) []func(*config.LoadOptions) error {
	var opts []func(*config.LoadOptions) error
	if r := getenv("AWS_REGION"); r != "" {
		opts = append(opts, config.WithRegion(r))
	}
	if id, secret := getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"); id != "" && secret != "" {
		creds := aws.Credentials{AccessKeyID: id, SecretAccessKey: secret, SessionToken: getenv("AWS_SESSION_TOKEN"), Source: "apiserver environment"}
		opts = append(opts, config.WithCredentialsProvider(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return creds, nil
		})))
	}
	return opts
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// invoker is the Lambda call the API server makes; *lambda.Client is one.
type invoker interface {
	Invoke(ctx context.Context, in *lambda.InvokeInput, opts ...func(*lambda.Options)) (*lambda.InvokeOutput, error)
}

// routes is the API server's whole HTTP surface.
func routes(n *notifier) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /notify", n)
	return mux
}

// notifier serves POST /notify.
type notifier struct {
	lambda   invoker
	function string
	log      *slog.Logger
}

func (n *notifier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", maxBody))
		return
	}
	// Checked here so that a malformed request is the caller's 400, not
	// the function's failure; the body is then passed on as it came.
	var p struct {
		UserID int64   `json:"user_id"`
		JSON   *string `json:"json"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.UserID <= 0 || p.JSON == nil {
		writeError(w, http.StatusBadRequest, `want {"user_id": <positive integer>, "json": "<text>"}`)
		return
	}
	out, err := n.lambda.Invoke(r.Context(), &lambda.InvokeInput{FunctionName: aws.String(n.function), Payload: body})
	if err != nil {
		n.log.Error("notify: invoke failed", "user", p.UserID, "function", n.function, "err", err)
		writeError(w, http.StatusBadGateway, fmt.Sprintf("invoke %s: %v", n.function, err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if out.FunctionError != nil {
		// The function ran and failed: its error document ({"errorMessage",
		// "errorType"}) is the answer, and its kind a header.
		n.log.Warn("notify: function error", "user", p.UserID, "function", n.function, "kind", *out.FunctionError)
		w.Header().Set("X-Amz-Function-Error", *out.FunctionError)
		w.WriteHeader(http.StatusBadGateway)
		w.Write(out.Payload)
		return
	}
	n.log.Info("notify", "user", p.UserID, "function", n.function)
	w.Write(out.Payload)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
