package api

import (
	"encoding/json"
	"net/http"

	"github.com/herald-gw/herald"
)

// handleBatch serves POST /v1/batch {"messages":[{"user":"42","data":…},…]}:
// each valid message is appended and delivered as if posted alone (all in
// one group commit); the reply has one result per message, in order: its
// delivery or its error. A bad message does not fail the others.
func handleBatch(s *Server) http.Handler {
	type item = batchItem
	type request struct {
		Messages []json.RawMessage `json:"messages"`
	}
	type itemError struct {
		Code    herald.ErrorCode `json:"code"`
		Message string           `json:"message"`
	}
	type result struct {
		*deliveryReply
		Error *itemError `json:"error,omitempty"`
	}
	type reply struct {
		Results     []result `json:"results"`
		Accepted    int      `json:"accepted"`
		Connections int      `json:"connections"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := readBodyLimit(r, maxBatchBody)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		// Fast path: one decoding pass for the whole batch, typed: the
		// scanner for the usual shape, else encoding/json. It fails only
		// when some message has a field of the wrong type; the
		// per-message pass below then finds which, so that one bad
		// message does not fail the others.
		var typed struct {
			Messages []item `json:"messages"`
		}
		var raw request // the per-message pass's input
		var fast bool
		if typed.Messages, fast = scanBatch(body); !fast {
			fast = json.Unmarshal(body, &typed) == nil
		}
		if !fast {
			if err := decodeJSON(body, &raw); err != nil {
				writeError(w, r, s.log, err)
				return
			}
		}
		n := len(typed.Messages)
		if !fast {
			n = len(raw.Messages)
		}
		switch {
		case n == 0:
			err = herald.Errorf(herald.EInvalidRequest, "messages must hold at least one message")
		case n > MaxBatch:
			err = herald.Errorf(herald.EInvalidRequest, "messages holds %d; the limit is %d", n, MaxBatch)
		}
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		out := reply{Results: make([]result, n)}
		msgs := make([]*herald.Message, 0, n)
		index := make([]int, 0, n) // msgs[i] answers Results[index[i]]
		for i := range n {
			var it item
			var err error
			if fast {
				it = typed.Messages[i]
			} else {
				err = decodeJSON(raw.Messages[i], &it)
			}
			switch {
			case err != nil:
			case it.User == nil:
				err = herald.Errorf(herald.EInvalidRequest, "user is required")
			default:
				if err = herald.CheckUserID(string(*it.User)); err != nil {
					err = fieldError("user", err)
				} else {
					// Data came out of a body that decoded, so it is valid
					// JSON already: only its presence and size are left.
					err = decodedPayload(it.Data)
				}
			}
			if err != nil {
				out.Results[i].Error = &itemError{herald.ErrorCodeOf(err), herald.ErrorMessageOf(err)}
				continue
			}
			msgs = append(msgs, &herald.Message{User: herald.UserID(*it.User), Data: it.Data})
			index = append(index, i)
		}
		if len(msgs) > 0 {
			res, err := s.stream.Publish(r.Context(), msgs)
			if err != nil {
				writeError(w, r, s.log, err)
				return
			}
			for j, m := range msgs {
				d := replyFor(m, res[j])
				out.Results[index[j]].deliveryReply = &d
				out.Connections += d.Connections
			}
			out.Accepted = len(msgs)
		}
		writeJSON(w, http.StatusOK, out)
	})
}
