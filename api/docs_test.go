package api

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/herald-gw/herald"
)

// docs/api.md is the public contract; these tests check that the numbers
// its tables state are the ones this package enforces, so that changing a
// limit or a status here without the documentation (or the other way
// round) fails a test. They read the tables loosely, by row label, so that
// rewording a row does not break them; a renamed row does, on purpose.

// readDocs returns docs/api.md with all runs of white space made one
// space, so that a phrase is found whatever its line breaks.
func readDocs(t *testing.T) (doc string, lines []string) {
	t.Helper()
	b, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(string(b)), " "), strings.Split(string(b), "\n")
}

// docsRow returns the table row of docs/api.md whose first cell is label.
func docsRow(t *testing.T, lines []string, label string) string {
	t.Helper()
	for _, l := range lines {
		if strings.HasPrefix(l, "| "+label+" |") {
			return l
		}
	}
	t.Fatalf("docs/api.md has no table row %q", label)
	return ""
}

// thousands formats n as docs/api.md writes numbers: 10,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func TestDocsErrorStatuses(t *testing.T) {
	_, lines := readDocs(t)
	for _, code := range []herald.ErrorCode{
		herald.EInvalidJSON, herald.EInvalidRequest, herald.EUnauthorized, herald.EForbidden, herald.ENotFound,
		herald.EMethodNotAllowed, herald.EPayloadTooLarge, herald.EUnsupportedMedia, herald.EUpgradeRequired,
		herald.ETooManyRequests, herald.EInternal, herald.EUnavailable,
	} {
		var row string
		for _, l := range lines {
			if cells := strings.Split(l, "|"); len(cells) > 3 && strings.TrimSpace(cells[2]) == "`"+string(code)+"`" {
				row = l
			}
		}
		if row == "" {
			t.Errorf("docs/api.md's error table has no row for %s", code)
			continue
		}
		documented, err := strconv.Atoi(strings.TrimSpace(strings.Split(row, "|")[1]))
		if err != nil || documented != statusOf(code) {
			t.Errorf("%s: docs/api.md says %q, the API answers %d", code, strings.Split(row, "|")[1], statusOf(code))
		}
	}
}

func TestDocsLimits(t *testing.T) {
	doc, lines := readDocs(t)
	rows := []struct{ label, value string }{
		{"payload (any route)", fmt.Sprintf("%d KiB", MaxPayload>>10)},
		{"request body", fmt.Sprintf("%d KiB", maxBody>>10)},
		{"users in `POST /v1/messages`", thousands(MaxUsers)},
		{"messages in `POST /v1/batch`", thousands(MaxBatch)},
		{"messages in `POST /v1/batch`", fmt.Sprintf("body %d MiB", maxBatchBody>>20)},
		{"inbox ids per call", thousands(maxMarkIDs)},
		{"history page", thousands(herald.MaxHistoryPage)},
		{"`wait=ack` timeout", fmt.Sprintf("%d s", int(MaxAckWait.Seconds()))},
	}
	for _, r := range rows {
		if row := docsRow(t, lines, r.label); !strings.Contains(row, "| "+r.value) && !strings.Contains(row, "("+r.value+")") {
			t.Errorf("docs/api.md's limit %q is not %s:\n%s", r.label, r.value, row)
		}
	}
	for _, phrase := range []string{
		fmt.Sprintf("`limit` default %d, max %d", herald.DefaultInboxLimit, herald.MaxInboxLimit),
		fmt.Sprintf("`limit` (default %d, max %d)", defaultHistoryPage, herald.MaxHistoryPage),
		fmt.Sprintf("(default `%s`, at most `%s`)", defaultAckWait, MaxAckWait),
		fmt.Sprintf("at most %s ids", thousands(maxMarkIDs)),
		fmt.Sprintf("At most %s users", thousands(MaxUsers)),
		fmt.Sprintf("at most %s messages; request body at most %d MiB", thousands(MaxBatch), maxBatchBody>>20),
	} {
		if !strings.Contains(doc, phrase) {
			t.Errorf("docs/api.md does not say %q", phrase)
		}
	}
}

// TestDocsScopes checks docs/api.md's scopes table against the routes'
// scopes (routeScopes, which TestScopes holds the API to): every scope
// has a row, and each route is listed in the row of each scope it takes.
func TestDocsScopes(t *testing.T) {
	_, lines := readDocs(t)
	for _, s := range Scopes() {
		docsRow(t, lines, "`"+string(s)+"`")
	}
	for route, scopes := range routeScopes {
		method, path, _ := strings.Cut(route, " ")
		want := "`" + method + " " + strings.ReplaceAll(path, "/42/", "/{user}/") + "`"
		for _, s := range scopes {
			if row := docsRow(t, lines, "`"+string(s)+"`"); !strings.Contains(row, want) {
				t.Errorf("docs/api.md's scope %s does not list %s:\n%s", s, want, row)
			}
		}
	}
}
