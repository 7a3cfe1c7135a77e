package awsdeploy_test

import (
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// This file reads a CloudFormation template the way CloudFormation does: as
// plain maps, lists and strings, with each short-form tag (!Ref, !GetAtt,
// !Sub, …) turned into the long form it abbreviates ({"Ref": …},
// {"Fn::GetAtt": […]}, {"Fn::Sub": …}). After that the checks see one shape
// whichever form a template author wrote.
//
// A YAML library's ordinary decoding cannot be used: go-yaml, like most,
// drops a tag it does not know and keeps the bare value, so `!Ref Api` would
// arrive as the string "Api". The tags are read from the syntax tree instead.

// shortForms maps each CloudFormation short-form tag to its long-form key.
var shortForms = map[string]string{
	"!Ref":         "Ref",
	"!Condition":   "Condition",
	"!Base64":      "Fn::Base64",
	"!Cidr":        "Fn::Cidr",
	"!FindInMap":   "Fn::FindInMap",
	"!GetAtt":      "Fn::GetAtt",
	"!GetAZs":      "Fn::GetAZs",
	"!ImportValue": "Fn::ImportValue",
	"!Join":        "Fn::Join",
	"!Select":      "Fn::Select",
	"!Split":       "Fn::Split",
	"!Sub":         "Fn::Sub",
	"!Transform":   "Fn::Transform",
	"!And":         "Fn::And",
	"!Equals":      "Fn::Equals",
	"!If":          "Fn::If",
	"!Not":         "Fn::Not",
	"!Or":          "Fn::Or",
}

// readTemplate reads and decodes a template file.
func readTemplate(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return decodeTemplate(b)
}

// decodeTemplate decodes one YAML document whose top level is a mapping.
func decodeTemplate(src []byte) (map[string]any, error) {
	f, err := parser.ParseBytes(src, 0)
	if err != nil {
		return nil, fmt.Errorf("parse: %s", yaml.FormatError(err, false, true))
	}
	if len(f.Docs) != 1 || f.Docs[0].Body == nil {
		return nil, fmt.Errorf("want one YAML document, found %d", len(f.Docs))
	}
	d := decoder{anchors: map[string]any{}}
	v, err := d.value(f.Docs[0].Body)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("the top level is a %T, not a mapping", v)
	}
	return m, nil
}

type decoder struct {
	anchors map[string]any
}

// value turns one node into map[string]any, []any or a scalar.
func (d *decoder) value(n ast.Node) (any, error) {
	switch n := n.(type) {
	case *ast.MappingNode:
		m := make(map[string]any, len(n.Values))
		for _, kv := range n.Values {
			if err := d.pair(m, kv); err != nil {
				return nil, err
			}
		}
		return m, nil
	case *ast.MappingValueNode:
		m := map[string]any{}
		return m, d.pair(m, n)
	case *ast.SequenceNode:
		l := make([]any, 0, len(n.Values))
		for _, e := range n.Values {
			v, err := d.value(e)
			if err != nil {
				return nil, err
			}
			l = append(l, v)
		}
		return l, nil
	case *ast.TagNode:
		return d.tagged(n)
	case *ast.AnchorNode:
		v, err := d.value(n.Value)
		if err != nil {
			return nil, err
		}
		d.anchors[n.Name.GetToken().Value] = v
		return v, nil
	case *ast.AliasNode:
		name := n.Value.GetToken().Value
		v, ok := d.anchors[name]
		if !ok {
			return nil, fmt.Errorf("line %d: alias *%s before its anchor", line(n), name)
		}
		return v, nil
	case *ast.NullNode:
		return nil, nil
	case *ast.LiteralNode:
		// A block scalar (| or >); its own GetValue would keep the indicator.
		return n.Value.GetValue(), nil
	case ast.ScalarNode:
		return n.GetValue(), nil
	}
	return nil, fmt.Errorf("line %d: unexpected YAML node %s", line(n), n.Type())
}

func (d *decoder) pair(m map[string]any, kv *ast.MappingValueNode) error {
	k, ok := kv.Key.(ast.ScalarNode)
	if !ok {
		return fmt.Errorf("line %d: a mapping key that is not a scalar", line(kv))
	}
	key := fmt.Sprint(k.GetValue())
	if _, dup := m[key]; dup {
		// CloudFormation rejects duplicate keys; a YAML library would keep one silently.
		return fmt.Errorf("line %d: duplicate key %q", line(kv), key)
	}
	v, err := d.value(kv.Value)
	if err != nil {
		return err
	}
	m[key] = v
	return nil
}

// tagged expands a short-form tag into its long form. YAML's own tags
// (!!str and the like) keep the value as decoded; any other tag is an
// error, since CloudFormation would reject it too.
func (d *decoder) tagged(n *ast.TagNode) (any, error) {
	tag := n.Start.Value
	v, err := d.value(n.Value)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(tag, "!!") {
		return v, nil
	}
	long, ok := shortForms[tag]
	if !ok {
		return nil, fmt.Errorf("line %d: unknown tag %s", line(n), tag)
	}
	if long == "Fn::GetAtt" {
		// !GetAtt Resource.Attribute is the list [Resource, Attribute]; an
		// attribute may itself hold dots (Endpoint.Address), a logical id cannot.
		if s, ok := v.(string); ok {
			res, attr, found := strings.Cut(s, ".")
			if !found {
				return nil, fmt.Errorf("line %d: !GetAtt %s has no .Attribute", line(n), s)
			}
			v = []any{res, attr}
		}
	}
	return map[string]any{long: v}, nil
}

func line(n ast.Node) int {
	if tk := n.GetToken(); tk != nil && tk.Position != nil {
		return tk.Position.Line
	}
	return 0
}

// ---- Reading intrinsic functions --------------------------------------------

// pseudoParameters are the names CloudFormation defines for every stack.
var pseudoParameters = map[string]bool{
	"AWS::AccountId":        true,
	"AWS::NotificationARNs": true,
	"AWS::NoValue":          true,
	"AWS::Partition":        true,
	"AWS::Region":           true,
	"AWS::StackId":          true,
	"AWS::StackName":        true,
	"AWS::URLSuffix":        true,
}

// intrinsic reports whether v is a one-key map {fn: arg}, the shape of
// every intrinsic function, and returns the argument.
func intrinsic(v any, fn string) (any, bool) {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return nil, false
	}
	arg, ok := m[fn]
	return arg, ok
}

// refOf returns X for {"Ref": X}.
func refOf(v any) (string, bool) {
	arg, ok := intrinsic(v, "Ref")
	if !ok {
		return "", false
	}
	s, ok := arg.(string)
	return s, ok
}

// getAttOf returns resource and attribute for {"Fn::GetAtt": [R, A]} or the
// long form's "R.A" string.
func getAttOf(v any) (res, attr string, ok bool) {
	arg, ok := intrinsic(v, "Fn::GetAtt")
	if !ok {
		return "", "", false
	}
	switch a := arg.(type) {
	case string:
		res, attr, ok = strings.Cut(a, ".")
		return res, attr, ok
	case []any:
		if len(a) == 2 {
			res, ok1 := a[0].(string)
			attr, ok2 := a[1].(string)
			return res, attr, ok1 && ok2
		}
	}
	return "", "", false
}

// subOf returns the string and the variable map of {"Fn::Sub": S} or
// {"Fn::Sub": [S, {vars}]}.
func subOf(v any) (s string, vars map[string]any, ok bool) {
	arg, ok := intrinsic(v, "Fn::Sub")
	if !ok {
		return "", nil, false
	}
	switch a := arg.(type) {
	case string:
		return a, nil, true
	case []any:
		if len(a) == 2 {
			s, ok1 := a[0].(string)
			vars, ok2 := a[1].(map[string]any)
			return s, vars, ok1 && ok2
		}
	}
	return "", nil, false
}

// subVariable matches ${Name} and ${Name.Attr}; ${!Literal} is CloudFormation's
// escape for a literal "${", so the pattern requires the first character not be "!".
var subVariable = regexp.MustCompile(`\$\{([^!}][^}]*)\}`)

// subNames lists the variables of a Fn::Sub string in order.
func subNames(s string) []string {
	var names []string
	for _, m := range subVariable.FindAllStringSubmatch(s, -1) {
		names = append(names, strings.TrimSpace(m[1]))
	}
	return names
}

// dynamicSecret reports whether v is a Secrets Manager dynamic reference,
// plain or built with Fn::Sub: CloudFormation resolves it at deploy time, so
// the secret itself never appears in the template.
func dynamicSecret(v any) bool {
	s, ok := v.(string)
	if !ok {
		s, _, ok = subOf(v)
	}
	return ok && strings.HasPrefix(s, "{{resolve:secretsmanager:") && strings.HasSuffix(s, "}}")
}

// strings of a value that may be one string or a list of them (IAM's Action
// and Resource, a resource's DependsOn).
func stringsOf(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	if v == nil {
		return nil
	}
	return []any{v}
}
