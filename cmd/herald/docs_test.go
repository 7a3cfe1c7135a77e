package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

// docsConfigRows returns the rows of docs/api.md's configuration table,
// by variable, as their cells.
func docsConfigRows(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "\n## Configuration\n")
	if start < 0 {
		t.Fatal("docs/api.md has no Configuration section")
	}
	section := doc[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	rows := map[string][]string{}
	cell := regexp.MustCompile("^`([^`]*)`")
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `HERALD_") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		name := cell.FindStringSubmatch(cells[0])[1]
		rows[name] = cells
	}
	return rows
}

// docsDefault is how the table writes a setting's default.
func docsDefault(s setting) string {
	if s.def == "" || s.kind == kList && s.def == "" {
		return "unset"
	}
	return "`" + s.def + "`"
}

// Every setting is one row of docs/api.md's configuration table, with its
// flag, its config-file key and its default as the code has them; and
// every row is a setting. The meaning column is the docs' own.
func TestDocsConfigTable(t *testing.T) {
	rows := docsConfigRows(t)
	var missing []string
	for _, s := range settings() {
		flag, key := "`-"+s.flag()+"`", "`"+s.name+"`"
		if s.secret {
			flag, key = "—", "—"
		}
		want := []string{"`" + s.env() + "`", flag, key, docsDefault(s)}
		got, ok := rows[s.env()]
		if !ok {
			missing = append(missing, fmt.Sprintf("| %s | %s | %s | %s | %s |", want[0], want[1], want[2], want[3], s.usage))
			continue
		}
		delete(rows, s.env())
		if len(got) != 5 {
			t.Errorf("row %s has %d cells, want 5 (variable, flag, file key, default, meaning)", s.env(), len(got))
			continue
		}
		for i, col := range []string{"flag", "file key", "default"} {
			if !strings.HasPrefix(got[i+1], want[i+1]) {
				t.Errorf("%s: docs say %s %s, the code %s", s.env(), col, got[i+1], want[i+1])
			}
		}
	}
	if len(missing) > 0 {
		t.Errorf("docs/api.md lacks these settings; rows to start from:\n%s", strings.Join(missing, "\n"))
	}
	for name := range rows {
		if !knownVariable(name) {
			t.Errorf("docs/api.md documents %s, which Herald does not read", name)
		}
	}
}
