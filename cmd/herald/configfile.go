package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// fileValue is one value of the config file with where it was written, so
// that every error about it can name the key and the line.
type fileValue struct {
	key  string // "max_conns", or "api_keys[1].scopes"
	line int
	text string   // the value as a setting parses it: "10s", "42", "true"
	list []string // an array of strings, for list settings
	kind unstable.Kind
}

// where says where v came from, for error messages: "herald.toml:12: max_conns".
func (v fileValue) where(file string) string { return fmt.Sprintf("%s:%d: %s", file, v.line, v.key) }

// configFile is a parsed config file: the top-level keys in file order, and
// the [[api_keys]] tables.
type configFile struct {
	name    string
	values  []fileValue
	apiKeys [][]fileValue
}

// parseConfigFile parses TOML text. It reads the document with go-toml's
// position-aware parser instead of decoding into a struct, because every
// error — unknown key, wrong type, value out of range — must name the line;
// go-toml's decoder reports lines only for syntax errors and unknown keys.
//
// The file's shape is flat: each setting is a top-level key (the
// environment variable without HERALD_, lower case), plus an array of
// [[api_keys]] tables. Anything else is refused with its line.
func parseConfigFile(name string, data []byte) (*configFile, error) {
	cf := &configFile{name: name}
	var p unstable.Parser
	p.Reset(data)
	line := func(n *unstable.Node) int { return p.Shape(n.Raw).Start.Line }
	table := "" // "" top level, "api_keys" inside an [[api_keys]] entry
	seen := map[string]int{}
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			key, kn := joinKey(e.Key())
			if e.Kind == unstable.ArrayTable && key == "api_keys" {
				table = "api_keys"
				cf.apiKeys = append(cf.apiKeys, nil)
				seen = map[string]int{}
				continue
			}
			if key == "api_keys" {
				return nil, fmt.Errorf("%s:%d: api_keys is an array of tables: write [[api_keys]]", name, line(kn))
			}
			return nil, fmt.Errorf("%s:%d: unknown table [%s]: settings are top-level keys; the only table is [[api_keys]]", name, line(kn), key)
		case unstable.KeyValue:
			key, kn := joinKey(e.Key())
			where := key
			if table == "api_keys" {
				where = fmt.Sprintf("api_keys[%d].%s", len(cf.apiKeys)-1, key)
			}
			if first, dup := seen[key]; dup {
				return nil, fmt.Errorf("%s:%d: %s is set twice (first on line %d)", name, line(kn), where, first)
			}
			seen[key] = line(kn)
			v, err := scalar(e.Value())
			if err != nil {
				return nil, fmt.Errorf("%s:%d: %s: %w", name, line(kn), where, err)
			}
			v.key, v.line = where, line(kn)
			if table == "api_keys" {
				v.key = key
				cf.apiKeys[len(cf.apiKeys)-1] = append(cf.apiKeys[len(cf.apiKeys)-1], v)
			} else {
				cf.values = append(cf.values, v)
			}
		}
	}
	if err := p.Error(); err != nil {
		var perr *unstable.ParserError
		if errors.As(err, &perr) {
			pos := p.Shape(p.Range(perr.Highlight)).Start
			return nil, fmt.Errorf("%s:%d:%d: %s", name, pos.Line, pos.Column, perr.Message)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return cf, nil
}

// joinKey returns a dotted key's text and its first part, for the line.
func joinKey(it unstable.Iterator) (string, *unstable.Node) {
	var parts []string
	var first *unstable.Node
	for it.Next() {
		if first == nil {
			first = it.Node()
		}
		parts = append(parts, string(it.Node().Data))
	}
	return strings.Join(parts, "."), first
}

// scalar turns a value node into the text a setting parses.
func scalar(n *unstable.Node) (fileValue, error) {
	v := fileValue{kind: n.Kind}
	switch n.Kind {
	case unstable.String, unstable.Bool:
		v.text = string(n.Data)
	case unstable.Integer:
		i, err := strconv.ParseInt(strings.ReplaceAll(string(n.Data), "_", ""), 0, 64)
		if err != nil {
			return v, fmt.Errorf("integer %s out of range", n.Data)
		}
		v.text = strconv.FormatInt(i, 10)
	case unstable.Float:
		v.text = strings.ReplaceAll(string(n.Data), "_", "")
	case unstable.Array:
		it := n.Children()
		for it.Next() {
			c := it.Node()
			if c.Kind != unstable.String {
				return v, fmt.Errorf("arrays hold strings only, got %s", c.Kind)
			}
			v.list = append(v.list, string(c.Data))
		}
		if v.list == nil {
			v.list = []string{}
		}
		v.text = strings.Join(v.list, ",")
	default:
		return v, fmt.Errorf("a %s is not a value any setting takes", n.Kind)
	}
	return v, nil
}
