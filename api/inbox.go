package api

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/herald-gw/herald"
	"github.com/herald-gw/herald/wire"
)

// envelopeJSON is a stored message as the history and inbox APIs return
// it: the herald.v1 envelope, byte for byte what a connection receives
// (wire.AppendEnvelope is the one encoder), plus its inbox state where that
// applies.
type envelopeJSON struct {
	m     *herald.Message
	inbox *herald.InboxItem // nil in history
}

func envelopeOf(m *herald.Message) envelopeJSON { return envelopeJSON{m: m} }

func (e envelopeJSON) MarshalJSON() ([]byte, error) {
	b := wire.AppendEnvelope(make([]byte, 0, 192+len(e.m.Data)), e.m)
	if e.inbox == nil {
		return b, nil
	}
	b = append(b[:len(b)-1], `,"seen":`...)
	b = strconv.AppendBool(b, e.inbox.Seen)
	b = append(b, `,"read":`...)
	b = strconv.AppendBool(b, e.inbox.Read)
	b = append(b, `,"archived":`...)
	b = strconv.AppendBool(b, e.inbox.Archived)
	return append(b, '}'), nil
}

// uintParam parses an optional unsigned query parameter.
func uintParam(r *http.Request, name string, def uint64) (uint64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, herald.Errorf(herald.EInvalidRequest, "%s must be an unsigned integer, got %q", name, v)
	}
	return n, nil
}

// limitParam parses ?limit=: a page size of at least 1 (a larger one is
// clamped by the caller). 0 is refused rather than read as "the default"
// or "the most": a page of nothing has no meaning.
func limitParam(r *http.Request, def uint64) (uint64, error) {
	n, err := uintParam(r, "limit", def)
	if err == nil && n == 0 {
		err = herald.Errorf(herald.EInvalidRequest, "limit must be at least 1")
	}
	return n, err
}

// handleHistory serves GET /v1/users/{user}/messages?since=&limit=: the
// user's stored stream after since, oldest first. Page on with since=next.
func handleHistory(s *Server) http.Handler {
	type reply struct {
		Messages []envelopeJSON `json:"messages"`
		Next     uint64         `json:"next"`
		Epoch    string         `json:"epoch"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, err := pathUser(r)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		since, err := uintParam(r, "since", 0)
		var limit uint64
		if err == nil {
			limit, err = limitParam(r, defaultHistoryPage)
		}
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		msgs, err := s.stream.History(r.Context(), user, since, int(min(limit, herald.MaxHistoryPage)))
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		out := reply{Messages: make([]envelopeJSON, len(msgs)), Next: since, Epoch: s.stream.Epoch()}
		for i := range msgs {
			out.Messages[i] = envelopeOf(&msgs[i])
			out.Next = msgs[i].Offset
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// userFromToken authenticates a browser-facing request with the user's
// client token (Authorization: Bearer, or ?token=), not the API key.
func userFromToken(s *Server) func(r *http.Request) (herald.UserID, error) {
	return func(r *http.Request) (herald.UserID, error) {
		c, err := s.gateway.Authenticate(r)
		if err != nil {
			s.observer.AuthFailed(AuthToken)
		}
		return c.User, err
	}
}

// userFromPath is the server API's way: the API key was checked, the user
// is in the path.
func userFromPath(r *http.Request) (herald.UserID, error) { return pathUser(r) }

func parseInboxStatus(v string) (herald.InboxStatus, error) {
	switch v {
	case "", "all":
		return herald.InboxAll, nil
	case "unread":
		return herald.InboxUnread, nil
	case "archived":
		return herald.InboxArchived, nil
	}
	return 0, herald.Errorf(herald.EInvalidRequest, "status must be unread, all or archived, got %q", v)
}

// handleInbox lists the inbox, newest first:
// ?status=unread|all|archived&before=<offset>&limit=<n>.
func handleInbox(s *Server, userOf func(*http.Request) (herald.UserID, error)) http.Handler {
	type reply struct {
		Messages []envelopeJSON `json:"messages"`
		Next     *uint64        `json:"next"` // before= for the next (older) page; null at the end
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, err := userOf(r)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		q := herald.InboxQuery{User: user}
		q.Status, err = parseInboxStatus(r.URL.Query().Get("status"))
		var limit uint64
		if err == nil {
			q.Before, err = uintParam(r, "before", 0)
		}
		if err == nil {
			limit, err = limitParam(r, herald.DefaultInboxLimit)
		}
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		q.Limit = int(min(limit, herald.MaxInboxLimit))
		items, err := s.stream.Inbox(r.Context(), q)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		out := reply{Messages: make([]envelopeJSON, len(items))}
		for i := range items {
			it := &items[i]
			out.Messages[i] = envelopeJSON{m: &it.Message, inbox: it}
		}
		if len(items) > 0 && len(items) == q.PageSize() {
			next := items[len(items)-1].Offset
			out.Next = &next
		}
		writeJSON(w, http.StatusOK, out)
	})
}

func handleInboxCounts(s *Server, userOf func(*http.Request) (herald.UserID, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, err := userOf(r)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		c, err := s.stream.Counts(r.Context(), user)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		writeJSON(w, http.StatusOK, c)
	})
}

// handleInboxMark serves POST …/inbox/{seen,read,archive} with
// {"ids":[…]} or {"all":true}.
func handleInboxMark(s *Server, mark herald.Mark, userOf func(*http.Request) (herald.UserID, error)) http.Handler {
	type request struct {
		IDs []string `json:"ids"`
		All bool     `json:"all"`
	}
	type reply struct {
		Changed []string `json:"changed"`
		herald.InboxCounts
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, err := userOf(r)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		var req request
		if err = readJSON(r, &req); err != nil {
			writeError(w, r, s.log, err)
			return
		}
		switch {
		case req.All && len(req.IDs) > 0:
			err = herald.Errorf(herald.EInvalidRequest, "give ids or all, not both")
		case !req.All && len(req.IDs) == 0:
			err = herald.Errorf(herald.EInvalidRequest, "give ids (a non-empty list) or all: true")
		case len(req.IDs) > maxMarkIDs:
			err = herald.Errorf(herald.EInvalidRequest, "at most %d ids at once", maxMarkIDs)
		}
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		changed, counts, err := s.stream.Mark(r.Context(), user, mark, req.IDs, req.All)
		if err != nil {
			writeError(w, r, s.log, err)
			return
		}
		if changed == nil {
			changed = []string{}
		}
		writeJSON(w, http.StatusOK, reply{Changed: changed, InboxCounts: counts})
	})
}

// ackWait parses ?wait=ack&timeout=D (default defaultAckWait). ok is false
// when the caller did not ask to wait.
func ackWait(r *http.Request) (d time.Duration, ok bool, err error) {
	q := r.URL.Query()
	switch q.Get("wait") {
	case "":
		return 0, false, nil
	case "ack":
	default:
		return 0, false, herald.Errorf(herald.EInvalidRequest, "wait must be \"ack\"")
	}
	d = defaultAckWait
	if v := q.Get("timeout"); v != "" {
		if d, err = time.ParseDuration(v); err != nil || d <= 0 || d > MaxAckWait {
			return 0, false, herald.Errorf(herald.EInvalidRequest, "timeout must be a duration between 0 and %s, like 2s", MaxAckWait)
		}
	}
	return d, true, nil
}

// waitForAck blocks until a connection of the user acked offset or d
// passes; the reply's acked field says which.
func (s *Server) waitForAck(ctx context.Context, user herald.UserID, offset uint64, d time.Duration) (conns, acked int) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return s.stream.WaitAck(ctx, user, offset)
}
