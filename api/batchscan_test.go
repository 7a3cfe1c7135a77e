package api

import (
	"bytes"
	"encoding/json"
	"testing"
)

var scanBatchSeeds = []string{
	`{"messages":[{"user":"42","data":{"a":1}},{"user":7,"data":"x"}]}`,
	` { "messages" : [ { "data" : [1, "]" , {"}":"\""}] , "user" : "u-1" } ] , "other": {"messages": 1} } `,
	`{"messages":[]}`,
	`{"messages":null}`,
	`{}`,
	`{"messages":[{"user":null,"data":1}]}`,
	`{"messages":[{"data":true}]}`,
	`{"messages":[{"user":"a"}]}`,
	`{"messages":[null]}`,
	`{"messages":[{"user":"a","data":null}]}`,
	`{"Messages":[{"user":"a","data":1}]}`,
	`{"messages":[{"User":"a","data":1}]}`,
	`{"messages":[{"user":"a\\b","data":1}]}`,
	`{"messages":[{"user":1.5,"data":1}]}`,
	`{"messages":[{"user":-12,"data":-1.5e3}]}`,
	`{"messages":[{"user":true,"data":1}]}`,
	`{"messages":[{"user":"a","user":"b","data":1}]}`,
	`{"messages":[],"messages":[{"user":"a","data":1}]}`,
	`{"me\u0073sages":[{"user":"a","data":1}]}`,
	`{"messages":{"user":"a"}}`,
	`{"messages":[1]}`,
	`[{"user":"a","data":1}]`,
	`{"messages":[{"user":"a","data":1}]`,
	`{"messages":[{"user":"a","data":"\u00e9\"}"},{"user":"b","data":[[[]]],"x":[{}]}]}`,
	`{"messages":[{"user":"a","data":1}]} x`,
	`{"meſſages":[{"user":"a","data":1}]}`,
}

// TestScanBatch checks the scanner on the seeds: where it answers, the
// answer is encoding/json's; the usual shapes it must answer itself.
func TestScanBatch(t *testing.T) {
	for _, s := range scanBatchSeeds {
		checkScanBatch(t, []byte(s))
	}
	for _, s := range scanBatchSeeds[:8] {
		if _, ok := scanBatch([]byte(s)); !ok {
			t.Errorf("scanBatch(%s) fell back to encoding/json", s)
		}
	}
}

// FuzzScanBatch: the scanner must give exactly what encoding/json gives
// whenever it does not fall back.
func FuzzScanBatch(f *testing.F) {
	for _, s := range scanBatchSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkScanBatch(t, body)
	})
}

func checkScanBatch(t *testing.T, body []byte) {
	t.Helper()
	got, ok := scanBatch(body)
	if !ok {
		return
	}
	var want struct {
		Messages []batchItem `json:"messages"`
	}
	if err := json.Unmarshal(body, &want); err != nil {
		t.Fatalf("scanBatch(%q) decoded what encoding/json refuses: %v", body, err)
	}
	if len(got) != len(want.Messages) || (got == nil) != (want.Messages == nil) {
		t.Fatalf("scanBatch(%q): %d messages (nil %t), encoding/json %d (nil %t)", body, len(got), got == nil, len(want.Messages), want.Messages == nil)
	}
	for i, w := range want.Messages {
		g := got[i]
		if (g.User == nil) != (w.User == nil) || (g.User != nil && *g.User != *w.User) {
			t.Fatalf("scanBatch(%q) message %d: user %v, encoding/json %v", body, i, deref(g.User), deref(w.User))
		}
		if !bytes.Equal(g.Data, w.Data) || (g.Data == nil) != (w.Data == nil) {
			t.Fatalf("scanBatch(%q) message %d: data %q, encoding/json %q", body, i, g.Data, w.Data)
		}
	}
}

func deref(u *userID) any {
	if u == nil {
		return nil
	}
	return string(*u)
}
