package awsdeploy_test

import (
	"encoding/json"
	"fmt"
	"path"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// This file is the checker: checkTemplate reads a decoded template and
// returns what is wrong with it, one line per problem, each starting with
// the logical id of the resource (or the section) at fault. It knows the
// architecture this template must have — a WebSocket API with exactly the
// $connect and $disconnect routes, each proxied to a Go function that API
// Gateway may invoke from this API only, and IAM that grants each function
// only what it does — so a change that breaks the wiring or widens a
// permission fails the test before it reaches an AWS account.

// The resource types the checks look at.
const (
	typeAPI         = "AWS::ApiGatewayV2::Api"
	typeRoute       = "AWS::ApiGatewayV2::Route"
	typeIntegration = "AWS::ApiGatewayV2::Integration"
	typeStage       = "AWS::ApiGatewayV2::Stage"
	typePermission  = "AWS::Lambda::Permission"
	typeSAMFunction = "AWS::Serverless::Function"
	typeFunction    = "AWS::Lambda::Function"
	typeRole        = "AWS::IAM::Role"
	typePolicy      = "AWS::IAM::Policy"
	typeManaged     = "AWS::IAM::ManagedPolicy"
	typeSecret      = "AWS::SecretsManager::Secret"
)

// starActions are the actions IAM grants only on Resource "*" (they act on
// no particular resource), so a statement of only these may name "*".
// The template's inline policies need none of them — the ENI actions come
// with the AWSLambdaVPCAccessExecutionRole managed policy — but a statement
// added for them later should not fail the check.
var starActions = map[string]bool{
	"ec2:createnetworkinterface":    true,
	"ec2:describenetworkinterfaces": true,
	"ec2:deletenetworkinterface":    true,
	"xray:puttracesegments":         true,
	"xray:puttelemetryrecords":      true,
}

// allowedManagedPolicies are the AWS managed policies a function role may
// carry: logs, and the network interfaces of a function in a VPC.
var allowedManagedPolicies = map[string]bool{
	"AWSLambdaBasicExecutionRole":     true,
	"AWSLambdaVPCAccessExecutionRole": true,
}

// The expected shapes of the ARNs and URLs built with Fn::Sub; a capture
// group stands for a ${Name} whose target the checks then verify.
var (
	integrationURI = regexp.MustCompile(`^arn:\$\{AWS::Partition\}:apigateway:\$\{AWS::Region\}:lambda:path/2015-03-31/functions/\$\{(\w+)\.Arn\}/invocations$`)
	apiSourceArn   = regexp.MustCompile(`^arn:\$\{AWS::Partition\}:execute-api:\$\{AWS::Region\}:\$\{AWS::AccountId\}:\$\{(\w+)\}/`)
	connectionsArn = regexp.MustCompile(`^arn:\$\{AWS::Partition\}:execute-api:\$\{AWS::Region\}:\$\{AWS::AccountId\}:\$\{(\w+)\}/\$\{(\w+)\}/POST/@connections/\*$`)
	endpointURL    = regexp.MustCompile(`^https://\$\{(\w+)\}\.execute-api\.\$\{AWS::Region\}\.(?:\$\{AWS::URLSuffix\}|amazonaws\.com)/\$\{(\w+)\}$`)
	managedArn     = regexp.MustCompile(`^arn:(?:\$\{AWS::Partition\}|aws[a-z-]*):iam::aws:policy/(?:service-role/)?([A-Za-z0-9]+)$`)
)

// tmpl is a decoded template with the lookups the checks share.
type tmpl struct {
	doc       map[string]any
	params    map[string]any
	resources map[string]map[string]any
	problems  []string
}

// problem records one problem. Values from the template among args are
// shown as a template author writes them (!Ref X, !Sub "…"), not as Go maps.
func (t *tmpl) problem(where, format string, args ...any) {
	for i, a := range args {
		switch a.(type) {
		case map[string]any, []any, nil:
			args[i] = show(a)
		}
	}
	t.problems = append(t.problems, where+": "+fmt.Sprintf(format, args...))
}

// show renders a decoded value in the short forms, or as JSON.
func show(v any) string {
	if name, ok := refOf(v); ok {
		return "!Ref " + name
	}
	if res, attr, ok := getAttOf(v); ok {
		return "!GetAtt " + res + "." + attr
	}
	if s, vars, ok := subOf(v); ok && vars == nil {
		return "!Sub " + strconv.Quote(s)
	}
	if v == nil {
		return "(nothing)"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// checkTemplate runs every check and returns the problems found, sorted.
func checkTemplate(doc map[string]any) []string {
	t := index(doc)
	if doc["Transform"] != "AWS::Serverless-2016-10-31" {
		t.problem("Transform", "want AWS::Serverless-2016-10-31 (the functions are AWS::Serverless::Function), found %v", doc["Transform"])
	}
	t.checkReferences()
	t.checkAPI()
	t.checkFunctions()
	t.checkIAM()
	t.checkOutputs()
	sort.Strings(t.problems)
	return t.problems
}

// index makes the lookups; a resource it cannot index is a problem.
func index(doc map[string]any) *tmpl {
	t := &tmpl{doc: doc, resources: map[string]map[string]any{}}
	t.params, _ = doc["Parameters"].(map[string]any)
	res, _ := doc["Resources"].(map[string]any)
	for id, r := range res {
		m, ok := r.(map[string]any)
		if !ok {
			t.problem(id, "a resource must be a mapping, found %T", r)
			continue
		}
		if _, ok := m["Type"].(string); !ok {
			t.problem(id, "has no Type")
			continue
		}
		t.resources[id] = m
	}
	return t
}

// ---- Lookups ------------------------------------------------------------------

func (t *tmpl) typeOf(id string) string {
	s, _ := t.resources[id]["Type"].(string)
	return s
}

func (t *tmpl) props(id string) map[string]any {
	p, _ := t.resources[id]["Properties"].(map[string]any)
	return p
}

// ofType lists the logical ids of the given types, sorted so that problems
// come out in the same order every run.
func (t *tmpl) ofType(types ...string) []string {
	var ids []string
	for id := range t.resources {
		if slices.Contains(types, t.typeOf(id)) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

func (t *tmpl) isFunction(id string) bool {
	ty := t.typeOf(id)
	return ty == typeSAMFunction || ty == typeFunction
}

// functionOf returns F for {"Ref": F} or {"Fn::GetAtt": [F, "Arn"]} when F
// is a function of this template.
func (t *tmpl) functionOf(v any) (string, bool) {
	if id, ok := refOf(v); ok && t.isFunction(id) {
		return id, true
	}
	if id, attr, ok := getAttOf(v); ok && attr == "Arn" && t.isFunction(id) {
		return id, true
	}
	return "", false
}

// apiOf returns A for {"Ref": A} when A is an API of this template.
func (t *tmpl) apiOf(v any) (string, bool) {
	id, ok := refOf(v)
	return id, ok && t.typeOf(id) == typeAPI
}

// functionProps are a SAM function's properties as SAM deploys them: the
// Globals.Function section with the function's own properties over it,
// environment variables merged one by one.
func (t *tmpl) functionProps(id string) map[string]any {
	out := map[string]any{}
	globals, _ := t.doc["Globals"].(map[string]any)
	if t.typeOf(id) == typeSAMFunction {
		if g, ok := globals["Function"].(map[string]any); ok {
			for k, v := range g {
				out[k] = v
			}
		}
	}
	vars := map[string]any{}
	for _, layer := range []map[string]any{out, t.props(id)} {
		if env, ok := layer["Environment"].(map[string]any); ok {
			if v, ok := env["Variables"].(map[string]any); ok {
				for k, x := range v {
					vars[k] = x
				}
			}
		}
	}
	for k, v := range t.props(id) {
		out[k] = v
	}
	out["Environment"] = map[string]any{"Variables": vars}
	return out
}

func (t *tmpl) envOf(id string) map[string]any {
	return t.functionProps(id)["Environment"].(map[string]any)["Variables"].(map[string]any)
}

// program is the name of the folder a function's code is in (its CodeUri's
// last element): "connect", "disconnect" or "notification".
func (t *tmpl) program(id string) string {
	uri, _ := t.functionProps(id)["CodeUri"].(string)
	return path.Base(uri)
}

// roleOf returns R for a function whose Role is {"Fn::GetAtt": [R, "Arn"]}
// with R a role of this template.
func (t *tmpl) roleOf(fn string) (string, bool) {
	r, attr, ok := getAttOf(t.functionProps(fn)["Role"])
	return r, ok && attr == "Arn" && t.typeOf(r) == typeRole
}

// ---- References -------------------------------------------------------------

// checkReferences checks that every Ref, Fn::GetAtt and ${…} in Fn::Sub
// names a parameter, a resource or a pseudo parameter, and every DependsOn
// a resource. CloudFormation would refuse such a template only when it is
// deployed; here it fails at once, naming the resource.
func (t *tmpl) checkReferences() {
	for _, id := range keys(t.resources) {
		t.walkRefs(id, t.resources[id]["Properties"])
		for _, dep := range stringsOf(t.resources[id]["DependsOn"]) {
			name, _ := dep.(string)
			if _, ok := t.resources[name]; !ok || name == id {
				t.problem(id, "DependsOn %v, which is not another resource of the template", dep)
			}
		}
	}
	if g, ok := t.doc["Globals"]; ok {
		t.walkRefs("Globals", g)
	}
	if o, ok := t.doc["Outputs"].(map[string]any); ok {
		for name, v := range o {
			t.walkRefs("Outputs."+name, v)
		}
	}
}

// resolves reports whether name is something a Ref or ${name} can mean.
func (t *tmpl) resolves(name string, subVars map[string]any) bool {
	if _, ok := subVars[name]; ok {
		return true
	}
	if _, ok := t.params[name]; ok {
		return true
	}
	_, ok := t.resources[name]
	return ok || pseudoParameters[name]
}

func (t *tmpl) walkRefs(where string, v any) {
	if name, ok := refOf(v); ok {
		if !t.resolves(name, nil) {
			t.problem(where, "Ref %s names no parameter, resource or pseudo parameter", name)
		}
		return
	}
	if _, ok := intrinsic(v, "Fn::GetAtt"); ok {
		res, attr, ok := getAttOf(v)
		switch {
		case !ok:
			t.problem(where, "Fn::GetAtt %v is not [Resource, Attribute]", v)
		case t.resources[res] == nil:
			t.problem(where, "Fn::GetAtt %s.%s names no resource of the template", res, attr)
		}
		return
	}
	if _, ok := intrinsic(v, "Fn::Sub"); ok {
		s, vars, ok := subOf(v)
		if !ok {
			t.problem(where, "Fn::Sub %v is neither a string nor [string, {variables}]", v)
			return
		}
		for _, name := range subNames(s) {
			if res, attr, dotted := strings.Cut(name, "."); dotted && !pseudoParameters[name] {
				if t.resources[res] == nil {
					t.problem(where, "Fn::Sub ${%s}: %s is no resource of the template (for .%s)", name, res, attr)
				}
				continue
			}
			if !t.resolves(name, vars) {
				t.problem(where, "Fn::Sub ${%s} names no parameter, resource, pseudo parameter or variable", name)
			}
		}
		for _, x := range vars {
			t.walkRefs(where, x)
		}
		return
	}
	switch v := v.(type) {
	case map[string]any:
		for _, x := range v {
			t.walkRefs(where, x)
		}
	case []any:
		for _, x := range v {
			t.walkRefs(where, x)
		}
	}
}

// ---- The WebSocket API ------------------------------------------------------

// checkAPI checks the API, its routes and integrations, and that API Gateway
// may invoke each integration's function from this API only.
func (t *tmpl) checkAPI() {
	apis := t.ofType(typeAPI)
	if len(apis) == 0 {
		t.problem("Resources", "no %s", typeAPI)
	}
	routeKeys := map[string][]string{}
	for _, api := range apis {
		p := t.props(api)
		if p["ProtocolType"] != "WEBSOCKET" {
			t.problem(api, "ProtocolType is %v, want WEBSOCKET", p["ProtocolType"])
		}
		if p["RouteSelectionExpression"] != "$request.body.action" {
			t.problem(api, "RouteSelectionExpression is %v, want $request.body.action (the original API's)", p["RouteSelectionExpression"])
		}
		routeKeys[api] = nil
	}

	used := map[string]bool{}
	for _, route := range t.ofType(typeRoute) {
		p := t.props(route)
		api, ok := t.apiOf(p["ApiId"])
		if !ok {
			t.problem(route, "ApiId %v is not a Ref of an API of this template", p["ApiId"])
			continue
		}
		key, _ := p["RouteKey"].(string)
		routeKeys[api] = append(routeKeys[api], key)
		integ, ok := t.routeTarget(p["Target"])
		if !ok {
			t.problem(route, "Target %v is not integrations/<Ref of an %s>", p["Target"], typeIntegration)
			continue
		}
		used[integ] = true
		if other, _ := t.apiOf(t.props(integ)["ApiId"]); other != api {
			t.problem(route, "Target %s belongs to API %q, not to the route's API %s", integ, other, api)
		}
	}
	for _, api := range apis {
		got := routeKeys[api]
		sort.Strings(got)
		if want := []string{"$connect", "$disconnect"}; !slices.Equal(got, want) {
			t.problem(api, "routes are %q, want exactly %q", got, want)
		}
	}

	for _, integ := range t.ofType(typeIntegration) {
		p := t.props(integ)
		api, ok := t.apiOf(p["ApiId"])
		if !ok {
			t.problem(integ, "ApiId %v is not a Ref of an API of this template", p["ApiId"])
			continue
		}
		if !used[integ] {
			t.problem(integ, "no route targets this integration")
		}
		if p["IntegrationType"] != "AWS_PROXY" {
			t.problem(integ, "IntegrationType is %v, want AWS_PROXY (the function gets the whole request)", p["IntegrationType"])
		}
		s, _, _ := subOf(p["IntegrationUri"])
		m := integrationURI.FindStringSubmatch(s)
		if m == nil || !t.isFunction(m[1]) {
			t.problem(integ, "IntegrationUri %v does not name a function of this template as "+
				"arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Function.Arn}/invocations", p["IntegrationUri"])
			continue
		}
		if !t.apiMayInvoke(api, m[1]) {
			t.problem(m[1], "used by %s, but no %s lets apigateway.amazonaws.com invoke it with a SourceArn scoped to %s",
				integ, typePermission, api)
		}
	}

	// A permission for API Gateway without a SourceArn of this template's API
	// would let any API, in any account, invoke the function.
	for _, perm := range t.ofType(typePermission) {
		p := t.props(perm)
		if p["Principal"] != "apigateway.amazonaws.com" {
			continue
		}
		if _, ok := t.sourceAPI(p["SourceArn"]); !ok {
			t.problem(perm, "SourceArn %v is not scoped to an API of this template "+
				"(arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/…)", p["SourceArn"])
		}
	}
}

// routeTarget returns I for a Target written as !Sub integrations/${I} or
// !Join ["/", [integrations, !Ref I]], with I an integration of this template.
func (t *tmpl) routeTarget(v any) (string, bool) {
	if s, vars, ok := subOf(v); ok {
		name, found := strings.CutPrefix(s, "integrations/${")
		name, closed := strings.CutSuffix(name, "}")
		if found && closed && !strings.ContainsAny(name, "${}") {
			if x, ok := vars[name]; ok {
				name, _ = refOf(x)
			}
			return name, t.typeOf(name) == typeIntegration
		}
		return "", false
	}
	if arg, ok := intrinsic(v, "Fn::Join"); ok {
		if a, ok := arg.([]any); ok && len(a) == 2 {
			parts, _ := a[1].([]any)
			var name string
			switch {
			case a[0] == "/" && len(parts) == 2 && parts[0] == "integrations":
				name, _ = refOf(parts[1])
			case a[0] == "" && len(parts) == 2 && parts[0] == "integrations/":
				name, _ = refOf(parts[1])
			}
			return name, t.typeOf(name) == typeIntegration
		}
	}
	return "", false
}

// sourceAPI returns the API a SourceArn is scoped to.
func (t *tmpl) sourceAPI(v any) (string, bool) {
	s, _, _ := subOf(v)
	m := apiSourceArn.FindStringSubmatch(s)
	if m == nil || t.typeOf(m[1]) != typeAPI {
		return "", false
	}
	return m[1], true
}

// apiMayInvoke reports whether a permission lets API Gateway invoke fn from api.
func (t *tmpl) apiMayInvoke(api, fn string) bool {
	for _, perm := range t.ofType(typePermission) {
		p := t.props(perm)
		target, _ := t.functionOf(p["FunctionName"])
		source, _ := t.sourceAPI(p["SourceArn"])
		if target == fn && source == api && p["Principal"] == "apigateway.amazonaws.com" && p["Action"] == "lambda:InvokeFunction" {
			return true
		}
	}
	return false
}

// ---- The functions ----------------------------------------------------------

// checkFunctions checks each function's build and runtime settings and that
// its environment carries references, never secrets.
func (t *tmpl) checkFunctions() {
	fns := t.ofType(typeSAMFunction, typeFunction)
	var programs []string
	for _, fn := range fns {
		if t.typeOf(fn) != typeSAMFunction {
			t.problem(fn, "is an %s; the functions are %s, built by sam build", t.typeOf(fn), typeSAMFunction)
			continue
		}
		p := t.functionProps(fn)
		programs = append(programs, t.program(fn))
		for k, want := range map[string]any{"Runtime": "provided.al2023", "Handler": "bootstrap"} {
			if p[k] != want {
				t.problem(fn, "%s is %v, want %v", k, p[k], want)
			}
		}
		if !reflect.DeepEqual(p["Architectures"], []any{"arm64"}) {
			t.problem(fn, `Architectures is %v, want ["arm64"]`, p["Architectures"])
		}
		if meta, _ := t.resources[fn]["Metadata"].(map[string]any); meta["BuildMethod"] != "go1.x" {
			t.problem(fn, "Metadata.BuildMethod is %v, want go1.x (sam build compiles CodeUri with go build)", meta["BuildMethod"])
		}
		if uri, ok := p["CodeUri"].(string); !ok || !strings.HasPrefix(uri, "../../examples/seed/") {
			t.problem(fn, "CodeUri is %v, want ../../examples/seed/<program>", p["CodeUri"])
		}
		vpc, _ := p["VpcConfig"].(map[string]any)
		for _, k := range []string{"SubnetIds", "SecurityGroupIds"} {
			if name, ok := refOf(vpc[k]); !ok || t.params[name] == nil {
				t.problem(fn, "VpcConfig.%s is %v, want a Ref of a parameter (the database is in a VPC)", k, vpc[k])
			}
		}
		if _, ok := p["Policies"]; ok {
			t.problem(fn, "has Policies; give it an explicit Role instead, whose statements this test checks")
		}
		if _, ok := t.roleOf(fn); !ok {
			t.problem(fn, "Role %v is not !GetAtt <a role of this template>.Arn", p["Role"])
		}

		env := t.envOf(fn)
		if name, ok := refOf(env["DATABASE_SECRET_ARN"]); !ok || t.params[name] == nil {
			t.problem(fn, "DATABASE_SECRET_ARN is %v, want a Ref of a parameter", env["DATABASE_SECRET_ARN"])
		}
		if _, ok := env["DATABASE_URL"]; ok {
			t.problem(fn, "sets DATABASE_URL; the DSN belongs in the secret DATABASE_SECRET_ARN names")
		}
		for name, v := range env {
			if strings.Contains(name, "SECRET") && name != "DATABASE_SECRET_ARN" && !t.secretValue(v) {
				t.problem(fn, "%s is %v, want a Secrets Manager dynamic reference or a Ref of a NoEcho parameter", name, v)
			}
		}
		switch t.program(fn) {
		case "connect":
			if _, ok := env["TOKEN_SECRET"]; !ok {
				t.problem(fn, "has no TOKEN_SECRET, which the connect program verifies tokens with")
			}
		case "notification":
			s, _, _ := subOf(env["APIGW_ENDPOINT"])
			m := endpointURL.FindStringSubmatch(s)
			if m == nil || t.typeOf(m[1]) != typeAPI || !t.isStageOf(m[2], m[1]) {
				t.problem(fn, "APIGW_ENDPOINT %v is not https://${Api}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${Stage} of this template's API and stage", env["APIGW_ENDPOINT"])
			}
		}
	}
	sort.Strings(programs)
	if want := []string{"connect", "disconnect", "notification"}; !slices.Equal(programs, want) {
		t.problem("Resources", "the functions' programs are %q, want %q", programs, want)
	}
}

// secretValue reports whether v keeps a secret out of the template.
func (t *tmpl) secretValue(v any) bool {
	if dynamicSecret(v) {
		return true
	}
	name, ok := refOf(v)
	p, _ := t.params[name].(map[string]any)
	return ok && p["NoEcho"] == true
}

// isStageOf reports whether name stands for a stage of api: the Stage
// resource itself, or the parameter that Stage's StageName is a Ref of.
func (t *tmpl) isStageOf(name, api string) bool {
	for _, st := range t.ofType(typeStage) {
		p := t.props(st)
		if a, _ := t.apiOf(p["ApiId"]); a != api {
			continue
		}
		if param, _ := refOf(p["StageName"]); name == st || name == param {
			return true
		}
	}
	return false
}

// ---- IAM ---------------------------------------------------------------------

// statement is one IAM statement and where it is.
type statement struct {
	where string // the resource holding it
	role  string // the role it belongs to, or "" in a standalone policy
	m     map[string]any
}

// statements lists every statement of the identity policies: the inline
// policies of roles and the standalone policies.
func (t *tmpl) statements() []statement {
	var out []statement
	add := func(where, role string, doc any) {
		d, _ := doc.(map[string]any)
		for _, s := range stringsOf(d["Statement"]) {
			m, ok := s.(map[string]any)
			if !ok {
				t.problem(where, "a policy statement is a %T, not a mapping", s)
				continue
			}
			out = append(out, statement{where: where, role: role, m: m})
		}
	}
	for _, id := range t.ofType(typeRole, typePolicy, typeManaged) {
		p := t.props(id)
		if t.typeOf(id) == typeRole {
			for _, pol := range stringsOf(p["Policies"]) {
				pm, _ := pol.(map[string]any)
				add(id, id, pm["PolicyDocument"])
			}
			continue
		}
		add(id, "", p["PolicyDocument"])
	}
	return out
}

// actions returns a statement's actions in lower case (IAM compares them so).
func actions(s map[string]any) []string {
	var out []string
	for _, a := range stringsOf(s["Action"]) {
		str, _ := a.(string)
		out = append(out, strings.ToLower(str))
	}
	return out
}

// checkIAM checks least privilege: no wildcard action, no Resource "*" but
// for actions that require it, execute-api:ManageConnections for the
// notification function only and only on @connections of this API's stage,
// each function reading only its own database secret, roles that only
// Lambda can assume and only the managed policies a function needs.
func (t *tmpl) checkIAM() {
	users := map[string][]string{} // role → the programs of the functions using it
	for _, fn := range t.ofType(typeSAMFunction, typeFunction) {
		if role, ok := t.roleOf(fn); ok {
			users[role] = append(users[role], t.program(fn))
		}
	}

	manage := map[string]bool{}       // roles granted ManageConnections
	secretsRead := map[string][]any{} // role → resources it may GetSecretValue
	invokes := map[string][]any{}     // where → resources it may lambda:InvokeFunction
	for _, st := range t.statements() {
		s := st.m
		if s["Effect"] != "Allow" {
			continue
		}
		for _, k := range []string{"NotAction", "NotResource"} {
			if _, ok := s[k]; ok {
				t.problem(st.where, "a statement uses %s, which grants everything it does not name", k)
			}
		}
		acts := actions(s)
		resources := stringsOf(s["Resource"])
		if len(acts) == 0 || len(resources) == 0 {
			t.problem(st.where, "a statement without Action or Resource: %v", s)
		}
		onlyStar := len(acts) > 0
		for _, a := range acts {
			if strings.Contains(a, "*") {
				t.problem(st.where, "action %q is a wildcard; name the actions the function calls", a)
			}
			if !starActions[a] {
				onlyStar = false
			}
		}
		for _, r := range resources {
			if r == "*" && !onlyStar {
				t.problem(st.where, "Resource \"*\" for %v; name the resource (only actions that act on no resource may have \"*\")", s["Action"])
			}
		}
		for _, a := range acts {
			switch a {
			case "execute-api:manageconnections":
				manage[st.role] = true
				t.checkManageConnections(st, users[st.role], resources)
			case "secretsmanager:getsecretvalue":
				secretsRead[st.role] = append(secretsRead[st.role], resources...)
				for _, r := range resources {
					if name, ok := refOf(r); !ok || (t.params[name] == nil && t.typeOf(name) != typeSecret) {
						t.problem(st.where, "secretsmanager:GetSecretValue on %v; grant it on the one secret (a Ref of its ARN parameter)", r)
					}
				}
			case "lambda:invokefunction":
				invokes[st.where] = append(invokes[st.where], resources...)
			}
		}
	}

	for _, role := range t.ofType(typeRole) {
		p := t.props(role)
		t.checkTrust(role, p["AssumeRolePolicyDocument"])
		var managed []string
		for _, arn := range stringsOf(p["ManagedPolicyArns"]) {
			s, ok := arn.(string)
			if !ok {
				s, _, _ = subOf(arn)
			}
			m := managedArn.FindStringSubmatch(s)
			if m == nil || !allowedManagedPolicies[m[1]] {
				t.problem(role, "managed policy %s is not one a function role needs (%v)", s, keys(allowedManagedPolicies))
				continue
			}
			managed = append(managed, m[1])
		}
		if len(users[role]) > 0 && !slices.Contains(managed, "AWSLambdaVPCAccessExecutionRole") {
			t.problem(role, "lacks the AWSLambdaVPCAccessExecutionRole managed policy its functions need to run in the VPC")
		}
	}

	for _, fn := range t.ofType(typeSAMFunction, typeFunction) {
		role, ok := t.roleOf(fn)
		if !ok {
			continue
		}
		if t.program(fn) == "notification" && !manage[role] {
			t.problem(fn, "its role %s lacks execute-api:ManageConnections, so PostToConnection would be refused", role)
		}
		secret := t.envOf(fn)["DATABASE_SECRET_ARN"]
		if !slices.ContainsFunc(secretsRead[role], func(r any) bool { return reflect.DeepEqual(r, secret) }) {
			t.problem(fn, "its role %s may not secretsmanager:GetSecretValue the secret its DATABASE_SECRET_ARN names (%v)", role, secret)
		}
	}

	// The API server invokes the notification function: a policy for its role
	// must exist, granting that and nothing more.
	invokable := map[string]bool{}
	for where, rs := range invokes {
		for _, r := range rs {
			fn, ok := t.functionOf(r)
			if !ok || t.program(fn) != "notification" {
				t.problem(where, "lambda:InvokeFunction on %v, not on the notification function", r)
				continue
			}
			invokable[fn] = true
		}
	}
	for _, fn := range t.ofType(typeSAMFunction, typeFunction) {
		if t.program(fn) == "notification" && !invokable[fn] {
			t.problem(fn, "no policy grants lambda:InvokeFunction on it for the API server's role")
		}
	}
}

// checkManageConnections checks a statement granting ManageConnections: it
// must be in the role of the notification function and nothing else, on
// POST @connections of this template's API and stage.
func (t *tmpl) checkManageConnections(st statement, users []string, resources []any) {
	if st.role == "" || len(users) == 0 || slices.ContainsFunc(users, func(p string) bool { return p != "notification" }) {
		t.problem(st.where, "grants execute-api:ManageConnections, which only the notification function's role may have (used by %q)", users)
	}
	for _, r := range resources {
		s, _, _ := subOf(r)
		m := connectionsArn.FindStringSubmatch(s)
		if m == nil || t.typeOf(m[1]) != typeAPI || !t.isStageOf(m[2], m[1]) {
			t.problem(st.where, "execute-api:ManageConnections on %v; want "+
				"arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${Api}/${Stage}/POST/@connections/* of this template's API", r)
		}
	}
}

// checkTrust checks a role's trust policy: only Lambda may assume it.
func (t *tmpl) checkTrust(role string, doc any) {
	d, _ := doc.(map[string]any)
	sts := stringsOf(d["Statement"])
	if len(sts) == 0 {
		t.problem(role, "has no AssumeRolePolicyDocument statement")
	}
	for _, s := range sts {
		m, _ := s.(map[string]any)
		principal, _ := m["Principal"].(map[string]any)
		if len(principal) != 1 || !reflect.DeepEqual(stringsOf(principal["Service"]), []any{"lambda.amazonaws.com"}) ||
			!reflect.DeepEqual(stringsOf(m["Action"]), []any{"sts:AssumeRole"}) {
			t.problem(role, "trust policy statement %v; want only lambda.amazonaws.com to sts:AssumeRole", m)
		}
	}
}

// ---- Outputs -----------------------------------------------------------------

// checkOutputs checks that the stack tells the browser where to connect and
// the API server which function to invoke.
func (t *tmpl) checkOutputs() {
	outputs, _ := t.doc["Outputs"].(map[string]any)
	var wss, notification bool
	for _, o := range outputs {
		m, _ := o.(map[string]any)
		if s, _, ok := subOf(m["Value"]); ok && strings.HasPrefix(s, "wss://") {
			for _, name := range subNames(s) {
				res, _, _ := strings.Cut(name, ".")
				wss = wss || t.typeOf(res) == typeAPI
			}
		}
		if fn, ok := t.functionOf(m["Value"]); ok && t.program(fn) == "notification" {
			notification = true
		}
	}
	if !wss {
		t.problem("Outputs", "no output gives the WebSocket URL (a Fn::Sub wss://… of the API)")
	}
	if !notification {
		t.problem("Outputs", "no output gives the notification function's ARN, which the API server invokes")
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
