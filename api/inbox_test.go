package api

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"

	"github.com/herald-gw/herald"
)

func TestHistory(t *testing.T) {
	get := func(query string) *http.Request { return apiRequest("GET", "/v1/users/42/messages"+query, "") }
	// asked checks the page the handler asked the delivery path for.
	asked := func(since uint64, limit int) func(*testing.T, *fixture, *httptest.ResponseRecorder) {
		return func(t *testing.T, f *fixture, _ *httptest.ResponseRecorder) {
			s := f.streams
			if s.historyUser != "42" || s.historySince != since || s.historyLimit != limit {
				t.Errorf("asked for %s's messages after %d, %d at most; want 42's after %d, %d at most", s.historyUser, s.historySince, s.historyLimit, since, limit)
			}
		}
	}
	invalid := func(query, msg string) routeTest {
		return routeTest{name: query, req: get(query), status: http.StatusBadRequest, code: herald.EInvalidRequest, msg: msg}
	}
	runRouteTests(t, []routeTest{
		{name: "defaults", req: get(""), status: http.StatusOK, body: `{"messages":[],"next":0,"epoch":"epoch-1"}`, check: asked(0, defaultHistoryPage)},
		// An empty page answers next = since, so paging on stays put.
		{name: "since and limit", req: get("?since=5&limit=2"), status: http.StatusOK, body: `{"messages":[],"next":5,"epoch":"epoch-1"}`, check: asked(5, 2)},
		{name: "limit clamped", req: get("?limit=5000"), status: http.StatusOK, check: asked(0, herald.MaxHistoryPage)},
		{name: "limit beyond int64", req: get("?limit=18446744073709551615"), status: http.StatusOK, check: asked(0, herald.MaxHistoryPage)},
		invalid("?limit=0", "limit must be at least 1"),
		{
			name: "envelopes", req: get("?since=6"), status: http.StatusOK,
			setup: func(f *fixture) {
				f.streams.history = []herald.Message{
					{ID: "m7", User: "42", Offset: 7, Epoch: "epoch-1", Time: testTime(), Data: []byte(`{"a":1}`)},
					// A payload that is not JSON (possible through
					// /v1/notify's string) is a JSON string in the envelope.
					{ID: "m8", User: "42", Offset: 8, Epoch: "epoch-1", Time: testTime(), Data: []byte(`hi there`)},
				}
			},
			body: `{"messages":[
				{"type":"message","id":"m7","offset":7,"epoch":"epoch-1","ts":"2026-11-25T12:00:00Z","data":{"a":1}},
				{"type":"message","id":"m8","offset":8,"epoch":"epoch-1","ts":"2026-11-25T12:00:00Z","data":"hi there"}
			],"next":8,"epoch":"epoch-1"}`,
		},
		invalid("?since=abc", "since must be an unsigned integer"),
		invalid("?since=-1", "since must be an unsigned integer"),
		invalid("?limit=1.5", "limit must be an unsigned integer"),
		invalid("?limit=ten", "limit must be an unsigned integer"),
		{name: "blank user", req: apiRequest("GET", "/v1/users/%20/messages", ""), status: http.StatusBadRequest, code: herald.EInvalidRequest, msg: "user id"},
	})
}

// inboxRoute is one inbox route in its two forms: the browser's (client
// token; the user is the token's) and the server API's (API key; the user
// is in the path).
type inboxRoute struct {
	name string
	req  func(method, sub, query, body string) *http.Request
	user herald.UserID
}

func inboxRoutes() []inboxRoute {
	return []inboxRoute{
		{"browser", func(method, sub, query, body string) *http.Request {
			return userRequest(method, "/v1/inbox"+sub+query, body)
		}, "alice"},
		{"server", func(method, sub, query, body string) *http.Request {
			return apiRequest(method, "/v1/users/42/inbox"+sub+query, body)
		}, "42"},
	}
}

func TestInbox(t *testing.T) {
	for _, r := range inboxRoutes() {
		t.Run(r.name, func(t *testing.T) {
			get := func(query string) *http.Request { return r.req("GET", "", query, "") }
			asked := func(want herald.InboxQuery) func(*testing.T, *fixture, *httptest.ResponseRecorder) {
				return func(t *testing.T, f *fixture, _ *httptest.ResponseRecorder) {
					want.User = r.user
					if f.streams.inboxQuery != want {
						t.Errorf("asked for %+v, want %+v", f.streams.inboxQuery, want)
					}
				}
			}
			item := func(offset uint64, seen, read, archived bool) herald.InboxItem {
				id := "m" + strconv.FormatUint(offset, 10)
				return herald.InboxItem{
					Message: herald.Message{ID: id, User: r.user, Offset: offset, Epoch: "epoch-1", Time: testTime(), Data: []byte(`1`)},
					Seen:    seen, Read: read, Archived: archived,
				}
			}
			invalid := func(query, msg string) routeTest {
				return routeTest{name: query, req: get(query), status: http.StatusBadRequest, code: herald.EInvalidRequest, msg: msg}
			}
			runRouteTests(t, []routeTest{
				{
					name: "defaults", req: get(""), status: http.StatusOK, body: `{"messages":[],"next":null}`,
					check: asked(herald.InboxQuery{Status: herald.InboxAll, Limit: herald.DefaultInboxLimit}),
				},
				{name: "all", req: get("?status=all"), status: http.StatusOK, check: asked(herald.InboxQuery{Status: herald.InboxAll, Limit: herald.DefaultInboxLimit})},
				{name: "unread", req: get("?status=unread"), status: http.StatusOK, check: asked(herald.InboxQuery{Status: herald.InboxUnread, Limit: herald.DefaultInboxLimit})},
				{name: "archived", req: get("?status=archived"), status: http.StatusOK, check: asked(herald.InboxQuery{Status: herald.InboxArchived, Limit: herald.DefaultInboxLimit})},
				{name: "before and limit", req: get("?before=10&limit=3"), status: http.StatusOK, check: asked(herald.InboxQuery{Before: 10, Limit: 3})},
				{name: "limit clamped", req: get("?limit=500"), status: http.StatusOK, check: asked(herald.InboxQuery{Limit: herald.MaxInboxLimit})},
				{
					// A full page says where the next (older) one starts.
					name: "full page", req: get("?before=10&limit=2"), status: http.StatusOK,
					setup: func(f *fixture) {
						f.streams.inbox = []herald.InboxItem{item(9, true, true, false), item(7, true, false, false)}
					},
					body: `{"messages":[
						{"type":"message","id":"m9","offset":9,"epoch":"epoch-1","ts":"2026-11-25T12:00:00Z","data":1,"seen":true,"read":true,"archived":false},
						{"type":"message","id":"m7","offset":7,"epoch":"epoch-1","ts":"2026-11-25T12:00:00Z","data":1,"seen":true,"read":false,"archived":false}
					],"next":7}`,
				},
				{
					name: "last page", req: get("?limit=3"), status: http.StatusOK,
					setup: func(f *fixture) { f.streams.inbox = []herald.InboxItem{item(2, false, false, true)} },
					body: `{"messages":[
						{"type":"message","id":"m2","offset":2,"epoch":"epoch-1","ts":"2026-11-25T12:00:00Z","data":1,"seen":false,"read":false,"archived":true}
					],"next":null}`,
				},
				invalid("?status=read", "status must be"),
				invalid("?status=ALL", "status must be"),
				invalid("?before=-1", "before must be an unsigned integer"),
				invalid("?limit=many", "limit must be an unsigned integer"),
				invalid("?limit=0", "limit must be at least 1"),
			})
		})
	}
}

func TestInboxCounts(t *testing.T) {
	for _, r := range inboxRoutes() {
		t.Run(r.name, func(t *testing.T) {
			runRouteTests(t, []routeTest{{
				name: "counts", req: r.req("GET", "/counts", "", ""), status: http.StatusOK,
				setup: func(f *fixture) { f.streams.counts = herald.InboxCounts{Unread: 3, Unseen: 1} },
				body:  `{"unread":3,"unseen":1}`,
				check: func(t *testing.T, f *fixture, _ *httptest.ResponseRecorder) {
					if f.streams.countsUser != r.user {
						t.Errorf("counted %s's inbox, want %s's", f.streams.countsUser, r.user)
					}
				},
			}})
		})
	}
}

func TestInboxMark(t *testing.T) {
	marks := []struct {
		path string
		mark herald.Mark
	}{
		{"/seen", herald.MarkSeen},
		{"/read", herald.MarkRead},
		{"/archive", herald.MarkArchived},
	}
	for _, r := range inboxRoutes() {
		for _, m := range marks {
			t.Run(r.name+m.path, func(t *testing.T) {
				post := func(body string) *http.Request { return r.req("POST", m.path, "", body) }
				marked := func(ids []string, all bool) func(*testing.T, *fixture, *httptest.ResponseRecorder) {
					return func(t *testing.T, f *fixture, _ *httptest.ResponseRecorder) {
						got := f.streams.mark
						if got.user != r.user || got.mark != m.mark || !slices.Equal(got.ids, ids) || got.all != all {
							t.Errorf("marked %+v, want %s's %v as %s (all: %v)", got, r.user, ids, m.mark, all)
						}
					}
				}
				invalid := func(name, body, msg string) routeTest {
					return routeTest{
						name: name, req: post(body), status: http.StatusBadRequest, code: herald.EInvalidRequest, msg: msg,
						check: func(t *testing.T, f *fixture, _ *httptest.ResponseRecorder) {
							if len(f.streams.calls) > 0 {
								t.Errorf("an invalid mark reached the delivery path: %v", f.streams.calls)
							}
						},
					}
				}
				runRouteTests(t, []routeTest{
					{
						name: "ids", req: post(`{"ids":["m1","m2"]}`), status: http.StatusOK,
						setup: func(f *fixture) {
							f.streams.changed, f.streams.counts = []string{"m2"}, herald.InboxCounts{Unread: 1, Unseen: 0}
						},
						body: `{"changed":["m2"],"unread":1,"unseen":0}`, check: marked([]string{"m1", "m2"}, false),
					},
					{
						// Nothing changed is an empty list, not null.
						name: "all", req: post(`{"all":true}`), status: http.StatusOK,
						body: `{"changed":[],"unread":0,"unseen":0}`, check: marked(nil, true),
					},
					{name: "ids with all false", req: post(`{"ids":["m1"],"all":false}`), status: http.StatusOK, check: marked([]string{"m1"}, false)},
					{name: "as many ids as allowed", req: post(`{"ids":` + ids(maxMarkIDs) + `}`), status: http.StatusOK},
					invalid("neither", `{}`, "give ids"),
					invalid("no ids", `{"ids":[]}`, "give ids"),
					invalid("null ids", `{"ids":null}`, "give ids"),
					invalid("all false", `{"all":false}`, "give ids"),
					invalid("both", `{"ids":["m1"],"all":true}`, "not both"),
					invalid("too many ids", `{"ids":`+ids(maxMarkIDs+1)+`}`, "at most 1000 ids"),
				})
			})
		}
	}
}
