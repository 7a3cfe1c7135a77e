package herald

import "time"

// Limits and defaults that more than one package enforces or documents.
// They live here, once, so that the API, the gateway, the stores and
// docs/api.md's tables cannot drift apart.
const (
	// MaxPayload is the largest notification payload, as on API Gateway
	// (128 KiB): every route that takes a payload refuses a larger one.
	MaxPayload = 128 << 10

	// MaxHistoryPage is the most messages one Store.Since call returns.
	MaxHistoryPage = 1000

	// DefaultPingInterval is how often a connection is pinged.
	DefaultPingInterval = 25 * time.Second
	// DefaultMaxPingsOut is how many pings may go unanswered: a connection
	// from which nothing was read since that many pings were sent is dead.
	DefaultMaxPingsOut = 2
	// DefaultWriteTimeout bounds one socket write.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultSendQueueFrames and DefaultSendQueueBytes bound what may wait
	// to be written to one connection; past either it is closed with 4008.
	DefaultSendQueueFrames = 1024
	DefaultSendQueueBytes  = 4 << 20
	// DefaultMaxClientMessage is the largest message a client may send.
	DefaultMaxClientMessage = 32 << 10
	// DefaultMaxConnsPerUser bounds one user's connections; past it the
	// oldest is closed with 4029.
	DefaultMaxConnsPerUser = 100

	// ReplayTimeout bounds one resume replay, reading and writing.
	ReplayTimeout = time.Minute
	// SSERetry is the reconnect delay, in milliseconds, that Herald
	// suggests to EventSource clients.
	SSERetry = 2000
)
