package awsapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/api"
	"github.com/herald-gw/herald/hub"
)

// funcMap is the Functions seam of these tests: each name runs a Go
// function.
type funcMap map[string]func(ctx context.Context, payload []byte) (Invocation, error)

func (m funcMap) Invoke(ctx context.Context, name string, payload []byte) (Invocation, error) {
	f, ok := m[name]
	if !ok {
		return Invocation{}, herald.Errorf(herald.ENotFound, "no function %q", name)
	}
	return f(ctx, payload)
}

// checkedFuncs is a funcMap that can also say which functions exist.
type checkedFuncs struct{ funcMap }

func (c checkedFuncs) Has(name string) bool { _, ok := c.funcMap[name]; return ok }

// calls records what a function was invoked with.
type calls struct {
	mu       sync.Mutex
	payloads [][]byte
	ran      chan struct{} // one value per invocation
}

func newCalls() *calls { return &calls{ran: make(chan struct{}, 100)} }

func (c *calls) record(p []byte) {
	c.mu.Lock()
	c.payloads = append(c.payloads, append([]byte(nil), p...))
	c.mu.Unlock()
	c.ran <- struct{}{}
}

func (c *calls) all() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.payloads...)
}

// waitRan waits for the next invocation, bounded so a bug fails instead
// of hanging.
func (c *calls) waitRan(t *testing.T) {
	t.Helper()
	select {
	case <-c.ran:
	case <-time.After(30 * time.Second):
		t.Fatal("the function did not run within 30s")
	}
}

// echo answers with its payload.
func echo(c *calls) func(context.Context, []byte) (Invocation, error) {
	return func(_ context.Context, p []byte) (Invocation, error) {
		c.record(p)
		return Invocation{Payload: p}, nil
	}
}

// serveInvoke runs the Invoke API on a real HTTP server, routed as
// api/routes.go routes it.
func serveInvoke(t *testing.T, creds Credentials, keys APIKeys, fns Functions) (*httptest.Server, *Handlers) {
	t.Helper()
	h := NewWithKeys(hub.New(0), slog.New(slog.DiscardHandler), creds, keys)
	mux := http.NewServeMux()
	mux.Handle("POST /2015-03-31/functions/{name}/invocations", h.Invoke(fns))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return srv, h
}

// newLambdaClient is the unmodified SDK client, configured as a user of
// Herald would: static credentials, a region, Herald's URL.
func newLambdaClient(endpoint string, creds Credentials, region string, opts ...func(*lambda.Options)) *lambda.Client {
	cfg := aws.Config{
		Region: region,
		Credentials: aws.NewCredentialsCache(aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey, Source: "test"}, nil
		})),
	}
	return lambda.NewFromConfig(cfg, append([]func(*lambda.Options){func(o *lambda.Options) {
		o.BaseEndpoint = aws.String(endpoint)
	}}, opts...)...)
}

// noRetries makes a failure the SDK would retry (5xx, 429) surface at
// once, and happen once.
func noRetries(o *lambda.Options) { o.Retryer = aws.NopRetryer{} }

// A synchronous invocation hands the payload to the function and its
// answer back, byte for byte, whichever way the function is named.
func TestInvokeRequestResponse(t *testing.T) {
	c := newCalls()
	srv, _ := serveInvoke(t, testCreds, nil, funcMap{"echo": echo(c)})
	client := newLambdaClient(srv.URL, testCreds, "us-east-1")
	// Odd spacing, escapes and non-ASCII: nothing may re-encode them.
	payload := []byte("{\"b\" : [1,2 ,3],\n \"a\":\"w\u00f6rld \\u00e9\\n\", \"n\":1e3 }")

	for _, c2 := range []struct {
		name, fn, qualifier string
	}{
		{"plain name", "echo", ""},
		{"name:$LATEST", "echo:$LATEST", ""},
		{"Qualifier $LATEST", "echo", "$LATEST"},
		{"both $LATEST", "echo:$LATEST", "$LATEST"},
		{"partial ARN", "123456789012:function:echo", ""},
		{"partial ARN with qualifier", "123456789012:function:echo:$LATEST", ""},
		{"ARN", "arn:aws:lambda:us-east-1:123456789012:function:echo", ""},
		{"ARN of another region and partition", "arn:aws-cn:lambda:cn-north-1:000000000000:function:echo", ""},
		{"ARN with qualifier", "arn:aws:lambda:eu-west-1:123456789012:function:echo:$LATEST", "$LATEST"},
	} {
		t.Run(c2.name, func(t *testing.T) {
			in := &lambda.InvokeInput{FunctionName: aws.String(c2.fn), Payload: payload}
			if c2.qualifier != "" {
				in.Qualifier = aws.String(c2.qualifier)
			}
			out, err := client.Invoke(t.Context(), in)
			if err != nil {
				t.Fatalf("Invoke: %v", err)
			}
			c.waitRan(t)
			if out.StatusCode != 200 || !bytes.Equal(out.Payload, payload) {
				t.Errorf("status %d, payload %q; want 200, %q", out.StatusCode, out.Payload, payload)
			}
			if got := aws.ToString(out.ExecutedVersion); got != "$LATEST" {
				t.Errorf("ExecutedVersion %q", got)
			}
			if out.FunctionError != nil {
				t.Errorf("FunctionError %q", *out.FunctionError)
			}
			if id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata); len(id) != 36 {
				t.Errorf("request id %q, want a UUID", id)
			}
			if got := c.all(); !bytes.Equal(got[len(got)-1], payload) {
				t.Errorf("the function got %q", got[len(got)-1])
			}
		})
	}

	t.Run("no payload is {}", func(t *testing.T) {
		out, err := client.Invoke(t.Context(), &lambda.InvokeInput{FunctionName: aws.String("echo")})
		if err != nil {
			t.Fatal(err)
		}
		c.waitRan(t)
		if string(out.Payload) != "{}" {
			t.Errorf("payload %q, want {}", out.Payload)
		}
	})
}

// A function that fails answers 200 all the same: the error document is
// the payload, and X-Amz-Function-Error says it is one.
func TestInvokeFunctionError(t *testing.T) {
	doc := []byte(`{"errorMessage":"boom","errorType":"errorString"}`)
	srv, _ := serveInvoke(t, testCreds, nil, funcMap{"fail": func(context.Context, []byte) (Invocation, error) {
		return Invocation{Payload: doc, Error: "Unhandled"}, nil
	}})
	out, err := newLambdaClient(srv.URL, testCreds, "us-east-1").Invoke(t.Context(),
		&lambda.InvokeInput{FunctionName: aws.String("fail"), Payload: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	if out.StatusCode != 200 || aws.ToString(out.FunctionError) != "Unhandled" || !bytes.Equal(out.Payload, doc) {
		t.Errorf("status %d, FunctionError %q, payload %q", out.StatusCode, aws.ToString(out.FunctionError), out.Payload)
	}
}

// An Event invocation is answered 202 before the function has run; the
// function then runs in the background, with a context of its own that has
// a deadline, not the request's.
func TestInvokeEvent(t *testing.T) {
	started := make(chan context.Context, 1)
	release := make(chan struct{})
	c := newCalls()
	srv, _ := serveInvoke(t, testCreds, nil, funcMap{"slow": func(ctx context.Context, p []byte) (Invocation, error) {
		started <- ctx
		<-release // held until the client has its answer
		c.record(p)
		return Invocation{Payload: []byte(`"ignored"`)}, nil
	}})
	out, err := newLambdaClient(srv.URL, testCreds, "us-east-1").Invoke(t.Context(), &lambda.InvokeInput{
		FunctionName:   aws.String("slow"),
		InvocationType: types.InvocationTypeEvent,
		Payload:        []byte(`{"e":1}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	if out.StatusCode != 202 || len(out.Payload) != 0 {
		t.Errorf("status %d, payload %q; want 202 and none", out.StatusCode, out.Payload)
	}
	var ctx context.Context
	select {
	case ctx = <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the function did not start within 30s")
	}
	if _, ok := ctx.Deadline(); !ok {
		t.Error("the background invocation's context has no deadline")
	}
	if ctx.Err() != nil {
		t.Errorf("the background context ended with the request: %v", ctx.Err())
	}
	close(release)
	c.waitRan(t)
	if got := c.all(); string(got[0]) != `{"e":1}` {
		t.Errorf("the function got %q", got[0])
	}
}

// syncBuffer is a log destination the background invocations may write to
// while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// An Event invocation that fails is only seen in Herald's log: which
// function, and how, with the request id; never the payload or the
// function's error document.
func TestInvokeEventFailuresLogged(t *testing.T) {
	var logs syncBuffer
	h := NewWithKeys(hub.New(0), slog.New(slog.NewTextHandler(&logs, nil)), testCreds, nil)
	fns := funcMap{
		"throws": func(context.Context, []byte) (Invocation, error) {
			return Invocation{Payload: []byte(`{"errorMessage":"secret-in-error"}`), Error: "Unhandled"}, nil
		},
		"cannot": func(context.Context, []byte) (Invocation, error) {
			return Invocation{}, herald.Errorf(herald.EUnavailable, "the Lambda host is shutting down")
		},
	}
	mux := http.NewServeMux()
	mux.Handle("POST /2015-03-31/functions/{name}/invocations", h.Invoke(fns))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	client := newLambdaClient(srv.URL, testCreds, "us-east-1")
	var ids []string
	for _, name := range []string{"throws", "cannot"} {
		out, err := client.Invoke(t.Context(), &lambda.InvokeInput{
			FunctionName: aws.String(name), InvocationType: types.InvocationTypeEvent, Payload: []byte(`{"p":"secret-in-payload"}`),
		})
		if err != nil || out.StatusCode != 202 {
			t.Fatalf("%s: %+v, %v", name, out, err)
		}
		id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
		ids = append(ids, id)
	}
	if err := h.Shutdown(t.Context()); err != nil { // waits for both
		t.Fatal(err)
	}
	got := logs.String()
	for _, want := range []string{
		"function=throws function_error=Unhandled", "request_id=" + ids[0],
		"function=cannot", "the Lambda host is shutting down", "request_id=" + ids[1],
	} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "secret-in") {
		t.Errorf("log holds a payload:\n%s", got)
	}
}

// DryRun checks the request and runs nothing.
func TestInvokeDryRun(t *testing.T) {
	c := newCalls()
	srv, _ := serveInvoke(t, testCreds, nil, funcMap{"echo": echo(c)})
	out, err := newLambdaClient(srv.URL, testCreds, "us-east-1").Invoke(t.Context(), &lambda.InvokeInput{
		FunctionName:   aws.String("echo"),
		InvocationType: types.InvocationTypeDryRun,
		Payload:        []byte(`{}`),
	})
	if err != nil || out.StatusCode != 204 {
		t.Fatalf("status %v, err %v; want 204", out, err)
	}
	if got := c.all(); len(got) != 0 {
		t.Errorf("DryRun ran the function: %q", got)
	}
}

// Every refusal reaches the SDK as Lambda's typed exception, with the
// status and message AWS would send.
func TestInvokeErrors(t *testing.T) {
	c := newCalls()
	fns := funcMap{
		"echo": echo(c),
		"busy": func(context.Context, []byte) (Invocation, error) {
			return Invocation{}, herald.Errorf(herald.ETooManyRequests, "function busy is at its concurrency limit (2)")
		},
		"stopping": func(context.Context, []byte) (Invocation, error) {
			return Invocation{}, herald.Errorf(herald.EUnavailable, "Herald is stopping")
		},
		"broken": func(context.Context, []byte) (Invocation, error) {
			return Invocation{}, errors.New("exec ./bin/broken: no such file")
		},
		"picky": func(context.Context, []byte) (Invocation, error) {
			return Invocation{}, herald.Errorf(herald.EInvalidRequest, "user_id is missing")
		},
	}
	checked, _ := serveInvoke(t, testCreds, nil, checkedFuncs{fns})
	unchecked, _ := serveInvoke(t, testCreds, nil, fns)
	big := func(n int) []byte { return append(append([]byte(`"`), bytes.Repeat([]byte("x"), n-2)...), '"') }

	for _, tc := range []struct {
		name    string
		region  string // the client's; us-east-1 when ""
		in      lambda.InvokeInput
		status  int
		want    any    // pointer to the SDK's error type
		message string // part of its message
	}{
		{name: "unknown function", in: lambda.InvokeInput{FunctionName: aws.String("nope")},
			status: 404, want: new(*types.ResourceNotFoundException),
			message: "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope"},
		{name: "unknown function, region of the signature", region: "eu-west-1", in: lambda.InvokeInput{FunctionName: aws.String("nope")},
			status: 404, want: new(*types.ResourceNotFoundException),
			message: "Function not found: arn:aws:lambda:eu-west-1:000000000000:function:nope"},
		{name: "unknown function by ARN", in: lambda.InvokeInput{FunctionName: aws.String("arn:aws:lambda:ap-south-1:123456789012:function:nope")},
			status: 404, want: new(*types.ResourceNotFoundException),
			message: "Function not found: arn:aws:lambda:ap-south-1:123456789012:function:nope"},
		{name: "Event for an unknown function", in: lambda.InvokeInput{FunctionName: aws.String("nope"), InvocationType: types.InvocationTypeEvent},
			status: 404, want: new(*types.ResourceNotFoundException), message: "function:nope"},
		{name: "DryRun for an unknown function", in: lambda.InvokeInput{FunctionName: aws.String("nope"), InvocationType: types.InvocationTypeDryRun},
			status: 404, want: new(*types.ResourceNotFoundException), message: "function:nope"},
		{name: "version qualifier", in: lambda.InvokeInput{FunctionName: aws.String("echo"), Qualifier: aws.String("3")},
			status: 404, want: new(*types.ResourceNotFoundException), message: "function:echo:3 (Herald serves only $LATEST"},
		{name: "alias in the name", in: lambda.InvokeInput{FunctionName: aws.String("echo:prod")},
			status: 404, want: new(*types.ResourceNotFoundException), message: "function:echo:prod (Herald serves only $LATEST"},
		{name: "qualifiers differ", in: lambda.InvokeInput{FunctionName: aws.String("echo:$LATEST"), Qualifier: aws.String("prod")},
			status: 400, want: new(*types.InvalidParameterValueException), message: "does not match the specified qualifier"},
		{name: "name with a slash", in: lambda.InvokeInput{FunctionName: aws.String("a/b")},
			status: 400, want: new(*types.InvalidParameterValueException), message: `function name "a/b"`},
		{name: "name too long", in: lambda.InvokeInput{FunctionName: aws.String(strings.Repeat("f", 65))},
			status: 400, want: new(*types.InvalidParameterValueException), message: "1 to 64"},
		{name: "malformed ARN", in: lambda.InvokeInput{FunctionName: aws.String("arn:aws:s3:us-east-1:123456789012:function:echo")},
			status: 400, want: new(*types.InvalidParameterValueException), message: "is not a function ARN"},
		{name: "bad Qualifier", in: lambda.InvokeInput{FunctionName: aws.String("echo"), Qualifier: aws.String("a b")},
			status: 400, want: new(*types.InvalidParameterValueException), message: "Qualifier"},
		{name: "unknown invocation type", in: lambda.InvokeInput{FunctionName: aws.String("echo"), InvocationType: "Sync"},
			status: 400, want: new(*types.InvalidParameterValueException), message: `"Sync"`},
		{name: "payload not JSON", in: lambda.InvokeInput{FunctionName: aws.String("echo"), Payload: []byte("hello")},
			status: 400, want: new(*types.InvalidRequestContentException), message: "Could not parse request body into json"},
		{name: "payload truncated JSON", in: lambda.InvokeInput{FunctionName: aws.String("echo"), Payload: []byte(`{"a":`)},
			status: 400, want: new(*types.InvalidRequestContentException), message: "Could not parse request body into json"},
		{name: "payload over 6 MB", in: lambda.InvokeInput{FunctionName: aws.String("echo"), Payload: big(MaxInvokePayload + 1)},
			status: 413, want: new(*types.RequestTooLargeException), message: "smaller than 6291456 bytes"},
		{name: "Event payload over 1 MB", in: lambda.InvokeInput{FunctionName: aws.String("echo"), InvocationType: types.InvocationTypeEvent, Payload: big(MaxEventPayload + 1)},
			status: 413, want: new(*types.RequestTooLargeException), message: "smaller than 1048576 bytes"},
		{name: "function at its limit", in: lambda.InvokeInput{FunctionName: aws.String("busy")},
			status: 429, want: new(*types.TooManyRequestsException), message: "concurrency limit"},
		{name: "Herald stopping", in: lambda.InvokeInput{FunctionName: aws.String("stopping")},
			status: 503, want: new(*types.ServiceException), message: "Herald is stopping"},
		{name: "function cannot run", in: lambda.InvokeInput{FunctionName: aws.String("broken")},
			status: 500, want: new(*types.ServiceException), message: "internal error"},
		{name: "Functions refuses the payload", in: lambda.InvokeInput{FunctionName: aws.String("picky")},
			status: 400, want: new(*types.InvalidRequestContentException), message: "user_id is missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			region := tc.region
			if region == "" {
				region = "us-east-1"
			}
			in := tc.in
			_, err := newLambdaClient(checked.URL, testCreds, region, noRetries).Invoke(t.Context(), &in)
			checkAPIError(t, err, tc.status, tc.want, tc.message)
			if tc.name == "function cannot run" && strings.Contains(err.Error(), "no such file") {
				t.Errorf("a 500 leaks the cause: %v", err)
			}
		})
	}
	if got := c.all(); len(got) != 0 {
		t.Errorf("a refused request ran the function: %q", got)
	}

	// Without FunctionChecker, an Event for an unknown function can only
	// be refused after the 202: Herald logs it.
	out, err := newLambdaClient(unchecked.URL, testCreds, "us-east-1").Invoke(t.Context(),
		&lambda.InvokeInput{FunctionName: aws.String("nope"), InvocationType: types.InvocationTypeEvent})
	if err != nil || out.StatusCode != 202 {
		t.Errorf("Event without FunctionChecker: %+v, %v; want 202", out, err)
	}

	// The throttling reason reaches the SDK.
	_, err = newLambdaClient(checked.URL, testCreds, "us-east-1", noRetries).Invoke(t.Context(),
		&lambda.InvokeInput{FunctionName: aws.String("busy")})
	var tm *types.TooManyRequestsException
	if !errors.As(err, &tm) || tm.Reason != types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded || aws.ToString(tm.Type) != "User" {
		t.Errorf("TooManyRequestsException %+v", tm)
	}
}

// checkAPIError checks that err is the SDK's typed error want (a pointer
// to a pointer of the type; nil for any smithy.APIError), from a reply of
// the given status, with message in its text.
func checkAPIError(t *testing.T, err error, status int, want any, message string) {
	t.Helper()
	if err == nil {
		t.Fatal("no error")
	}
	t.Log(err)
	if want != nil && !errors.As(err, want) {
		t.Fatalf("error %T %v, want %T", errors.Unwrap(err), err, want)
	}
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != status {
		t.Errorf("HTTP status of %v, want %d", err, status)
	} else if re.ServiceRequestID() == "" {
		t.Error("the reply has no request id")
	}
	if !strings.Contains(err.Error(), message) {
		t.Errorf("error %q lacks %q", err, message)
	}
	if strings.Contains(err.Error(), testCreds.SecretAccessKey) {
		t.Errorf("error leaks the secret: %v", err)
	}
}

// apiErrorCode is the error code of an error that is not in Lambda's
// model (AWS's front door answers those): the SDK returns a generic
// smithy.APIError holding the X-Amzn-ErrorType.
func apiErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// A request not signed for lambda with Herald's key pair is refused with
// the error code AWS's front door uses, which the SDK surfaces with
// Herald's reason.
func TestInvokeSigV4Refused(t *testing.T) {
	c := newCalls()
	srv, _ := serveInvoke(t, testCreds, nil, funcMap{"echo": echo(c)})
	in := &lambda.InvokeInput{FunctionName: aws.String("echo"), Payload: []byte(`{}`)}

	t.Run("wrong secret", func(t *testing.T) {
		bad := Credentials{AccessKeyID: testCreds.AccessKeyID, SecretAccessKey: "not-the-secret"}
		_, err := newLambdaClient(srv.URL, bad, "us-east-1").Invoke(t.Context(), in)
		checkAPIError(t, err, 403, nil, "signature mismatch")
		if code := apiErrorCode(err); code != "InvalidSignatureException" {
			t.Errorf("error code %q, want InvalidSignatureException", code)
		}
	})
	t.Run("unknown access key", func(t *testing.T) {
		bad := Credentials{AccessKeyID: "AKIDSOMEONEELSE", SecretAccessKey: testCreds.SecretAccessKey}
		_, err := newLambdaClient(srv.URL, bad, "us-east-1").Invoke(t.Context(), in)
		checkAPIError(t, err, 403, nil, `unknown access key id "AKIDSOMEONEELSE"`)
		if code := apiErrorCode(err); code != "UnrecognizedClientException" {
			t.Errorf("error code %q, want UnrecognizedClientException", code)
		}
	})
	t.Run("no SigV4 configured", func(t *testing.T) {
		bare, _ := serveInvoke(t, Credentials{}, nil, funcMap{"echo": echo(c)})
		_, err := newLambdaClient(bare.URL, testCreds, "us-east-1").Invoke(t.Context(), in)
		checkAPIError(t, err, 403, nil, "SigV4 is not configured")
		if code := apiErrorCode(err); code != "UnrecognizedClientException" {
			t.Errorf("error code %q, want UnrecognizedClientException", code)
		}
	})
	t.Run("signed for execute-api", func(t *testing.T) {
		body := []byte(`{}`)
		req := sign(t, http.MethodPost, "/2015-03-31/functions/echo/invocations", body, nil, testCreds, ServiceExecuteAPI, "us-east-1", time.Now())
		req.URL.Host = strings.TrimPrefix(srv.URL, "http://")
		req.Host = req.URL.Host
		code, msg := rawCall(t, req)
		if code != "InvalidSignatureException" || !strings.Contains(msg, `service "execute-api", want "lambda"`) {
			t.Errorf("%s: %s", code, msg)
		}
	})
	t.Run("no Authorization", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(t.Context(), "POST", srv.URL+"/2015-03-31/functions/echo/invocations", strings.NewReader(`{}`))
		code, msg := rawCall(t, req)
		if code != "MissingAuthenticationTokenException" || msg != "Missing Authentication Token" {
			t.Errorf("%s: %s", code, msg)
		}
	})
	if got := c.all(); len(got) != 0 {
		t.Errorf("a refused request ran the function: %q", got)
	}
}

// rawCall sends req and returns the reply's 403 error type and message.
func rawCall(t *testing.T, req *http.Request) (errType, message string) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 403 {
		t.Errorf("status %d, want 403: %s", res.StatusCode, body)
	}
	var e lambdaErrorBody
	if err := json.Unmarshal(body, &e); err != nil {
		t.Errorf("body %q: %v", body, err)
	}
	return res.Header.Get("X-Amzn-ErrorType"), e.Message
}

// publishKeys is api.KeySet with the PublishKeys method the server API
// gives it: the publish scope.
type publishKeys struct{ *api.KeySet }

func (k publishKeys) AuthorizePublish(r *http.Request) (string, error) {
	return k.Authorize(r, api.ScopePublish)
}

// connectionsOnly is an APIKeys that is not a PublishKeys.
type connectionsOnly struct{ k *api.KeySet }

func (c connectionsOnly) AuthorizeConnections(r *http.Request) (string, error) {
	return c.k.AuthorizeConnections(r)
}

// The Bearer alternative takes a key with the publish scope (or admin);
// keys that cannot say so are refused.
func TestInvokeBearerKeys(t *testing.T) {
	c := newCalls()
	fns := funcMap{"echo": echo(c)}
	for _, tc := range []struct {
		name    string
		keys    func(*testing.T) APIKeys
		auth    string
		status  int
		errType string
		message string
	}{
		{"publish key", func(t *testing.T) APIKeys { return publishKeys{testKeys(t)} }, "Bearer " + sendKey, 200, "", ""},
		{"legacy key (admin)", func(t *testing.T) APIKeys { return publishKeys{testKeys(t)} }, "bearer " + legacyKey, 200, "", ""},
		{"single key of New", func(*testing.T) APIKeys { return singleKey(legacyKey) }, "Bearer " + legacyKey, 200, "", ""},
		{"connections key", func(t *testing.T) APIKeys { return publishKeys{testKeys(t)} }, "Bearer " + connsKey, 403,
			"AccessDeniedException", `API key "ops" lacks the publish scope`},
		{"unknown key", func(t *testing.T) APIKeys { return publishKeys{testKeys(t)} }, "Bearer nope", 403,
			"UnrecognizedClientException", "missing or invalid API key"},
		{"keys without PublishKeys", func(t *testing.T) APIKeys { return connectionsOnly{testKeys(t)} }, "Bearer " + sendKey, 403,
			"UnrecognizedClientException", "API keys are not accepted"},
		{"no keys", func(*testing.T) APIKeys { return nil }, "Bearer " + sendKey, 403,
			"UnrecognizedClientException", "API keys are not accepted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := serveInvoke(t, testCreds, tc.keys(t), fns)
			req, _ := http.NewRequestWithContext(t.Context(), "POST", srv.URL+"/2015-03-31/functions/echo/invocations", strings.NewReader(`{"k":1}`))
			req.Header.Set("Authorization", tc.auth)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tc.status, body)
			}
			if tc.status == 200 {
				c.waitRan(t)
				if string(body) != `{"k":1}` {
					t.Errorf("body %q", body)
				}
				return
			}
			var e lambdaErrorBody
			_ = json.Unmarshal(body, &e)
			if got := res.Header.Get("X-Amzn-ErrorType"); got != tc.errType || !strings.Contains(e.Message, tc.message) {
				t.Errorf("%s %q, want %s with %q", got, e.Message, tc.errType, tc.message)
			}
		})
	}
}

// Shutdown refuses new Event invocations, and cancels the running ones
// once its context is done, returning when they have.
func TestInvokeShutdown(t *testing.T) {
	started := make(chan struct{}, 1)
	srv, h := serveInvoke(t, testCreds, nil, checkedFuncs{funcMap{"wait": func(ctx context.Context, _ []byte) (Invocation, error) {
		started <- struct{}{}
		<-ctx.Done()
		return Invocation{}, ctx.Err()
	}}})
	client := newLambdaClient(srv.URL, testCreds, "us-east-1", noRetries)
	event := &lambda.InvokeInput{FunctionName: aws.String("wait"), InvocationType: types.InvocationTypeEvent}
	if _, err := client.Invoke(t.Context(), event); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the function did not start within 30s")
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel() // no grace: cancel what runs
	if err := h.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown = %v, want context.Canceled", err)
	}
	h.events.mu.Lock()
	running := h.events.running
	h.events.mu.Unlock()
	if running != 0 {
		t.Errorf("%d invocations still running after Shutdown", running)
	}

	_, err := client.Invoke(t.Context(), event)
	checkAPIError(t, err, 503, new(*types.ServiceException), "shutting down")
	if err := h.Shutdown(t.Context()); err != nil {
		t.Errorf("a second Shutdown = %v", err)
	}
}

// Past MaxPendingEvents running Event invocations, a new one is throttled
// rather than queued without bound.
func TestInvokeEventsBounded(t *testing.T) {
	c := newCalls()
	srv, h := serveInvoke(t, testCreds, nil, funcMap{"echo": echo(c)})
	release := make(chan struct{})
	for range MaxPendingEvents {
		if err := h.events.start(func(context.Context) { <-release }); err != nil {
			t.Fatal(err)
		}
	}
	client := newLambdaClient(srv.URL, testCreds, "us-east-1", noRetries)
	event := &lambda.InvokeInput{FunctionName: aws.String("echo"), InvocationType: types.InvocationTypeEvent}
	_, err := client.Invoke(t.Context(), event)
	checkAPIError(t, err, 429, new(*types.TooManyRequestsException), "Rate Exceeded")
	var tm *types.TooManyRequestsException
	if errors.As(err, &tm) && tm.Reason != types.ThrottleReasonConcurrentInvocationLimitExceeded {
		t.Errorf("Reason %q", tm.Reason)
	}
	close(release)
	// Once they have finished, Events are taken again.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		h.events.mu.Lock()
		running := h.events.running
		h.events.mu.Unlock()
		if running == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d invocations still running 30s after their release", running)
		}
	}
	if out, err := client.Invoke(t.Context(), event); err != nil || out.StatusCode != 202 {
		t.Fatalf("after the backlog: %+v, %v", out, err)
	}
	c.waitRan(t)
}

func TestParseFunctionName(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want functionRef
		err  string
	}{
		{in: "f", want: functionRef{name: "f"}},
		{in: "My_func-2", want: functionRef{name: "My_func-2"}},
		{in: strings.Repeat("a", 64), want: functionRef{name: strings.Repeat("a", 64)}},
		{in: "f:$LATEST", want: functionRef{name: "f", qualifier: "$LATEST"}},
		{in: "f:prod", want: functionRef{name: "f", qualifier: "prod"}},
		{in: "f:12", want: functionRef{name: "f", qualifier: "12"}},
		{in: "123456789012:function:f", want: functionRef{name: "f", account: "123456789012"}},
		{in: "123456789012:function:f:$LATEST", want: functionRef{name: "f", account: "123456789012", qualifier: "$LATEST"}},
		{in: "arn:aws:lambda:us-east-1:123456789012:function:f",
			want: functionRef{name: "f", partition: "aws", region: "us-east-1", account: "123456789012"}},
		{in: "arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:f:v1",
			want: functionRef{name: "f", qualifier: "v1", partition: "aws-us-gov", region: "us-gov-west-1", account: "123456789012"}},

		{in: "", err: "empty"},
		{in: strings.Repeat("a", 65), err: "1 to 64"},
		{in: strings.Repeat("a", 171), err: "longer than 170"},
		{in: "f.g", err: `function name "f.g"`},
		{in: "f g", err: `function name "f g"`},
		{in: "fé", err: "function name"},
		{in: ":f", err: `function name ""`},
		{in: "f:", err: `qualifier ""`},
		{in: "f:a b", err: `qualifier "a b"`},
		{in: "f:" + strings.Repeat("q", 129), err: "qualifier"},
		{in: "a:b:c", err: "partial ARN"},
		{in: "12345678901:function:f", err: "partial ARN"},
		{in: "123456789012:func:f", err: "partial ARN"},
		{in: "123456789012:function:f:q:r", err: "partial ARN"},
		{in: "arn:aws:lambda:us-east-1:123456789012:function", err: "not a function ARN"},
		{in: "arn:aws:lambda:us-east-1:123456789012:layer:f", err: "not a function ARN"},
		{in: "arn:aws:sqs:us-east-1:123456789012:function:f", err: "not a function ARN"},
		{in: "arn:gcp:lambda:us-east-1:123456789012:function:f", err: "not a function ARN"},
		{in: "arn:aws:lambda:US-EAST-1:123456789012:function:f", err: "not a function ARN"},
		{in: "arn:aws:lambda::123456789012:function:f", err: "not a function ARN"},
		{in: "arn:aws:lambda:us-east-1:123456789012:function:f:q:r", err: "not a function ARN"},
		{in: "arn:aws:lambda:us-east-1:123456789012:function::q", err: `function name ""`},
	} {
		got, err := parseFunctionName(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want one containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

// format writes fn back in the most explicit form it came in.
func (fn functionRef) format() string {
	s := fn.name
	if fn.qualifier != "" {
		s += ":" + fn.qualifier
	}
	switch {
	case fn.partition != "":
		return "arn:" + fn.partition + ":lambda:" + fn.region + ":" + fn.account + ":function:" + s
	case fn.account != "":
		return fn.account + ":function:" + s
	}
	return s
}

// FuzzFunctionName checks that whatever parseFunctionName accepts is a
// function Herald can address: a valid name, a valid qualifier, and a
// reference that reads back the same when written out again (so the ARN
// in an error message names what was asked for).
func FuzzFunctionName(f *testing.F) {
	for _, s := range []string{
		"f", "my-function", "f:$LATEST", "f:prod", "123456789012:function:f", "123456789012:function:f:7",
		"arn:aws:lambda:us-east-1:123456789012:function:f", "arn:aws-cn:lambda:cn-north-1:123456789012:function:f:$LATEST",
		"", ":", "a:b:c", "arn:", "arn:aws:lambda:us-east-1:123456789012:function::", "f:\x00", "fé",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fn, err := parseFunctionName(s)
		if err != nil {
			// A verb Printf could not fill shows as "%!"; the name itself
			// may hold those bytes, and the message quotes it.
			if strings.Contains(err.Error(), "%!") && !strings.Contains(s, "%!") {
				t.Fatalf("badly formatted error: %v", err)
			}
			return
		}
		if !ValidFunctionName(fn.name) {
			t.Fatalf("%q: accepted name %q", s, fn.name)
		}
		if fn.qualifier != "" && !validQualifier(fn.qualifier) {
			t.Fatalf("%q: accepted qualifier %q", s, fn.qualifier)
		}
		if fn.format() != s {
			t.Fatalf("%q parsed as %+v, which writes as %q", s, fn, fn.format())
		}
		again, err := parseFunctionName(fn.format())
		if err != nil || again != fn {
			t.Fatalf("%q: %+v reads back as %+v, %v", s, fn, again, err)
		}
	})
}
