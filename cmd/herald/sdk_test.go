package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/herald-gw/herald/client"
)

// The Go SDK against a real server: every call, and typed errors.
func TestSDKAgainstServer(t *testing.T) {
	h := startHerald(t, testEnv(t))
	ctx := context.Background()
	c, err := client.New(h.URL, testAPIKey)
	if err != nil {
		t.Fatal(err)
	}
	ws := h.dial(t, "42")
	h.waitConns(t, "42", 1)

	d, err := c.Notify(ctx, "42", map[string]string{"message": "hi"})
	if err != nil || d.Connections != 1 || d.Offset != 1 || d.ID == "" {
		t.Fatalf("Notify: %+v, %v", d, err)
	}
	if _, got := read(t, ws); string(got) != `{"message":"hi"}` {
		t.Fatalf("got %s", got)
	}
	if d, err = c.NotifyJSON(ctx, "42", `{"from":"lambda"}`); err != nil || d.Offset != 2 {
		t.Fatalf("NotifyJSON: %+v, %v", d, err)
	}
	read(t, ws)
	md, err := c.NotifyUsers(ctx, []string{"42", "43"}, json.RawMessage(`[1]`))
	if err != nil || md.Connections != 1 || len(md.Users) != 2 {
		t.Fatalf("NotifyUsers: %+v, %v", md, err)
	}
	read(t, ws)
	res, err := c.Batch(ctx, []client.BatchMessage{{User: "42", Payload: 1}, {User: "43", Payload: 2}})
	if err != nil || len(res) != 2 || res[0].Delivery == nil || res[0].Delivery.Offset != 4 || res[1].Delivery.Connections != 0 {
		t.Fatalf("Batch: %+v, %v", res, err)
	}
	if _, got := read(t, ws); string(got) != `1` {
		t.Fatalf("got %s", got)
	}
	b, err := c.Broadcast(ctx, "all")
	if err != nil || b.Connections != 1 {
		t.Fatalf("Broadcast: %+v, %v", b, err)
	}
	read(t, ws)
	conns, err := c.Connections(ctx, "42")
	if err != nil || len(conns) != 1 || conns[0].SourceIP != "127.0.0.1" {
		t.Fatalf("Connections: %+v, %v", conns, err)
	}
	if n, err := c.Disconnect(ctx, "42"); err != nil || n != 1 {
		t.Fatalf("Disconnect: %d, %v", n, err)
	}

	bad, _ := client.New(h.URL, "wrong", client.WithRetries(0))
	_, err = bad.Notify(ctx, "42", 1)
	if !client.IsCode(err, client.CodeUnauthorized) {
		t.Fatalf("wrong key: %v", err)
	}
	_, err = c.Notify(ctx, "42", strings.Repeat("a", 130<<10))
	if !client.IsCode(err, client.CodePayloadTooLarge) {
		t.Fatalf("big payload: %v", err)
	}
}
