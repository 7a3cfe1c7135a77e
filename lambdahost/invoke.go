package lambdahost

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// invocation is one Invoke's request on its way through a process.
type invocation struct {
	id        string // Lambda's request id, a UUID
	traceID   string // X-Ray's trace header value
	payload   []byte
	delivered chan struct{} // closed when the runtime's /next took it
	result    chan Result   // the runtime's answer; buffered, written once

	// Guarded by the holding process's mu. Whoever sets finished first —
	// the runtime answering, or the invoker giving up on a timeout, a crash
	// or a stall — owns the outcome; the other side backs off.
	deadline    time.Time
	isDelivered bool
	finished    bool
}

func newInvocation(payload []byte) *invocation {
	return &invocation{
		id:        newRequestID(),
		traceID:   newTraceID(),
		payload:   payload,
		delivered: make(chan struct{}),
		result:    make(chan Result, 1),
	}
}

// again is inv afresh for another process, keeping its ids: the first
// process never received it.
func (inv *invocation) again() *invocation {
	return &invocation{
		id:        inv.id,
		traceID:   inv.traceID,
		payload:   inv.payload,
		delivered: make(chan struct{}),
		result:    make(chan Result, 1),
	}
}

// run hands inv to p — starting p first when cold — and waits for its
// outcome. retry means inv never reached the function and should go to
// another process; err is set only when the host closed before p started.
//
// The waits here need no context: every one of them ends, because a
// delivered invocation is bounded by the function's timeout, an
// undelivered one by the init timeout, and either by the process exiting.
func (f *function) run(p *process, cold bool, inv *invocation) (res Result, retry bool, err error) {
	if cold {
		if err := p.start(); err != nil {
			f.gone(p)
			if errors.Is(err, errStopping) {
				return Result{}, false, errClosed()
			}
			// Lambda's name for a bootstrap it cannot run.
			return f.initFailed(inv.id, errorDoc{
				Type:    "Runtime.InvalidEntrypoint",
				Message: fmt.Sprintf("RequestId: %s Error: %v", inv.id, err),
			}), false, nil
		}
	}
	p.assign(inv)

	// Until the runtime takes inv, the init timeout bounds the wait (a
	// warm process normally asks again right after its last answer); from
	// then on, the function's timeout does.
	stall := time.NewTimer(f.h.initTimeout)
	defer stall.Stop()
	stallC := stall.C
	var deadline *time.Timer
	var deadlineC <-chan time.Time
	defer func() {
		if deadline != nil {
			deadline.Stop()
		}
	}()
	delivered := inv.delivered
	var initFailed <-chan struct{}
	if cold {
		initFailed = p.initFailed
	}
	answer := func() (Result, bool, error) {
		res := <-inv.result
		f.release(p)
		return res, false, nil
	}
	for {
		select {
		case res := <-inv.result:
			f.release(p)
			return res, false, nil

		case <-delivered:
			delivered, stallC = nil, nil
			stall.Stop()
			// Written before delivered was closed, so safe to read.
			deadline = time.NewTimer(time.Until(inv.deadline))
			deadlineC = deadline.C

		case <-stallC:
			switch p.claim(inv, false) {
			case answered:
				return answer()
			case running:
				stallC = nil // delivered just now; its own case follows
				continue
			}
			p.kill()
			if !cold {
				f.h.log.Warn("function process did not ask for its next invocation; killed",
					"function", f.name, "pid", p.pid, "init_timeout", f.h.initTimeout)
				return Result{}, true, nil
			}
			return f.initFailed(inv.id, errorDoc{
				Type:    "Sandbox.Timedout",
				Message: fmt.Sprintf("%s %s Init timed out after %.2f seconds", awsTime(), inv.id, f.h.initTimeout.Seconds()),
			}), false, nil

		case <-deadlineC:
			if p.claim(inv, true) == answered {
				return answer()
			}
			p.kill()
			f.h.log.Warn("function timed out; process killed",
				"function", f.name, "request_id", inv.id, "pid", p.pid, "timeout", f.timeout)
			return errorDoc{
				Type:    "Sandbox.Timedout",
				Message: fmt.Sprintf("%s %s Task timed out after %.2f seconds", awsTime(), inv.id, f.timeout.Seconds()),
			}.result(), false, nil

		case <-initFailed:
			if p.claim(inv, true) == answered {
				return answer()
			}
			// Lambda ends a runtime that reported an init error.
			p.kill()
			return f.initFailed(inv.id, p.initError()), false, nil

		case <-p.exited:
			switch p.claim(inv, true) {
			case answered:
				return answer()
			case claimedDelivered:
				f.h.log.Warn("function crashed during an invocation",
					"function", f.name, "request_id", inv.id, "pid", p.pid, "status", p.status())
				return exitDoc(inv.id, p.exitState()).result(), false, nil
			}
			if !cold {
				return Result{}, true, nil
			}
			if doc := p.initError(); doc.raw != nil {
				return f.initFailed(inv.id, doc), false, nil
			}
			return f.initFailed(inv.id, exitDoc(inv.id, p.exitState())), false, nil
		}
	}
}

// errorDoc is an error document as Lambda returns it: raw as the function
// posted it, or built from Type and Message.
type errorDoc struct {
	Type    string
	Message string
	raw     []byte
}

func (d errorDoc) payload() []byte {
	if d.raw != nil {
		return d.raw
	}
	b, err := json.Marshal(struct {
		Message string `json:"errorMessage"`
		Type    string `json:"errorType"`
	}{d.Message, d.Type})
	if err != nil {
		panic(err) // two strings always marshal
	}
	return b
}

func (d errorDoc) result() Result { return Result{Payload: d.payload(), Error: unhandled} }

// postedDoc is the error document a runtime posted: kept as posted when it
// is a JSON object, as Lambda passes it through; otherwise wrapped so the
// caller still gets the documented shape. typ is the
// Lambda-Runtime-Function-Error-Type header, the fallback for its type.
func postedDoc(body []byte, typ string) errorDoc {
	var doc struct {
		Type string `json:"errorType"`
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '{' && json.Unmarshal(trimmed, &doc) == nil {
		if doc.Type == "" {
			doc.Type = typ
		}
		return errorDoc{Type: doc.Type, raw: body}
	}
	if typ == "" {
		typ = "Runtime.Unknown"
	}
	return errorDoc{Type: typ, Message: string(body)}
}

// exitDoc is Lambda's document for a runtime that exited when it should
// not have, worded as AWS words it.
func exitDoc(requestID string, state *os.ProcessState) errorDoc {
	why := "Runtime exited without providing a reason"
	if state != nil && !state.Success() {
		why = "Runtime exited with error: " + state.String() // "exit status 3", "signal: killed"
	}
	return errorDoc{Type: "Runtime.ExitError", Message: "RequestId: " + requestID + " Error: " + why}
}

// tooLargeDoc is Lambda's document for a response over the sync limit.
func tooLargeDoc() errorDoc {
	return errorDoc{
		Type:    "Function.ResponseSizeTooLarge",
		Message: "Response payload size exceeded maximum allowed payload size (" + strconv.Itoa(maxResponseSize) + " bytes).",
	}
}

// awsTime is the timestamp Lambda starts a timeout message with.
func awsTime() string { return time.Now().UTC().Format("2006-01-02T15:04:05.000Z") }

// newRequestID returns a random (version 4) UUID, the form of Lambda's
// request ids.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// newTraceID returns an X-Ray trace header for an unsampled request, as
// Lambda passes one to every invocation.
func newTraceID() string {
	var b [20]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return fmt.Sprintf("Root=1-%08x-%s;Parent=%s;Sampled=0", time.Now().Unix(), h[:24], h[24:])
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
