// Package schematest checks, in tests, that the JSON Herald's client
// protocols carry matches docs/protocol.schema.json — the machine-readable
// contract that client code (the TypeScript client, for one) is generated
// from. A test that reads a frame off a herald.v1 connection or an event
// off a /sse stream hands it to a Validator:
//
//	v := schematest.New(t)
//	…
//	_, frame, _ := ws.Read(ctx)
//	v.ServerMessage(t, frame)
//
// and a field the server starts sending, or a type it gets wrong, fails
// the test until the schema says so too: server messages are closed
// (additionalProperties: false), so the schema and the server cannot drift
// apart silently.
//
// Each entry point is a definition of the schema, named by its JSON
// pointer below #/$defs/: "ServerMessage", "ClientMessage", "AckRequest",
// "SSEEvent", "sse/<event>" for the data of each Server-Sent Event, and
// every other definition ("Message", "Reset", …) for tests that expect one
// message in particular. [Validator.Check] takes that name.
package schematest

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// SchemaFile is where the schema lives, relative to the module root.
const SchemaFile = "docs/protocol.schema.json"

// Validator validates protocol messages against docs/protocol.schema.json,
// found by walking up from the working directory to go.mod. It holds the
// schema compiled once, and is safe for concurrent use: the tests that
// read several connections from several goroutines can share one.
type Validator struct {
	path    string                        // the schema file, for messages
	schemas map[string]*jsonschema.Schema // entry points by name below #/$defs/
	unions  map[string]map[string]string  // for a oneOf over messages: their definitions by type

	// Nothing is written after Load: that, and jsonschema.Schema being
	// read-only once compiled, is what makes a Validator safe to share.
}

// New loads and compiles the schema of the module the test runs in, and
// fails tb (with Fatal, so call it from the test's goroutine) when it
// cannot: a schema that does not compile is a broken contract.
func New(tb testing.TB) *Validator {
	tb.Helper()
	root, err := moduleRoot()
	if err != nil {
		tb.Fatalf("schematest: %v", err)
		return nil
	}
	v, err := Load(filepath.Join(root, filepath.FromSlash(SchemaFile)))
	if err != nil {
		tb.Fatalf("schematest: %v", err)
		return nil
	}
	return v
}

// Load reads the schema at path and compiles every entry point, with
// format assertion on (a ts that is not an RFC 3339 date-time is an
// error, not an annotation). New is Load for tests; Load is there for
// code that wants an error rather than a failed test.
func Load(path string) (*Validator, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	names, unions, err := entryPoints(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}

	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(abs, doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	v := &Validator{path: path, schemas: make(map[string]*jsonschema.Schema, len(names)), unions: unions}
	for _, name := range names {
		sch, err := c.Compile(abs + "#/$defs/" + name)
		if err != nil {
			return nil, fmt.Errorf("%s: compile #/$defs/%s: %w", path, name, err)
		}
		v.schemas[name] = sch
	}
	for _, need := range []string{"ServerMessage", "ClientMessage", "AckRequest", "sse/message"} {
		if v.schemas[need] == nil {
			return nil, fmt.Errorf("%s: no entry point #/$defs/%s", path, need)
		}
	}
	return v, nil
}

// entryPoints lists the names of the schema's definitions: each member of
// $defs, except that $defs/sse is not a schema but a map from SSE event
// names to schemas, whose members are named "sse/<event>". Members that
// are not objects (the map's description) are not schemas.
//
// It also finds the unions: definitions that are a oneOf of references to
// definitions each with a constant type (ServerMessage, ClientMessage),
// mapping each type to its definition's name. Check uses them to explain
// a mismatch by the one definition the message claims to be, rather than
// by every alternative of the oneOf.
func entryPoints(doc any) (names []string, unions map[string]map[string]string, err error) {
	top, _ := doc.(map[string]any)
	defs, ok := top["$defs"].(map[string]any)
	if !ok {
		return nil, nil, errors.New("no $defs object")
	}
	unions = make(map[string]map[string]string)
	for name, def := range defs {
		if name != "sse" {
			names = append(names, name)
			if byType := union(defs, def); byType != nil {
				unions[name] = byType
			}
			continue
		}
		events, ok := def.(map[string]any)
		if !ok {
			return nil, nil, errors.New("$defs/sse is not an object")
		}
		for event, s := range events {
			if _, ok := s.(map[string]any); ok {
				names = append(names, "sse/"+event)
			}
		}
	}
	slices.Sort(names)
	return names, unions, nil
}

// union returns, when def is {"oneOf": [{"$ref": "#/$defs/<name>"}, …]}
// and each of those definitions has "properties": {"type": {"const": t}},
// the definitions' names keyed by t; else nil.
func union(defs map[string]any, def any) map[string]string {
	d, _ := def.(map[string]any)
	alts, _ := d["oneOf"].([]any)
	if len(alts) == 0 {
		return nil
	}
	byType := make(map[string]string, len(alts))
	for _, alt := range alts {
		a, _ := alt.(map[string]any)
		ref, _ := a["$ref"].(string)
		name, ok := strings.CutPrefix(ref, "#/$defs/")
		if !ok || len(a) != 1 {
			return nil
		}
		target, _ := defs[name].(map[string]any)
		props, _ := target["properties"].(map[string]any)
		typ, _ := props["type"].(map[string]any)
		t, ok := typ["const"].(string)
		if !ok {
			return nil
		}
		byType[t] = name
	}
	return byType
}

// moduleRoot walks up from the working directory (a package's directory
// under go test) to the directory holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod in the working directory or above it")
		}
		dir = parent
	}
}

// Check validates msg, one JSON document, against the entry point named
// kind (the definition's pointer below #/$defs/, e.g. "ServerMessage" or
// "sse/connected"). It returns nil when msg matches; otherwise an error
// saying where and why it does not, or that msg is not JSON, or that the
// schema has no such entry point.
//
// When kind is a union of messages told apart by their type member, a
// mismatch is explained by the definition of msg's type alone ("ts is not
// a date-time"), not by how msg fails each alternative ("type must be
// ping", "type must be pong", …).
func (v *Validator) Check(kind string, msg []byte) error {
	sch := v.schemas[kind]
	if sch == nil {
		return fmt.Errorf("%s has no entry point #/$defs/%s", v.path, kind)
	}
	// UnmarshalJSON keeps numbers as json.Number, so an offset near 2^64
	// is checked exactly, and refuses anything after the document.
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(msg))
	if err != nil {
		return fmt.Errorf("not a JSON document: %w", err)
	}
	err = sch.Validate(inst)
	byType := v.unions[kind]
	if err == nil || byType == nil {
		return err
	}
	obj, ok := inst.(map[string]any)
	if !ok {
		return fmt.Errorf("a %s is a JSON object: %w", kind, err)
	}
	t, ok := obj["type"].(string)
	if !ok {
		return fmt.Errorf("a %s has a string member \"type\": %w", kind, err)
	}
	name, ok := byType[t]
	if !ok {
		return fmt.Errorf("type %q is not a %s (%s)", t, kind, strings.Join(slices.Sorted(maps.Keys(byType)), ", "))
	}
	if one := v.schemas[name].Validate(inst); one != nil {
		return fmt.Errorf("type %q, #/$defs/%s: %w", t, name, one)
	}
	return err // matches its own definition yet fails the union: the schema's oneOf is ambiguous
}

// ServerMessage reports on tb a herald.v1 message from the server to a
// client (one WebSocket text frame) that does not match
// #/$defs/ServerMessage. Like the other reporting methods it fails with
// Errorf, so it may be called from any goroutine and the test goes on.
func (v *Validator) ServerMessage(tb testing.TB, msg []byte) {
	tb.Helper()
	v.report(tb, "ServerMessage", "herald.v1 server message", msg)
}

// ClientMessage reports on tb a herald.v1 message from a client to the
// server that does not match #/$defs/ClientMessage.
func (v *Validator) ClientMessage(tb testing.TB, msg []byte) {
	tb.Helper()
	v.report(tb, "ClientMessage", "herald.v1 client message", msg)
}

// SSEEvent reports on tb the data of a GET /sse event that does not
// match #/$defs/sse/<event>, or an event name the protocol does not have.
// event is the SSE event field, "" when the event had none (which means
// "message"); data is the event's data lines joined with "\n".
func (v *Validator) SSEEvent(tb testing.TB, event string, data []byte) {
	tb.Helper()
	if event == "" {
		event = "message"
	}
	if strings.Contains(event, "/") || v.schemas["sse/"+event] == nil {
		tb.Errorf("schematest: unknown SSE event %q (not in #/$defs/sse of %s), data %s", event, v.path, excerpt(data))
		return
	}
	v.report(tb, "sse/"+event, fmt.Sprintf("SSE %q event data", event), data)
}

// AckRequest reports on tb a POST /v1/ack request body that does not
// match #/$defs/AckRequest.
func (v *Validator) AckRequest(tb testing.TB, body []byte) {
	tb.Helper()
	v.report(tb, "AckRequest", "POST /v1/ack body", body)
}

func (v *Validator) report(tb testing.TB, kind, what string, msg []byte) {
	tb.Helper()
	if err := v.Check(kind, msg); err != nil {
		tb.Errorf("schematest: %s does not match %s#/$defs/%s\nmessage: %s\n%v", what, v.path, kind, excerpt(msg), err)
	}
}

// excerpt returns msg for a failure message, cut short when it is long
// (payloads go up to 128 KiB).
func excerpt(msg []byte) string {
	const max = 2048
	if len(msg) <= max {
		return string(msg)
	}
	return fmt.Sprintf("%s… (%d bytes)", strings.ToValidUTF8(string(msg[:max]), ""), len(msg))
}
