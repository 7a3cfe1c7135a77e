package awsdeploy_test

import (
	"context"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const templateFile = "template.yaml"

// The template as committed passes every check in check_test.go.
func TestTemplate(t *testing.T) {
	doc, err := readTemplate(templateFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range checkTemplate(doc) {
		t.Error(p)
	}
}

// The checker would notice a broken template: each case damages the decoded
// template in one way, and the checker must name the resource and the fault.
// The undamaged template has no problems (TestTemplate), so every problem
// found here comes from the damage.
func TestCheckerFindsDamage(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, doc map[string]any)
		want   []string // all in one reported line
	}{
		// References.
		{"Ref to nothing", func(t *testing.T, doc map[string]any) {
			set(t, doc, ref("WebSocketAPI"), "Resources", "ConnectRoute", "Properties", "ApiId")
		}, []string{"ConnectRoute:", "Ref WebSocketAPI names no"}},
		{"GetAtt of nothing", func(t *testing.T, doc map[string]any) {
			set(t, doc, map[string]any{"Fn::GetAtt": []any{"ConnectRol", "Arn"}}, "Resources", "ConnectFunction", "Properties", "Role")
		}, []string{"ConnectFunction:", "ConnectRol.Arn names no resource"}},
		{"Sub variable of nothing", func(t *testing.T, doc map[string]any) {
			set(t, doc, sub("https://${WebSocketApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${StageNam}"),
				"Resources", "NotificationFunction", "Properties", "Environment", "Variables", "APIGW_ENDPOINT")
		}, []string{"NotificationFunction:", "${StageNam}"}},
		{"Sub attribute of nothing", func(t *testing.T, doc map[string]any) {
			set(t, doc, sub("wss://${WebSocketAPI.ApiEndpoint}/${Stage}"), "Outputs", "WebSocketUrl", "Value")
		}, []string{"Outputs.WebSocketUrl:", "WebSocketAPI is no resource"}},
		{"Ref in Globals to nothing", func(t *testing.T, doc map[string]any) {
			set(t, doc, ref("Subnets"), "Globals", "Function", "VpcConfig", "SubnetIds")
		}, []string{"Globals:", "Ref Subnets"}},
		{"DependsOn nothing", func(t *testing.T, doc map[string]any) {
			set(t, doc, []any{"ConnectRoute", "DisconnectRoute", "SendRoute"}, "Resources", "Deployment", "DependsOn")
		}, []string{"Deployment:", "DependsOn SendRoute"}},

		// Routes and integrations.
		{"route selection expression", func(t *testing.T, doc map[string]any) {
			set(t, doc, "$request.body.type", "Resources", "WebSocketApi", "Properties", "RouteSelectionExpression")
		}, []string{"WebSocketApi:", "RouteSelectionExpression is $request.body.type"}},
		{"a route too many", func(t *testing.T, doc map[string]any) {
			route := clone(at(t, doc, "Resources", "ConnectRoute"))
			set(t, route, "sendmessage", "Properties", "RouteKey")
			set(t, doc, route, "Resources", "SendRoute")
		}, []string{"WebSocketApi:", `"sendmessage"`}},
		{"the $disconnect route missing", func(t *testing.T, doc map[string]any) {
			del(t, doc, "Resources", "DisconnectRoute")
			set(t, doc, []any{"ConnectRoute"}, "Resources", "Deployment", "DependsOn")
		}, []string{"WebSocketApi:", `routes are ["$connect"]`}},
		{"route targets a function, not an integration", func(t *testing.T, doc map[string]any) {
			set(t, doc, sub("integrations/${ConnectFunction}"), "Resources", "ConnectRoute", "Properties", "Target")
		}, []string{"ConnectRoute:", "Target"}},
		{"route targets another API's integration", func(t *testing.T, doc map[string]any) {
			api := clone(at(t, doc, "Resources", "WebSocketApi"))
			set(t, doc, api, "Resources", "OtherApi")
			set(t, doc, ref("OtherApi"), "Resources", "ConnectIntegration", "Properties", "ApiId")
		}, []string{"ConnectRoute:", `belongs to API "OtherApi"`}},
		{"integration names a role, not a function", func(t *testing.T, doc map[string]any) {
			set(t, doc, sub("arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${ConnectRole.Arn}/invocations"),
				"Resources", "ConnectIntegration", "Properties", "IntegrationUri")
		}, []string{"ConnectIntegration:", "IntegrationUri"}},
		{"integration not a proxy", func(t *testing.T, doc map[string]any) {
			set(t, doc, "AWS", "Resources", "DisconnectIntegration", "Properties", "IntegrationType")
		}, []string{"DisconnectIntegration:", "AWS_PROXY"}},

		// Permissions for API Gateway.
		{"permission removed", func(t *testing.T, doc map[string]any) {
			del(t, doc, "Resources", "ConnectPermission")
		}, []string{"ConnectFunction:", "no AWS::Lambda::Permission"}},
		{"permission for another function", func(t *testing.T, doc map[string]any) {
			set(t, doc, getAtt("NotificationFunction", "Arn"), "Resources", "DisconnectPermission", "Properties", "FunctionName")
		}, []string{"DisconnectFunction:", "no AWS::Lambda::Permission"}},
		{"permission without SourceArn", func(t *testing.T, doc map[string]any) {
			del(t, doc, "Resources", "ConnectPermission", "Properties", "SourceArn")
		}, []string{"ConnectPermission:", "SourceArn (nothing) is not scoped"}},
		{"permission for every API", func(t *testing.T, doc map[string]any) {
			set(t, doc, sub("arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:*/*"),
				"Resources", "DisconnectPermission", "Properties", "SourceArn")
		}, []string{"DisconnectPermission:", "not scoped"}},

		// Functions.
		{"x86 instead of arm64", func(t *testing.T, doc map[string]any) {
			set(t, doc, []any{"x86_64"}, "Resources", "DisconnectFunction", "Properties", "Architectures")
		}, []string{"DisconnectFunction:", `Architectures is ["x86_64"]`}},
		{"no build method", func(t *testing.T, doc map[string]any) {
			del(t, doc, "Resources", "ConnectFunction", "Metadata")
		}, []string{"ConnectFunction:", "BuildMethod"}},
		{"token secret written into the template", func(t *testing.T, doc map[string]any) {
			set(t, doc, "correct-horse-battery-staple", "Resources", "ConnectFunction", "Properties", "Environment", "Variables", "TOKEN_SECRET")
		}, []string{"ConnectFunction:", "TOKEN_SECRET is correct-horse"}},
		{"token secret missing", func(t *testing.T, doc map[string]any) {
			del(t, doc, "Resources", "ConnectFunction", "Properties", "Environment")
		}, []string{"ConnectFunction:", "no TOKEN_SECRET"}},
		{"endpoint of another stage", func(t *testing.T, doc map[string]any) {
			set(t, doc, sub("https://${WebSocketApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/${AWS::StackName}"),
				"Resources", "NotificationFunction", "Properties", "Environment", "Variables", "APIGW_ENDPOINT")
		}, []string{"NotificationFunction:", "APIGW_ENDPOINT"}},
		{"function outside the VPC", func(t *testing.T, doc map[string]any) {
			del(t, doc, "Globals", "Function", "VpcConfig")
		}, []string{"NotificationFunction:", "VpcConfig.SubnetIds"}},

		// IAM.
		{"action widened to the service", func(t *testing.T, doc map[string]any) {
			set(t, doc, "execute-api:*", notificationPost("Action")...)
		}, []string{"NotificationRole:", `action "execute-api:*" is a wildcard`}},
		{"action widened to everything", func(t *testing.T, doc map[string]any) {
			set(t, doc, []any{"secretsmanager:GetSecretValue", "*"}, connectSecret("Action")...)
		}, []string{"ConnectRole:", `action "*" is a wildcard`}},
		{"resource widened to everything", func(t *testing.T, doc map[string]any) {
			set(t, doc, "*", connectSecret("Resource")...)
		}, []string{"ConnectRole:", `Resource "*"`}},
		{"every secret of the account", func(t *testing.T, doc map[string]any) {
			set(t, doc, sub("arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:*"), connectSecret("Resource")...)
		}, []string{"ConnectRole:", "GetSecretValue on"}},
		{"NotAction", func(t *testing.T, doc map[string]any) {
			stmt := at(t, doc, connectSecret()...).(map[string]any)
			stmt["NotAction"] = stmt["Action"]
			delete(stmt, "Action")
		}, []string{"ConnectRole:", "uses NotAction"}},
		{"ManageConnections for the connect function", func(t *testing.T, doc map[string]any) {
			stmts := at(t, doc, "Resources", "NotificationRole", "Properties", "Policies")
			set(t, doc, []any{clone(stmts.([]any)[1])}, "Resources", "ConnectRole", "Properties", "Policies")
		}, []string{"ConnectRole:", "only the notification function's role", `["connect"]`}},
		{"ManageConnections on every stage", func(t *testing.T, doc map[string]any) {
			set(t, doc, sub("arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/*"), notificationPost("Resource")...)
		}, []string{"NotificationRole:", "ManageConnections on"}},
		{"ManageConnections for GET and DELETE too", func(t *testing.T, doc map[string]any) {
			set(t, doc, sub("arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/${StageName}/*/@connections/*"), notificationPost("Resource")...)
		}, []string{"NotificationRole:", "ManageConnections on"}},
		{"ManageConnections taken away", func(t *testing.T, doc map[string]any) {
			del(t, doc, "Resources", "NotificationRole", "Properties", "Policies", 1)
		}, []string{"NotificationFunction:", "lacks execute-api:ManageConnections"}},
		{"secret not readable", func(t *testing.T, doc map[string]any) {
			del(t, doc, "Resources", "DisconnectRole", "Properties", "Policies")
		}, []string{"DisconnectFunction:", "may not secretsmanager:GetSecretValue"}},
		{"VPC policy missing", func(t *testing.T, doc map[string]any) {
			del(t, doc, "Resources", "DisconnectRole", "Properties", "ManagedPolicyArns")
		}, []string{"DisconnectRole:", "AWSLambdaVPCAccessExecutionRole"}},
		{"administrator attached", func(t *testing.T, doc map[string]any) {
			set(t, doc, []any{sub("arn:${AWS::Partition}:iam::aws:policy/AdministratorAccess")}, "Resources", "ConnectRole", "Properties", "ManagedPolicyArns")
		}, []string{"ConnectRole:", "AdministratorAccess is not one"}},
		{"role anyone may assume", func(t *testing.T, doc map[string]any) {
			set(t, doc, map[string]any{"AWS": "*"}, "Resources", "NotificationRole", "Properties", "AssumeRolePolicyDocument", "Statement", 0, "Principal")
		}, []string{"NotificationRole:", "trust policy"}},
		{"API server may invoke every function", func(t *testing.T, doc map[string]any) {
			set(t, doc, sub("arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:*"),
				"Resources", "InvokeNotificationPolicy", "Properties", "PolicyDocument", "Statement", 0, "Resource")
		}, []string{"InvokeNotificationPolicy:", "lambda:InvokeFunction on"}},

		// Outputs.
		{"no WebSocket URL", func(t *testing.T, doc map[string]any) {
			del(t, doc, "Outputs", "WebSocketUrl")
		}, []string{"Outputs:", "WebSocket URL"}},
		{"no notification ARN", func(t *testing.T, doc map[string]any) {
			del(t, doc, "Outputs", "NotificationFunctionArn")
		}, []string{"Outputs:", "notification function's ARN"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc, err := readTemplate(templateFile)
			if err != nil {
				t.Fatal(err)
			}
			c.damage(t, doc)
			problems := checkTemplate(doc)
			for _, p := range problems {
				if containsAll(p, c.want) {
					return
				}
			}
			t.Errorf("no problem reported with all of %q; reported:\n  %s", c.want, strings.Join(problems, "\n  "))
		})
	}
}

// The decoder gives short and long forms of intrinsic functions one shape.
func TestDecodeIntrinsics(t *testing.T) {
	cases := []struct {
		yaml string
		want any
	}{
		{"v: !Ref Api", ref("Api")},
		{"v: {Ref: Api}", ref("Api")},
		{"v: !GetAtt Fn.Arn", getAtt("Fn", "Arn")},
		{"v: !GetAtt Db.Endpoint.Address", getAtt("Db", "Endpoint.Address")},
		{"v: !GetAtt [Fn, Arn]", getAtt("Fn", "Arn")},
		{"v:\n  Fn::GetAtt: [Fn, Arn]", getAtt("Fn", "Arn")},
		{`v: !Sub "a-${B}"`, sub("a-${B}")},
		{"v:\n  Fn::Sub: a-${B}", sub("a-${B}")},
		{"v: !Sub\n  - a-${B}\n  - B: !Ref C", map[string]any{"Fn::Sub": []any{"a-${B}", map[string]any{"B": ref("C")}}}},
		{"v: !Join ['/', [integrations, !Ref I]]", map[string]any{"Fn::Join": []any{"/", []any{"integrations", ref("I")}}}},
		{"v: !If [Cond, !Ref A, !Ref AWS::NoValue]", map[string]any{"Fn::If": []any{"Cond", ref("A"), ref("AWS::NoValue")}}},
		{"v: !!str 2012-10-17", "2012-10-17"},
		{"v: |\n  two\n  lines\n", "two\nlines\n"},
		{"a: &x {Ref: A}\nv: *x", ref("A")},
	}
	for _, c := range cases {
		doc, err := decodeTemplate([]byte(c.yaml))
		if err != nil {
			t.Errorf("%q: %v", c.yaml, err)
			continue
		}
		if !reflect.DeepEqual(doc["v"], c.want) {
			t.Errorf("%q decoded to %#v, want %#v", c.yaml, doc["v"], c.want)
		}
	}
	for _, bad := range []string{"v: !Reff Api", "v: !GetAtt NoAttribute", "v: 1\nv: 2", "- a list"} {
		if doc, err := decodeTemplate([]byte(bad)); err == nil {
			t.Errorf("%q decoded to %v, want an error", bad, doc)
		}
	}
}

func TestSubNames(t *testing.T) {
	got := subNames("arn:${AWS::Partition}:x:${Api}/${!Literal}/${Fn.Arn}/{{resolve:secretsmanager:${Secret}}}")
	want := []string{"AWS::Partition", "Api", "Fn.Arn", "Secret"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("subNames = %q, want %q", got, want)
	}
}

// Each function's CodeUri is a Go main package that builds the way sam
// build builds it — go build of that folder, without cgo, here all in one
// go build, so shared packages compile once. By default it builds for
// this machine, which shares the build cache with the seed's end-to-end
// test (a cold cross-build for linux/arm64 takes minutes on a 2-core
// machine); HERALD_CROSS_BUILD=1 builds for the function's architecture
// (arm64) and checks the binary is one, as sam build would make it. The folders are written
// separately (examples/seed); while one does not exist yet, its subtest
// skips, saying which.
func TestCodeURIsBuild(t *testing.T) {
	doc, err := readTemplate(templateFile)
	if err != nil {
		t.Fatal(err)
	}
	tp := index(doc)
	fns := tp.ofType(typeSAMFunction)
	if len(fns) == 0 {
		t.Fatal("the template has no functions")
	}

	dirs := map[string]string{} // function → its CodeUri folder, where it exists
	for _, fn := range fns {
		uri, _ := tp.functionProps(fn)["CodeUri"].(string)
		dir := filepath.FromSlash(uri) // relative to deploy/aws, as SAM reads it
		st, err := os.Stat(dir)
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue // its subtest skips
		case err != nil || !st.IsDir():
			t.Errorf("%s: CodeUri %s is not a folder: %v", fn, uri, err)
			continue
		}
		dirs[fn], _ = filepath.Abs(dir)
	}

	cross := os.Getenv("HERALD_CROSS_BUILD") == "1"
	bin := t.TempDir()
	var buildErr error
	var buildOut []byte
	goTool, lookErr := exec.LookPath("go")
	if len(dirs) > 0 && !testing.Short() && lookErr == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		args := []string{"build", "-o", bin + string(filepath.Separator)}
		for _, fn := range fns {
			if d, ok := dirs[fn]; ok {
				args = append(args, d)
			}
		}
		cmd := exec.CommandContext(ctx, goTool, args...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if cross {
			cmd.Env = append(cmd.Env, "GOOS=linux", "GOARCH=arm64")
		}
		buildOut, buildErr = cmd.CombinedOutput()
	}

	for _, fn := range fns {
		t.Run(fn, func(t *testing.T) {
			uri, _ := tp.functionProps(fn)["CodeUri"].(string)
			dir, ok := dirs[fn]
			if !ok {
				t.Skipf("%s: CodeUri folder %s does not exist yet (examples/seed is written separately)", fn, uri)
			}
			isMain := false
			files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
			for _, f := range files {
				b, _ := os.ReadFile(f)
				isMain = isMain || strings.HasPrefix(string(b), "package main\n") || strings.Contains(string(b), "\npackage main\n")
			}
			if !isMain {
				t.Fatalf("%s: %s holds no package main", fn, uri)
			}
			switch {
			case testing.Short():
				t.Skip("-short: the bootstrap binary is not built")
			case lookErr != nil:
				t.Skip("no go on PATH: the bootstrap binary is not built")
			case buildErr != nil:
				t.Fatalf("go build: %v\n%s", buildErr, buildOut)
			}
			if !cross {
				if _, err := os.Stat(filepath.Join(bin, filepath.Base(dir))); err != nil {
					t.Fatalf("%s: no binary built from %s: %v", fn, uri, err)
				}
				return
			}
			f, err := elf.Open(filepath.Join(bin, filepath.Base(dir)))
			if err != nil {
				t.Fatalf("%s: no linux binary built from %s: %v", fn, uri, err)
			}
			defer f.Close()
			if f.Machine != elf.EM_AARCH64 {
				t.Errorf("%s: the binary is for %v, want EM_AARCH64 (Architectures: arm64)", fn, f.Machine)
			}
		})
	}
}

// cfn-lint, where installed, validates the template against the
// CloudFormation resource schemas after the SAM transform: property names
// and types, which the checks above do not cover. Its errors fail the
// test; warnings are logged.
func TestCfnLint(t *testing.T) {
	lint, err := exec.LookPath("cfn-lint")
	if err != nil {
		t.Skip("cfn-lint is not installed: the template is not validated against the resource schemas here")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, lint, "--format", "parseable", templateFile).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit) && exit.ExitCode()&2 == 0 && exit.ExitCode() != 1:
		// Exit codes are a bit mask: 2 errors, 4 warnings, 8 informational.
		t.Logf("cfn-lint warnings:\n%s", out)
	default:
		t.Errorf("cfn-lint: %v\n%s", err, out)
	}
}

// ---- Helpers for building and damaging templates -------------------------------

func ref(name string) map[string]any { return map[string]any{"Ref": name} }

func getAtt(res, attr string) map[string]any {
	return map[string]any{"Fn::GetAtt": []any{res, attr}}
}

func sub(s string) map[string]any { return map[string]any{"Fn::Sub": s} }

// connectSecret is the path to the connect role's secret statement, or to one of its keys.
func connectSecret(key ...any) []any {
	return append([]any{"Resources", "ConnectRole", "Properties", "Policies", 0, "PolicyDocument", "Statement", 0}, key...)
}

// notificationPost is the path to the notification role's ManageConnections statement.
func notificationPost(key ...any) []any {
	return append([]any{"Resources", "NotificationRole", "Properties", "Policies", 1, "PolicyDocument", "Statement", 0}, key...)
}

// at follows a path of map keys (string) and list indexes (int).
func at(t *testing.T, v any, path ...any) any {
	t.Helper()
	for i, k := range path {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok || m[k] == nil {
				t.Fatalf("template has no %v", path[:i+1])
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("template has no %v", path[:i+1])
			}
			v = l[k]
		}
	}
	return v
}

// set puts value at the end of path; the parent must exist.
func set(t *testing.T, v any, value any, path ...any) {
	t.Helper()
	parent := at(t, v, path[:len(path)-1]...)
	switch k := path[len(path)-1].(type) {
	case string:
		parent.(map[string]any)[k] = value
	case int:
		parent.([]any)[k] = value
	}
}

// del removes the end of path, a map key or a list element.
func del(t *testing.T, v any, path ...any) {
	t.Helper()
	at(t, v, path...)
	parentPath := path[:len(path)-1]
	switch k := path[len(path)-1].(type) {
	case string:
		delete(at(t, v, parentPath...).(map[string]any), k)
	case int:
		l := at(t, v, parentPath...).([]any)
		set(t, v, append(l[:k:k], l[k+1:]...), parentPath...)
	}
}

// clone copies a decoded value deeply, so damage to the copy spares the original.
func clone(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, x := range v {
			m[k] = clone(x)
		}
		return m
	case []any:
		l := make([]any, len(v))
		for i, x := range v {
			l[i] = clone(x)
		}
		return l
	}
	return v
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
