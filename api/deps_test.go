package api

import (
	"github.com/herald-gw/herald/gateway"
	"github.com/herald-gw/herald/hub"
	"github.com/herald-gw/herald/sse"
	"github.com/herald-gw/herald/stream"
)

// The real parts satisfy the interfaces the handlers depend on. The
// assertions live in a test file so that package api itself does not
// import the transports and the delivery path only to name them: a change
// to one of their method sets still fails `go test ./api/` (and `go vet`),
// and cmd/herald, which passes them in Deps, fails to build.
var (
	_ Streams     = (*stream.Service)(nil)
	_ Registry    = (*hub.Hub)(nil)
	_ WebSocket   = (*gateway.Gateway)(nil)
	_ EventStream = (*sse.Handler)(nil)
)
