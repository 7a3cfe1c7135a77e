package api

import (
	"bytes"
	"encoding/json"
)

// batchItem is one message of a POST /v1/batch body, as the typed decoding
// pass produces it.
type batchItem struct {
	User *userID         `json:"user"`
	Data json.RawMessage `json:"data"`
}

// scanBatch decodes a /v1/batch body of the usual shape,
// {"messages":[{"user":"42","data":…},…]}, without reflection, into what
// json.Unmarshal into struct{ Messages []batchItem } gives for it. It is a
// fast path only: ok is false for anything it does not handle exactly as
// encoding/json does (invalid JSON, a key in another case or with an
// escape, a repeated key, a user with an escape or of another type, a null
// message or data, a type mismatch), and the caller then decodes with
// encoding/json, which decides. FuzzScanBatch checks the two agree.
func scanBatch(body []byte) (items []batchItem, ok bool) {
	if !json.Valid(body) {
		return nil, false
	}
	// From here on the input is valid JSON: the scanner needs to check
	// only which kind of value comes, not its syntax.
	p := &scanner{b: body}
	p.space()
	seen := false
	ok = p.object(func(key []byte) bool {
		switch {
		case string(key) == "messages" && !seen:
			seen = true
			items, ok = p.messages()
			return ok
		case bytes.EqualFold(key, []byte("messages")):
			return false // encoding/json's case-insensitive match, or a repeat
		default:
			p.skip() // an unknown field, ignored
			return true
		}
	})
	if !ok {
		return nil, false
	}
	return items, true
}

type scanner struct {
	b []byte
	i int
}

func (p *scanner) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *scanner) eat(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// object reads an object, calling field with each key once the scanner is
// at its value; field reads the value. It reports false if the value is
// not an object, a key has escapes, or field returns false.
func (p *scanner) object(field func(key []byte) bool) bool {
	if !p.eat('{') {
		return false
	}
	for p.space(); !p.eat('}'); p.space() {
		p.eat(',')
		p.space()
		key, ok := p.key()
		if !ok || !field(key) {
			return false
		}
	}
	return true
}

// key reads an object key and its colon; ok is false if it has escapes.
func (p *scanner) key() ([]byte, bool) {
	s, ok := p.plainString()
	if !ok {
		return nil, false
	}
	p.space()
	p.eat(':')
	p.space()
	return s, true
}

// plainString reads a string without escapes and returns its bytes between
// the quotes; ok is false (and nothing read) for anything else.
func (p *scanner) plainString() ([]byte, bool) {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return nil, false
	}
	for j := p.i + 1; j < len(p.b); j++ {
		switch p.b[j] {
		case '\\':
			return nil, false
		case '"':
			s := p.b[p.i+1 : j]
			p.i = j + 1
			return s, true
		}
	}
	return nil, false
}

// skip passes over one value (valid JSON) and returns its bytes.
func (p *scanner) skip() []byte {
	start := p.i
	depth := 0
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case '"':
			p.i++
			for p.b[p.i] != '"' {
				if p.b[p.i] == '\\' {
					p.i++
				}
				p.i++
			}
			p.i++
		case '{', '[':
			depth++
			p.i++
		case '}', ']':
			if depth == 0 {
				return p.b[start:p.i] // the end of the enclosing literal
			}
			depth--
			p.i++
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return p.b[start:p.i]
			}
			p.i++
		default:
			p.i++
			continue
		}
		if depth == 0 {
			return p.b[start:p.i] // a string, object or array ended
		}
	}
	return p.b[start:p.i]
}

// messages reads the value of "messages": null or an array of objects.
func (p *scanner) messages() ([]batchItem, bool) {
	if p.i < len(p.b) && p.b[p.i] == 'n' {
		p.i += len("null")
		return nil, true
	}
	if !p.eat('[') {
		return nil, false
	}
	items := make([]batchItem, 0, 16)
	for p.space(); !p.eat(']'); p.space() {
		p.eat(',')
		p.space()
		it, ok := p.message()
		if !ok {
			return nil, false
		}
		items = append(items, it)
	}
	return items, true
}

// message reads one message object.
func (p *scanner) message() (batchItem, bool) {
	var it batchItem
	var haveUser, haveData bool
	ok := p.object(func(key []byte) bool {
		switch {
		case string(key) == "user" && !haveUser:
			haveUser = true
			v := p.skip()
			switch {
			case string(v) == "null":
			case v[0] == '"':
				if len(v) < 2 || bytes.IndexByte(v, '\\') >= 0 {
					return false
				}
				u := userID(v[1 : len(v)-1])
				it.User = &u
			case isInteger(v):
				u := userID(v)
				it.User = &u
			default:
				return false
			}
		case string(key) == "data" && !haveData:
			haveData = true
			v := p.skip()
			if string(v) == "null" {
				return false
			}
			it.Data = append(json.RawMessage(nil), v...)
		case bytes.EqualFold(key, []byte("user")), bytes.EqualFold(key, []byte("data")):
			return false
		default:
			p.skip()
		}
		return true
	})
	return it, ok
}

// isInteger reports whether b is -?[0-9]+ (integerID, without the regexp).
func isInteger(b []byte) bool {
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
