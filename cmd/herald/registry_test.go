package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	apigw "github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	"github.com/coder/websocket"

	"github.com/herald-gw/herald/servicetest"
)

// registryTTL is the lease the registry tests run with: short, so that a
// dead node's connections go in seconds.
const registryTTL = 3 * time.Second

// listed is one entry of GET /v1/users/{user}/connections.
type listed struct {
	ID       string `json:"id"`
	Node     string `json:"node"`
	Protocol string `json:"protocol"`
	SourceIP string `json:"source_ip"`
}

// listConns lists user's connections through node p.
func listConns(t *testing.T, p *proc, user string) []listed {
	t.Helper()
	status, body := p.api(t, "GET", "/v1/users/"+user+"/connections", "")
	if status != 200 {
		t.Fatalf("list %s through %s: %d %s", user, p.URL, status, body)
	}
	var out struct {
		Connections []listed `json:"connections"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	return out.Connections
}

func nodesOf(l []listed) []string {
	var s []string
	for _, c := range l {
		s = append(s, c.Node)
	}
	slices.Sort(s)
	return s
}

// The registry is cluster-wide: any node lists a user's connections on
// every node, counts them in its replies, and reaches one held by another
// node through /@connections with the unmodified AWS SDK; a killed node's
// connections leave the listings within the lease, after which
// PostToConnection to them answers GoneException.
func TestClusterRegistry(t *testing.T) {
	for _, eng := range clusterEngines {
		t.Run(eng.name, func(t *testing.T) {
			dsn := servicetest.Postgres(t)
			busURL, cluster := eng.bus(t)
			nodes := startCluster(t, 3, busURL, cluster, dsn, "HERALD_REGISTRY_TTL", registryTTL.String())
			n1, n2, n3 := nodes[0], nodes[1], nodes[2]
			ctx := context.Background()

			raw3 := n3.dial(t, "r")            // raw: gets exactly the posted bytes
			v2 := n2.dial(t, "r", "herald.v1") // herald.v1 on node 2
			n3.dial(t, "r", "herald.v1")       // killed with node 3 below
			v1 := n1.dial(t, "r", "herald.v1")
			waitFor(t, "node 1 lists r's four connections on three nodes", func() bool {
				return slices.Equal(nodesOf(listConns(t, n1, "r")), []string{"node1", "node2", "node3", "node3"})
			})
			waitFor(t, "node 2 lists them too", func() bool { return len(listConns(t, n2, "r")) == 4 })

			// A notify through node 1 counts the whole cluster.
			status, body := n1.api(t, "POST", "/v1/notify", `{"user_id":"r","json":"{\"n\":1}"}`)
			var reply struct {
				Connections int `json:"connections"`
			}
			if status != 200 || json.Unmarshal([]byte(body), &reply) != nil || reply.Connections != 4 {
				t.Fatalf("notify through node 1: %d %s, want connections 4", status, body)
			}
			if _, b := read(t, raw3); string(b) != `{"n":1}` {
				t.Fatalf("raw tab on node 3 got %s", b)
			}
			for _, c := range []*websocket.Conn{v1, v2} {
				if e := nextEnvelope(t, c); e.Offset != 1 {
					t.Fatalf("herald.v1 tab got offset %d", e.Offset)
				}
			}

			// A broadcast through node 2 counts the whole cluster too.
			if status, body := n2.api(t, "POST", "/v1/broadcast", `{"data":{"b":1}}`); status != 200 || !jsonHas(body, "connections", 4) {
				t.Fatalf("broadcast through node 2: %d %s, want connections 4", status, body)
			}
			if _, b := read(t, raw3); string(b) != `{"b":1}` {
				t.Fatalf("raw tab on node 3 got %s, want the broadcast", b)
			}
			for _, c := range []*websocket.Conn{v1, v2} {
				if e := nextEnvelope(t, c); string(e.Data) != `{"b":1}` {
					t.Fatalf("herald.v1 tab got %s, want the broadcast", e.Data)
				}
			}

			// An ack reaching another node than the stream (an SSE client
			// behind a load balancer without sticky sessions) is handed to
			// the node that holds it; a ?wait=ack notify through a third
			// node counts it (the holder reports it), with the cluster's
			// connections.
			var v2ID string
			for _, c := range listConns(t, n1, "r") {
				if c.Node == "node2" {
					v2ID = c.ID
				}
			}
			type waited struct {
				status int
				body   string
			}
			acked := make(chan waited, 1)
			go func() { // no t.Fatal off the test's goroutine
				var w waited
				req, _ := http.NewRequest("POST", n1.URL+"/v1/notify?wait=ack&timeout=30s", strings.NewReader(`{"user_id":"r","json":"{\"n\":2}"}`))
				req.Header.Set("Authorization", "Bearer "+testAPIKey)
				req.Header.Set("Content-Type", "application/json")
				if resp, err := http.DefaultClient.Do(req); err != nil {
					w.body = err.Error()
				} else {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					w = waited{resp.StatusCode, string(b)}
				}
				acked <- w
			}()
			if e := nextEnvelope(t, v2); e.Offset != 2 {
				t.Fatalf("herald.v1 tab on node 2 got offset %d, want 2", e.Offset)
			}
			if e := nextEnvelope(t, v1); e.Offset != 2 {
				t.Fatalf("herald.v1 tab on node 1 got offset %d, want 2", e.Offset)
			}
			if _, b := read(t, raw3); string(b) != `{"n":2}` {
				t.Fatalf("raw tab on node 3 got %s", b)
			}
			ack := fmt.Sprintf(`{"connection_id":%q,"offset":2}`, v2ID)
			if status, body, err := postAck(n3.server, n3.token(t, "someone else"), ack); err != nil || status != 404 || !strings.Contains(body, "not_found") {
				t.Fatalf("another user's ack of r's connection through node 3: %d %s %v, want 404 not_found", status, body, err)
			}
			if status, body, err := postAck(n3.server, n3.token(t, "r"), `{"connection_id":"nosuchconnection","offset":2}`); err != nil || status != 404 {
				t.Fatalf("ack of an unknown connection through node 3: %d %s %v, want 404", status, body, err)
			}
			if status, body, err := postAck(n3.server, n3.token(t, "r"), ack); err != nil || status != 202 || !strings.Contains(body, `"forwarded":true`) {
				t.Fatalf("r's ack of its node-2 connection through node 3: %d %s %v, want 202 forwarded", status, body, err)
			}
			if w := <-acked; w.status != 200 || !jsonHas(w.body, "acked", 1) || !jsonHas(w.body, "connections", 4) {
				t.Fatalf("notify ?wait=ack on node 1: %d %s, want acked 1 (node 2's connection, acked through node 3) of connections 4", w.status, w.body)
			}

			// /@connections on node 1 for the raw connection on node 3.
			var rawID string
			for _, c := range listConns(t, n1, "r") {
				if c.Node == "node3" && c.Protocol == "raw" {
					rawID = c.ID
				}
			}
			sdk := awsClient(n1.URL, testAKID, testSKey)
			data := []byte(`{"from":"node1"}`)
			if _, err := sdk.PostToConnection(ctx, &apigw.PostToConnectionInput{ConnectionId: aws.String(rawID), Data: data}); err != nil {
				t.Fatalf("PostToConnection through node 1: %v", err)
			}
			if _, b := read(t, raw3); string(b) != string(data) {
				t.Fatalf("raw tab on node 3 got %s, want the posted bytes", b)
			}
			got, err := sdk.GetConnection(ctx, &apigw.GetConnectionInput{ConnectionId: aws.String(rawID)})
			if err != nil {
				t.Fatalf("GetConnection through node 1: %v", err)
			}
			if got.ConnectedAt == nil || time.Since(*got.ConnectedAt) > time.Hour || got.Identity == nil || aws.ToString(got.Identity.SourceIp) != "127.0.0.1" {
				t.Fatalf("GetConnection: %+v", got)
			}
			if _, err := sdk.DeleteConnection(ctx, &apigw.DeleteConnectionInput{ConnectionId: aws.String(rawID)}); err != nil {
				t.Fatalf("DeleteConnection through node 1: %v", err)
			}
			if err := readErr(t, raw3); websocket.CloseStatus(err) != 4003 {
				t.Fatalf("the deleted connection closed with %v, want 4003", err)
			}
			var gone *types.GoneException
			waitFor(t, "the deleted connection is gone for node 1", func() bool {
				_, err := sdk.GetConnection(ctx, &apigw.GetConnectionInput{ConnectionId: aws.String(rawID)})
				return errors.As(err, &gone)
			})
			if _, err := sdk.PostToConnection(ctx, &apigw.PostToConnectionInput{ConnectionId: aws.String(rawID), Data: data}); !errors.As(err, &gone) {
				t.Fatalf("PostToConnection to the deleted connection: %v, want GoneException", err)
			}

			// kill -9 of node 3: its other connection leaves the listings
			// within the lease (the wait's bound is far longer; the time
			// it took is logged).
			var otherID string
			for _, c := range listConns(t, n1, "r") {
				if c.Node == "node3" {
					otherID = c.ID
				}
			}
			if otherID == "" {
				t.Fatal("node 3's second connection is not listed")
			}
			if err := n3.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed := time.Now()
			n3.wait(t, 15*time.Second)
			waitFor(t, "node 3's connection leaves node 1's listing", func() bool {
				return !slices.Contains(nodesOf(listConns(t, n1, "r")), "node3")
			})
			t.Logf("a killed node's connection left the listings %v after the kill (lease %v)", time.Since(killed).Round(10*time.Millisecond), registryTTL)
			if _, err := sdk.PostToConnection(ctx, &apigw.PostToConnectionInput{ConnectionId: aws.String(otherID), Data: data}); !errors.As(err, &gone) {
				t.Fatalf("PostToConnection to a dead node's connection: %v, want GoneException", err)
			}

			// DELETE of the user's connections through node 2 closes those
			// on nodes 1 and 2, and counts both.
			status, body = n2.api(t, "DELETE", "/v1/users/r/connections", "")
			if status != 200 || !jsonHas(body, "closed", 2) {
				t.Fatalf("disconnect r through node 2: %d %s, want closed 2", status, body)
			}
			for _, c := range []*websocket.Conn{v1, v2} {
				if err := readErr(t, c); websocket.CloseStatus(err) != 4003 {
					t.Fatalf("a tab of r closed with %v, want 4003", err)
				}
			}
			waitFor(t, "r has no connection left anywhere", func() bool { return len(listConns(t, n2, "r")) == 0 })
		})
	}
}

// jsonHas reports whether the JSON object body has key with number want.
func jsonHas(body, key string, want float64) bool {
	var m map[string]any
	return json.Unmarshal([]byte(body), &m) == nil && m[key] == want
}
