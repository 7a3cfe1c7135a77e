package routes

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// selection is a parsed route selection expression: the path of a field
// in a message's JSON body.
type selection []string

// parseSelection accepts API Gateway's $request.body.<path> form, also
// written ${request.body.<path>}. Other sources (headers, context) mean
// nothing for a WebSocket message and are refused.
func parseSelection(expr string) (selection, error) {
	p := expr
	if strings.HasPrefix(p, "${") && strings.HasSuffix(p, "}") {
		p = "$" + p[2:len(p)-1]
	}
	rest, ok := strings.CutPrefix(p, "$request.body.")
	if !ok {
		return nil, fmt.Errorf("%q: want $request.body.<field>, e.g. $request.body.action", expr)
	}
	parts := strings.Split(rest, ".")
	for _, s := range parts {
		if s == "" {
			return nil, fmt.Errorf("%q: empty field name in the path", expr)
		}
	}
	return parts, nil
}

// key returns the route key a message selects: the string (or the JSON
// text of a number or boolean) at the path, or "" when the message is not
// a JSON object or has nothing usable there — which sends it to $default.
func (s selection) key(body []byte) string {
	v := json.RawMessage(body)
	for _, field := range s {
		t := bytes.TrimLeft(v, " \t\r\n")
		if len(t) == 0 || t[0] != '{' {
			return ""
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(t, &obj) != nil {
			return ""
		}
		next, ok := obj[field]
		if !ok {
			return ""
		}
		v = next
	}
	var str string
	if json.Unmarshal(v, &str) == nil {
		return str
	}
	t := bytes.TrimSpace(v)
	if len(t) == 0 || t[0] == '{' || t[0] == '[' || string(t) == "null" {
		return ""
	}
	return string(t) // a number or a boolean, as written
}
