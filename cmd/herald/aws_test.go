package main

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	apigw "github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
)

// awsClient is the unmodified AWS SDK client an API server on AWS uses,
// pointed at Herald.
func awsClient(endpoint, akid, secret string) *apigw.Client {
	return apigw.New(apigw.Options{
		BaseEndpoint: aws.String(endpoint),
		Region:       "eu-central-1",
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret}, nil
		}),
		RetryMaxAttempts: 1,
	})
}

// The management API reaches a connection by id, whatever carries it: an
// SSE stream is posted to, described and closed like a WebSocket.
func TestAWSManagementAPI(t *testing.T) {
	transports(t, func(t *testing.T, tr transport) {
		h := startHerald(t, tr.env(t))
		for _, endpoint := range []string{h.URL, h.URL + "/production"} {
			t.Run(strings.TrimPrefix(endpoint, h.URL), func(t *testing.T) {
				ctx := context.Background()
				api := awsClient(endpoint, testAKID, testSKey)
				c := tr.dial(t, h, "42")
				id := h.waitConns(t, "42", 1)[0]["id"].(string)
				if tr.sse() && id != c.id {
					t.Fatalf("listed id %s, the stream was told %s", id, c.id)
				}

				// PostToConnection: the raw client gets exactly the bytes; an
				// SSE stream an envelope holding them, not stored (no offset,
				// no event id).
				data := []byte(`{"message":"from lambda"}`)
				if _, err := api.PostToConnection(ctx, &apigw.PostToConnectionInput{ConnectionId: aws.String(id), Data: data}); err != nil {
					t.Fatalf("post: %v", err)
				}
				if m := c.next(t); m.Type != "message" || string(m.Payload) != string(data) || m.Offset != 0 {
					t.Fatalf("got %+v %q", m.envelope, m.Payload)
				}

				// GetConnection.
				out, err := api.GetConnection(ctx, &apigw.GetConnectionInput{ConnectionId: aws.String(id)})
				if err != nil {
					t.Fatalf("get: %v", err)
				}
				if out.ConnectedAt == nil || time.Since(*out.ConnectedAt) > time.Minute || out.LastActiveAt == nil ||
					out.Identity == nil || aws.ToString(out.Identity.SourceIp) != "127.0.0.1" || aws.ToString(out.Identity.UserAgent) == "" {
					t.Fatalf("get: %+v identity %+v", out, out.Identity)
				}

				// Payload over 128 KiB.
				_, err = api.PostToConnection(ctx, &apigw.PostToConnectionInput{ConnectionId: aws.String(id), Data: make([]byte, 128<<10+1)})
				var tooLarge *types.PayloadTooLargeException
				if !errors.As(err, &tooLarge) {
					t.Fatalf("oversized post: %v", err)
				}

				// DeleteConnection closes it; then the id is gone for every call.
				if _, err := api.DeleteConnection(ctx, &apigw.DeleteConnectionInput{ConnectionId: aws.String(id)}); err != nil {
					t.Fatalf("delete: %v", err)
				}
				c.expectClose(t, 4003)
				h.waitConns(t, "42", 0)
				var gone *types.GoneException
				if _, err := api.PostToConnection(ctx, &apigw.PostToConnectionInput{ConnectionId: aws.String(id), Data: data}); !errors.As(err, &gone) {
					t.Fatalf("post to closed: %v", err)
				}
				if _, err := api.GetConnection(ctx, &apigw.GetConnectionInput{ConnectionId: aws.String(id)}); !errors.As(err, &gone) {
					t.Fatalf("get closed: %v", err)
				}
				if _, err := api.DeleteConnection(ctx, &apigw.DeleteConnectionInput{ConnectionId: aws.String(id)}); !errors.As(err, &gone) {
					t.Fatalf("delete closed: %v", err)
				}
				// Ids that need escaping never existed: still GoneException.
				if _, err := api.PostToConnection(ctx, &apigw.PostToConnectionInput{ConnectionId: aws.String("L0SM9cOFvHcCIhw="), Data: data}); !errors.As(err, &gone) {
					t.Fatalf("post unknown: %v", err)
				}
			})
		}
	})
}

func TestAWSManagementAPIAuth(t *testing.T) {
	h := startHerald(t, testEnv(t))
	c := h.dial(t, "42")
	id := h.waitConns(t, "42", 1)[0]["id"].(string)
	ctx := context.Background()

	var forbidden *types.ForbiddenException
	_, err := awsClient(h.URL, testAKID, "wrong-secret").PostToConnection(ctx, &apigw.PostToConnectionInput{ConnectionId: aws.String(id), Data: []byte("x")})
	if !errors.As(err, &forbidden) {
		t.Fatalf("wrong secret: %v", err)
	}
	_, err = awsClient(h.URL, "AKIDOTHER", testSKey).GetConnection(ctx, &apigw.GetConnectionInput{ConnectionId: aws.String(id)})
	if !errors.As(err, &forbidden) {
		t.Fatalf("wrong key id: %v", err)
	}
	// No credentials at all: 403 ForbiddenException with AWS's error header.
	req, _ := http.NewRequest("POST", h.URL+"/@connections/"+id, strings.NewReader("x"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 || resp.Header.Get("X-Amzn-ErrorType") != "ForbiddenException" {
		t.Fatalf("unsigned: %d %v", resp.StatusCode, resp.Header)
	}
	// Herald's API key works as a Bearer token too, for callers without SigV4.
	status, _ := h.request(t, "POST", "/@connections/"+id, `{"via":"api key"}`, map[string]string{"Authorization": "Bearer " + testAPIKey})
	if status != 200 {
		t.Fatalf("api key post: %d", status)
	}
	if _, got := read(t, c); string(got) != `{"via":"api key"}` {
		t.Fatalf("got %q", got)
	}
	// Unknown id with a valid key: 410 GoneException, AWS shape.
	req, _ = http.NewRequest("GET", h.URL+"/@connections/nope", nil)
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 410 || resp.Header.Get("X-Amzn-ErrorType") != "GoneException" {
		t.Fatalf("unknown id: %d %v", resp.StatusCode, resp.Header)
	}
}
