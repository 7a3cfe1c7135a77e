package gateway

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/hub"
)

// benchGateway starts a gateway over real loopback sockets with n raw
// clients (users u0..un-1) that read and discard everything.
func benchGateway(b *testing.B, mode string, n int) *hub.Hub {
	b.Helper()
	h, iss, addr := serveGateway(b, mode)
	for i := range n {
		tok, _ := iss.Mint(herald.UserID(fmt.Sprint("u", i)), time.Hour)
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { nc.Close() })
		fmt.Fprintf(nc, "GET /ws?token=%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", tok)
		br := bufio.NewReader(nc)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 101 {
			b.Fatalf("handshake: %v %v", resp, err)
		}
		go io.Copy(io.Discard, br)
	}
	for h.Len() < n {
		time.Sleep(time.Millisecond)
	}
	return h
}

// BenchmarkDeliverOne: one message to one user with one connection, through
// the hub, the send queue and a real socket write.
func BenchmarkDeliverOne(b *testing.B) {
	for _, mode := range []string{IOEpoll, IOGoroutine} {
		b.Run(mode, func(b *testing.B) {
			const users = 1000
			h := benchGateway(b, mode, users)
			msgs := make([]herald.Message, users)
			for i := range msgs {
				msgs[i] = herald.Message{ID: "m", User: herald.UserID(fmt.Sprint("u", i)), Epoch: "e", Data: []byte(`{"type":"order","n":12345}`)}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				m := &msgs[i%users]
				m.Offset++
				h.SendUser(m)
				i++
			}
		})
	}
}

// BenchmarkBroadcast1k: one message to 1,000 connections; allocations per
// op must not grow with the number of connections.
func BenchmarkBroadcast1k(b *testing.B) {
	for _, mode := range []string{IOEpoll, IOGoroutine} {
		b.Run(mode, func(b *testing.B) {
			const conns = 1000
			h := benchGateway(b, mode, conns)
			m := &herald.Message{ID: "m", Data: []byte(`{"type":"maintenance"}`)}
			b.ReportAllocs()
			for b.Loop() {
				h.Broadcast(m)
			}
			b.ReportMetric(float64(b.N)*conns/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
