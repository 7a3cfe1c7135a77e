package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/coder/websocket"
)

// lambdaClient is the unmodified Lambda client the original API server
// uses to invoke its notification function, pointed at Herald.
func lambdaClient(endpoint string) *lambda.Client {
	return lambda.New(lambda.Options{
		BaseEndpoint: aws.String(endpoint),
		Region:       "eu-central-1",
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: testAKID, SecretAccessKey: testSKey}, nil
		}),
		RetryMaxAttempts: 1,
	})
}

// The original API server works with no Lambda at all: its Invoke of the
// notification payload, renamed herald-notify, delivers like /v1/notify.
func TestInvokeBuiltinNotify(t *testing.T) {
	h := startHerald(t, testEnv(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok, _ := h.issuer.Mint("42", time.Hour)
	c, _, err := websocket.Dial(ctx, h.WSURL+"/ws?token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	h.waitConns(t, "42", 1)

	out, err := lambdaClient(h.URL).Invoke(ctx, &lambda.InvokeInput{
		FunctionName: aws.String("herald-notify"),
		Payload:      []byte(`{"user_id": 42, "json": "{\"text\":\"hi\"}"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	if out.FunctionError != nil || out.StatusCode != 200 || !strings.Contains(string(out.Payload), `"offset"`) {
		t.Fatalf("invoke: status %d error %v payload %s", out.StatusCode, aws.ToString(out.FunctionError), out.Payload)
	}
	if _, b, err := c.Read(ctx); err != nil || string(b) != `{"text":"hi"}` {
		t.Fatalf("client got %q, %v", b, err)
	}

	// A payload /v1/notify refuses is the function's error.
	out, err = lambdaClient(h.URL).Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("herald-notify"), Payload: []byte(`{"json":"{}"}`)})
	if err != nil || aws.ToString(out.FunctionError) != "Unhandled" || !strings.Contains(string(out.Payload), "user_id is required") {
		t.Fatalf("bad payload: %v, %v, %s", err, out, out.Payload)
	}
	// No such function.
	_, err = lambdaClient(h.URL).Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("notification"), Payload: []byte(`{}`)})
	var nf *types.ResourceNotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("unknown function: %v", err)
	}
}

// A route set from HERALD_ROUTES, end to end through the real server:
// served at /{stage} and /ws, Herald's token check off, $connect deciding
// with its status, API Gateway's Forbidden without $default, $disconnect
// after the client leaves.
func TestRouteSetServed(t *testing.T) {
	evs := make(chan events.APIGatewayWebsocketProxyRequest, 100)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev events.APIGatewayWebsocketProxyRequest
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Errorf("event: %v", err)
		}
		evs <- ev
		if ev.RequestContext.EventType == "CONNECT" && ev.QueryStringParameters["token"] != "good" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer backend.Close()
	routesJSON := `{"auth":"integration","stage":"production","routes":{` +
		`"$connect":{"kind":"http","url":"` + backend.URL + `/connect"},` +
		`"$disconnect":{"kind":"http","url":"` + backend.URL + `/disconnect"},` +
		`"ping":{"kind":"http","url":"` + backend.URL + `/ping"}}}`
	h := startHerald(t, testEnv(t, "HERALD_ROUTES", routesJSON))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	next := func(route string) events.APIGatewayWebsocketProxyRequest {
		t.Helper()
		for {
			select {
			case ev := <-evs:
				if ev.RequestContext.RouteKey == route {
					return ev
				}
			case <-ctx.Done():
				t.Fatalf("no %s event", route)
			}
		}
	}

	_, resp, err := websocket.Dial(ctx, h.WSURL+"/production?token=bad", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad token: %v", err)
	}
	if b, _ := io.ReadAll(resp.Body); !strings.Contains(string(b), `"connect_refused"`) {
		t.Fatalf("refusal body %s", b)
	}
	next("$connect")

	for _, path := range []string{"/production", "/ws"} {
		c, _, err := websocket.Dial(ctx, h.WSURL+path+"?token=good", nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		ev := next("$connect")
		if ev.RequestContext.Stage != "production" || ev.RequestContext.Authorizer != nil {
			t.Fatalf("%s: connect event %+v", path, ev.RequestContext)
		}
		id := ev.RequestContext.ConnectionID
		if err := c.Write(ctx, websocket.MessageText, []byte(`{"action":"ping"}`)); err != nil {
			t.Fatal(err)
		}
		if ev := next("ping"); ev.Body != `{"action":"ping"}` || ev.RequestContext.ConnectionID != id {
			t.Fatalf("ping event %+v", ev)
		}
		if err := c.Write(ctx, websocket.MessageText, []byte(`{"action":"other"}`)); err != nil {
			t.Fatal(err)
		}
		_, b, err := c.Read(ctx)
		if err != nil || !strings.Contains(string(b), `"message":"Forbidden"`) || !strings.Contains(string(b), id) {
			t.Fatalf("no route: %s, %v", b, err)
		}
		// The connection is reachable by its id through the management API.
		if _, err := awsClient(h.URL, testAKID, testSKey).PostToConnection(ctx, nil); err == nil {
			t.Fatal("nil input accepted")
		}
		c.Close(websocket.StatusNormalClosure, "bye")
		if ev := next("$disconnect"); ev.RequestContext.ConnectionID != id || ev.RequestContext.DisconnectStatusCode != 1000 {
			t.Fatalf("disconnect event %+v", ev.RequestContext)
		}
	}
}
