package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/awsapi"
	"github.com/herald-gw/herald/lambdahost"
	"github.com/herald-gw/herald/routes"
)

// builtinNotify is the function Herald itself provides: the original
// notification Lambda's payload, {"user_id","json"}, delivered as
// POST /v1/notify delivers it. The original API server's lambda.Invoke
// works against Herald with no Lambda at all by naming it.
const builtinNotify = "herald-notify"

// loadRoutes reads the route set of cfg: the routes file, or the inline
// JSON of HERALD_ROUTES (relative commands resolve against the working
// directory). nil when neither is set.
func loadRoutes(cfg config) (*routes.Config, error) {
	switch {
	case cfg.RoutesFile != "":
		return routes.Load(cfg.RoutesFile)
	case cfg.Routes != "":
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("HERALD_ROUTES: %w", err)
		}
		return routes.Parse([]byte(cfg.Routes), "json", "HERALD_ROUTES", wd)
	}
	return nil, nil
}

// startFunctions returns the runtime host of rs's functions (nil when it
// has none). Each function's environment gets, before its own env, what
// a Lambda on AWS finds there and needs to reach Herald: Herald's SigV4
// credentials as the function's own (on AWS: its role's), and Herald as
// the endpoint of the API Gateway Management API and of Lambda, through
// the SDK's service-specific endpoint variables — so a function that
// builds its clients from config.LoadDefaultConfig reaches Herald without
// a line changed.
func startFunctions(rs *routes.Config, cfg config, base string, log *slog.Logger) (*lambdahost.Host, error) {
	if rs == nil || len(rs.Functions) == 0 {
		return nil, nil
	}
	if _, ok := rs.Functions[builtinNotify]; ok {
		return nil, fmt.Errorf("routes: function %q is Herald's own; name yours otherwise", builtinNotify)
	}
	env := map[string]string{
		"AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI": base,
		"AWS_ENDPOINT_URL_LAMBDA":                  base,
	}
	if cfg.AWSAccessKeyID != "" {
		env["AWS_ACCESS_KEY_ID"] = cfg.AWSAccessKeyID
		env["AWS_SECRET_ACCESS_KEY"] = cfg.AWSSecretKey
	}
	var fns []lambdahost.Function
	for _, name := range rs.FunctionNames() {
		f := rs.Functions[name]
		fns = append(fns, lambdahost.Function{
			Name: name, Command: f.Command, Dir: f.Dir, Env: f.Env,
			Timeout: time.Duration(f.Timeout), Concurrency: f.Concurrency, MemoryMB: f.MemoryMB,
		})
	}
	return lambdahost.New(lambdahost.Options{Region: cfg.AWSRegion, Env: env, Log: log}, fns...)
}

// functionSet is every function the Invoke API and the route set reach:
// the routes file's, run by the runtime host, and the built-in
// herald-notify. It implements awsapi.Functions and FunctionChecker.
type functionSet struct {
	host   *lambdahost.Host // nil without functions
	notify func(ctx context.Context, payload []byte) ([]byte, error)
}

func (f *functionSet) Has(name string) bool {
	return name == builtinNotify || f.host != nil && f.host.Has(name)
}

func (f *functionSet) Invoke(ctx context.Context, name string, payload []byte) (awsapi.Invocation, error) {
	if name == builtinNotify {
		out, err := f.notify(ctx, payload)
		switch herald.ErrorCodeOf(err) {
		case "":
			return awsapi.Invocation{Payload: out}, nil
		case herald.EUnavailable, herald.EInternal:
			return awsapi.Invocation{}, err
		}
		// A payload /v1/notify refuses is the function's error, as the
		// original Lambda would have returned one.
		doc, _ := json.Marshal(map[string]string{"errorType": string(herald.ErrorCodeOf(err)), "errorMessage": herald.ErrorMessageOf(err)})
		return awsapi.Invocation{Payload: doc, Error: "Unhandled"}, nil
	}
	if f.host == nil || !f.host.Has(name) {
		return awsapi.Invocation{}, herald.Errorf(herald.ENotFound, "no function %q", name)
	}
	res, err := f.host.Invoke(ctx, name, payload)
	return awsapi.Invocation{Payload: res.Payload, Error: res.Error}, err
}

// invokeRoute adapts the set to the route set's lambda integrations.
func (f *functionSet) invokeRoute(ctx context.Context, name string, payload []byte) ([]byte, string, error) {
	inv, err := f.Invoke(ctx, name, payload)
	return inv.Payload, inv.Error, err
}

// localBase is the URL functions reach Herald at: the listener's
// address, with loopback standing for "every interface".
func localBase(scheme string, a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return scheme + "://" + a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return scheme + "://" + strings.TrimSuffix(net.JoinHostPort(host, port), "/")
}
