package api

import (
	"time"

	"github.com/herald-gw/herald"
)

// The API's limits, in one place; docs/api.md's Limits table lists them.
// A limit that another package enforces or documents too (the payload
// size, the history and inbox page sizes) is the root package's, in
// herald's limits.go, and is used from there rather than restated.

// Limits other code refers to by name.
const (
	// MaxPayload is the largest notification payload, as on API Gateway.
	MaxPayload = herald.MaxPayload
	// MaxUsers bounds the users of one POST /v1/messages.
	MaxUsers = 10_000
	// MaxBatch bounds the messages of one POST /v1/batch: one request and
	// one durable commit, so senders are not bound by one HTTP round trip
	// per message.
	MaxBatch = 1000
	// MaxAckWait bounds ?wait=ack&timeout=.
	MaxAckWait = 30 * time.Second
)

const (
	// maxBody bounds request bodies: a payload of MaxPayload may grow up
	// to sixfold when escaped inside a JSON string (\u0001 for each control
	// byte: the /v1/notify shape), so allow for that, plus the rest of
	// the object, and check the payload itself after decoding.
	maxBody = 6*MaxPayload + 4096
	// maxBatchBody bounds a POST /v1/batch body, which carries up to
	// MaxBatch messages and so may be larger than maxBody. It is not
	// MaxBatch largest payloads (128 MiB): a batch is read whole.
	maxBatchBody = 16 << 20
	// maxMarkIDs bounds the ids of one inbox mark request.
	maxMarkIDs = 1000
	// defaultHistoryPage is the history page size without ?limit=; the
	// largest is herald.MaxHistoryPage. (The inbox's are
	// herald.DefaultInboxLimit and herald.MaxInboxLimit.)
	defaultHistoryPage = 100
	// defaultAckWait is how long ?wait=ack waits without ?timeout=.
	defaultAckWait = 2 * time.Second
)
