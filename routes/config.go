package routes

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// Route keys API Gateway gives a meaning to. Any other key is a custom
// route, selected by the selection expression.
const (
	KeyConnect    = "$connect"
	KeyDisconnect = "$disconnect"
	KeyDefault    = "$default"
)

// Auth modes of a route set.
const (
	// AuthHerald keeps Herald's own token check on the WebSocket routes:
	// the connection's user comes from the token, and every event carries
	// it as requestContext.authorizer.principalId, as a Lambda authorizer
	// would put it.
	AuthHerald = "herald"
	// AuthIntegration switches Herald's token check off: the $connect
	// integration authorises (as the original connect Lambda does with
	// ?token=), and the connection has no user of its own.
	AuthIntegration = "integration"
)

// Integration kinds.
const (
	KindHTTP   = "http"   // POST the event to a URL
	KindLambda = "lambda" // invoke a function run by Herald's Lambda runtime host
)

// API Gateway's own numbers, enforced when AWSCompatible is set.
const (
	AWSMaxMessage  = 128 << 10        // one message, all frames together
	AWSMaxFrame    = 32 << 10         // one WebSocket frame
	AWSIdleTimeout = 10 * time.Minute // no message from the client
	AWSMaxDuration = 2 * time.Hour    // whatever the connection does
	// IntegrationTimeout is API Gateway's integration timeout, the default
	// of Route.Timeout.
	IntegrationTimeout = 29 * time.Second
	// DefaultFunctionTimeout is Lambda's default function timeout.
	DefaultFunctionTimeout = 3 * time.Second
	maxFunctionTimeout     = 15 * time.Minute
	maxConcurrency         = 64
)

// Config is a route set as a routes file (TOML or JSON) or HERALD_ROUTES
// gives it: API Gateway's WebSocket API in a few lines. Load and Parse
// return it checked and with defaults filled in.
type Config struct {
	// SelectionExpression picks a message's route from its body:
	// "$request.body.action" (the default) reads the "action" field of a
	// JSON message; dotted paths reach into objects.
	SelectionExpression string `toml:"selection_expression" json:"selection_expression"`
	// Auth is AuthHerald (default) or AuthIntegration.
	Auth string `toml:"auth" json:"auth"`
	// Stage is requestContext.stage, and the path the API is served at
	// besides /ws (/{stage}, as on API Gateway). Default "local".
	Stage string `toml:"stage" json:"stage"`
	// APIID is requestContext.apiId. Default "herald".
	APIID string `toml:"api_id" json:"api_id"`
	// AWSCompatible enforces API Gateway's limits (AWSMaxMessage,
	// AWSMaxFrame, AWSIdleTimeout, AWSMaxDuration) so that a local run
	// fails where AWS would.
	AWSCompatible bool `toml:"aws_compatible" json:"aws_compatible"`
	// MaxInFlight bounds the message integrations running at once, all
	// connections together; past it a client is told "Too Many Requests",
	// as API Gateway's throttling does. Default 256.
	MaxInFlight int `toml:"max_in_flight" json:"max_in_flight"`

	Routes    map[string]Route    `toml:"routes" json:"routes"`
	Functions map[string]Function `toml:"functions" json:"functions"`
}

// Route is one route's integration.
type Route struct {
	Kind     string   `toml:"kind" json:"kind"`         // KindHTTP or KindLambda
	URL      string   `toml:"url" json:"url"`           // http: where the event is POSTed
	Function string   `toml:"function" json:"function"` // lambda: a function of Config.Functions
	Command  []string `toml:"command" json:"command"`   // lambda: or a function defined here, named after the route
	// Response sends the integration's reply body back to the client (a
	// route response, in API Gateway's terms). Not for $connect and
	// $disconnect, whose replies no client sees.
	Response bool     `toml:"response" json:"response"`
	Timeout  Duration `toml:"timeout" json:"timeout"` // http: the request's bound (IntegrationTimeout)
}

// Function is a Lambda function run by Herald's runtime host.
type Function struct {
	// Command is the function's argv. A relative program path containing
	// a slash resolves against the routes file's folder, so a file and
	// its bin/ folder move together.
	Command     []string          `toml:"command" json:"command"`
	Env         map[string]string `toml:"env" json:"env"`
	Dir         string            `toml:"dir" json:"dir"`                 // working directory; default the routes file's folder
	Timeout     Duration          `toml:"timeout" json:"timeout"`         // per invocation (DefaultFunctionTimeout)
	Concurrency int               `toml:"concurrency" json:"concurrency"` // processes (1)
	MemoryMB    int               `toml:"memory_mb" json:"memory_mb"`     // told to the function only (128)
}

// Duration is a time.Duration written as "3s" or "1m30s".
type Duration time.Duration

// UnmarshalText reads a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("want a duration such as \"3s\": %w", err)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes d as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Load reads and checks a routes file: TOML, or JSON when its name ends
// in .json.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("routes: %w", err)
	}
	format := "toml"
	if strings.EqualFold(filepath.Ext(path), ".json") {
		format = "json"
	}
	return Parse(b, format, path, filepath.Dir(abs))
}

// Parse decodes and checks a route set. format is "toml" or "json"; name
// names the source in errors (a file name, or HERALD_ROUTES); dir is the
// folder relative commands resolve against. Unknown keys are errors: a
// misspelt setting must not be silently ignored.
func Parse(b []byte, format, name, dir string) (*Config, error) {
	var c Config
	switch format {
	case "toml":
		d := toml.NewDecoder(bytes.NewReader(b))
		d.DisallowUnknownFields()
		if err := d.Decode(&c); err != nil {
			var de *toml.DecodeError
			if errors.As(err, &de) {
				row, _ := de.Position()
				return nil, fmt.Errorf("%s:%d: %s", name, row, de.String())
			}
			var sm *toml.StrictMissingError
			if errors.As(err, &sm) {
				return nil, fmt.Errorf("%s: unknown key: %s", name, strings.TrimSpace(sm.String()))
			}
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	case "json":
		d := json.NewDecoder(bytes.NewReader(b))
		d.DisallowUnknownFields()
		if err := d.Decode(&c); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	default:
		return nil, fmt.Errorf("routes: unknown format %q", format)
	}
	if err := c.check(name, dir); err != nil {
		return nil, err
	}
	return &c, nil
}

var (
	stageRE    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)
	functionRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// reservedStages are Herald's own first path segments: a stage named so
// would hide them.
var reservedStages = []string{"ws", "sse", "v1", "healthz", "readyz", "metrics", "dashboard", "debug", "2015-03-31", "2018-06-01"}

func (c *Config) check(name, dir string) error {
	bad := func(format string, a ...any) error { return fmt.Errorf("%s: "+format, append([]any{name}, a...)...) }
	if c.SelectionExpression == "" {
		c.SelectionExpression = "$request.body.action"
	}
	if _, err := parseSelection(c.SelectionExpression); err != nil {
		return bad("selection_expression: %v", err)
	}
	switch c.Auth {
	case "":
		c.Auth = AuthHerald
	case AuthHerald, AuthIntegration:
	default:
		return bad("auth: %q is not %q or %q", c.Auth, AuthHerald, AuthIntegration)
	}
	if c.Stage == "" {
		c.Stage = "local"
	}
	if !stageRE.MatchString(c.Stage) {
		return bad("stage: %q: letters, digits, - and _ only, at most 128", c.Stage)
	}
	for _, r := range reservedStages {
		if strings.EqualFold(c.Stage, r) {
			return bad("stage: %q is one of Herald's own paths; pick another name", c.Stage)
		}
	}
	if c.APIID == "" {
		c.APIID = "herald"
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 256
	}
	if c.MaxInFlight < 0 {
		return bad("max_in_flight: must be positive")
	}
	for fn, f := range c.Functions {
		if err := f.check(fn, dir); err != nil {
			return bad("functions.%s: %v", fn, err)
		}
		c.Functions[fn] = f
	}
	for key, r := range c.Routes {
		where := fmt.Sprintf("routes.%q", key)
		if key == "" || strings.HasPrefix(key, "$") && key != KeyConnect && key != KeyDisconnect && key != KeyDefault {
			return bad("%s: route keys starting with $ are %s, %s and %s", where, KeyConnect, KeyDisconnect, KeyDefault)
		}
		if r.Response && (key == KeyConnect || key == KeyDisconnect) {
			return bad("%s: response: no client sees the reply of %s", where, key)
		}
		if r.Timeout < 0 {
			return bad("%s: timeout must be positive", where)
		}
		if r.Timeout == 0 {
			r.Timeout = Duration(IntegrationTimeout)
		}
		switch r.Kind {
		case KindHTTP:
			if r.Function != "" || len(r.Command) > 0 {
				return bad("%s: an http route has a url, not a function or command", where)
			}
			u, err := url.Parse(r.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return bad("%s: url: want an http:// or https:// URL, got %q", where, r.URL)
			}
		case KindLambda:
			if r.URL != "" {
				return bad("%s: a lambda route has a function or a command, not a url", where)
			}
			switch {
			case r.Function != "" && len(r.Command) > 0:
				return bad("%s: give function or command, not both", where)
			case r.Function != "":
				if _, ok := c.Functions[r.Function]; !ok {
					return bad("%s: function %q is not defined in [functions]", where, r.Function)
				}
			case len(r.Command) > 0:
				// An inline function is named after its route.
				fn := strings.TrimPrefix(key, "$")
				if _, ok := c.Functions[fn]; ok {
					return bad("%s: its inline command would be function %q, which [functions] defines already; use function = %q", where, fn, fn)
				}
				if !functionRE.MatchString(fn) {
					return bad("%s: an inline command needs a route key usable as a function name; define the function in [functions]", where)
				}
				f := Function{Command: r.Command}
				if err := f.check(fn, dir); err != nil {
					return bad("%s: %v", where, err)
				}
				if c.Functions == nil {
					c.Functions = map[string]Function{}
				}
				c.Functions[fn] = f
				r.Function, r.Command = fn, nil
			default:
				return bad("%s: a lambda route needs function or command", where)
			}
		case "":
			return bad("%s: kind is required (%q or %q)", where, KindHTTP, KindLambda)
		default:
			return bad("%s: kind %q is not %q or %q", where, r.Kind, KindHTTP, KindLambda)
		}
		c.Routes[key] = r
	}
	if c.Auth == AuthIntegration {
		if _, ok := c.Routes[KeyConnect]; !ok {
			return bad("auth = %q needs a %s route to authorise connections", AuthIntegration, KeyConnect)
		}
	}
	return nil
}

func (f *Function) check(name, dir string) error {
	if !functionRE.MatchString(name) {
		return fmt.Errorf("function names are letters, digits, - and _, at most 64")
	}
	if len(f.Command) == 0 || f.Command[0] == "" {
		return fmt.Errorf("command is required")
	}
	if prog := f.Command[0]; !filepath.IsAbs(prog) && strings.ContainsRune(prog, '/') {
		f.Command = append([]string{filepath.Join(dir, prog)}, f.Command[1:]...)
	}
	if f.Dir == "" {
		f.Dir = dir
	} else if !filepath.IsAbs(f.Dir) {
		f.Dir = filepath.Join(dir, f.Dir)
	}
	switch t := time.Duration(f.Timeout); {
	case t == 0:
		f.Timeout = Duration(DefaultFunctionTimeout)
	case t < 0 || t > maxFunctionTimeout:
		return fmt.Errorf("timeout must be between 1ms and %s (Lambda's maximum)", maxFunctionTimeout)
	}
	switch {
	case f.Concurrency == 0:
		f.Concurrency = 1
	case f.Concurrency < 0 || f.Concurrency > maxConcurrency:
		return fmt.Errorf("concurrency must be between 1 and %d", maxConcurrency)
	}
	switch {
	case f.MemoryMB == 0:
		f.MemoryMB = 128
	case f.MemoryMB < 128 || f.MemoryMB > 10240:
		return fmt.Errorf("memory_mb must be between 128 and 10240, as on Lambda")
	}
	for k := range f.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("env: %q is not a variable name", k)
		}
	}
	return nil
}

// FunctionNames lists the functions of c, sorted.
func (c *Config) FunctionNames() []string {
	names := make([]string, 0, len(c.Functions))
	for n := range c.Functions {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
