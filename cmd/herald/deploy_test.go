package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// knownVariable reports whether name is a variable Herald reads.
func knownVariable(name string) bool {
	for _, s := range settings() {
		if s.env() == name {
			return true
		}
	}
	switch name {
	case "HERALD_CONFIG", "HERALD_API_KEYS", "HERALD_URL", "HERALD_HEALTH_URL":
		return true
	case "HERALD_REQUIRE_SERVICES", "HERALD_REQUIRE_BROWSER", "HERALD_CROSS_BUILD":
		return true // the test suite's, in the docs' commands
	}
	return strings.HasPrefix(name, "HERALD_TEST_")
}

// deployFiles are the files that tell an operator which variables to set.
var deployFiles = []string{
	"../../Dockerfile",
	"../../deploy/herald.service",
	"../../deploy/nginx/herald.conf",
	"../../deploy/kubernetes/herald.yaml",
	"../../deploy/compose/compose.yaml",
	"../../deploy/compose/.env.example",
	"../../docs/deploy.md",
}

// The Dockerfile, the systemd unit, the cluster manifests and the
// deployment guide name only variables Herald reads, so renaming a setting
// without them fails here.
func TestDeployFilesUseKnownSettings(t *testing.T) {
	re := regexp.MustCompile(`HERALD_[A-Z_]+`)
	for _, f := range deployFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range re.FindAllString(string(b), -1) {
			if !knownVariable(v) {
				t.Errorf("%s uses %s, which Herald does not read", f, v)
			}
		}
	}
	unit, _ := os.ReadFile("../../deploy/herald.service")
	m := regexp.MustCompile(`(?m)^TimeoutStopSec=(\d+)`).FindSubmatch(unit)
	if m == nil {
		t.Fatal("the unit has no TimeoutStopSec")
	}
	var drain time.Duration
	for _, s := range settings() {
		if s.name == "drain_timeout" {
			drain, _ = time.ParseDuration(s.def)
		}
	}
	if stop, _ := time.ParseDuration(string(m[1]) + "s"); stop < drain+time.Second {
		t.Errorf("TimeoutStopSec=%v is shorter than the drain (%v + 1s): systemd would SIGKILL mid-drain", stop, drain)
	}
	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		// verify wants the ExecStart binary to exist.
		dir := t.TempDir()
		u := strings.ReplaceAll(string(unit), "/usr/local/bin/herald", "/bin/true")
		os.WriteFile(filepath.Join(dir, "herald.service"), []byte(u), 0o644)
		if out, err := exec.Command(analyze, "verify", filepath.Join(dir, "herald.service")).CombinedOutput(); err != nil {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	}
}

// The container image builds, where a Docker engine runs. This machine
// kind has only the client, so the test usually skips, saying so.
func TestDockerImageBuilds(t *testing.T) {
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("docker is not installed: the image is not built here")
	}
	if out, err := exec.Command(docker, "info").CombinedOutput(); err != nil {
		t.Skipf("no Docker engine answers (docker info: %v): the image is not built here\n%s", err, firstLine(out))
	}
	tag := "herald-test:" + time.Now().Format("20060102150405")
	out, err := exec.Command(docker, "build", "-t", tag, "../..").CombinedOutput()
	if err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	exec.Command(docker, "rmi", tag).Run()
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}

// settingDefault is the default of the setting named name (its config-file
// key), as a duration.
func settingDefault(t *testing.T, name string) time.Duration {
	t.Helper()
	for _, s := range settings() {
		if s.name == name {
			d, err := time.ParseDuration(s.def)
			if err != nil {
				t.Fatalf("setting %s: default %q is not a duration", name, s.def)
			}
			return d
		}
	}
	t.Fatalf("no setting %s", name)
	return 0
}

// imagePort is the port the image's Herald listens on (HERALD_ADDR in the
// Dockerfile): probes, the Service and nginx's upstream must all use it.
func imagePort(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`HERALD_ADDR=:(\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("the Dockerfile sets no HERALD_ADDR=:port")
	}
	p, _ := strconv.Atoi(string(m[1]))
	return p
}

// The Kubernetes objects the manifest is checked for, as much of each as
// the checks read. Unknown fields are ignored here; kubectl validates the
// rest against the cluster's schema.
type (
	k8sHeader struct {
		Kind     string `yaml:"kind"`
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
	}
	k8sSelector struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	}
	k8sProbe struct {
		HTTPGet *struct {
			Path string `yaml:"path"`
			Port any    `yaml:"port"`
		} `yaml:"httpGet"`
	}
	k8sContainer struct {
		Name  string `yaml:"name"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		Env []struct {
			Name      string `yaml:"name"`
			Value     string `yaml:"value"`
			ValueFrom *struct {
				FieldRef *struct {
					FieldPath string `yaml:"fieldPath"`
				} `yaml:"fieldRef"`
			} `yaml:"valueFrom"`
		} `yaml:"env"`
		EnvFrom []struct {
			ConfigMapRef *struct {
				Name string `yaml:"name"`
			} `yaml:"configMapRef"`
			SecretRef *struct {
				Name string `yaml:"name"`
			} `yaml:"secretRef"`
		} `yaml:"envFrom"`
		ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
		LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
		Lifecycle      struct {
			PreStop *struct {
				Sleep *struct {
					Seconds int `yaml:"seconds"`
				} `yaml:"sleep"`
			} `yaml:"preStop"`
		} `yaml:"lifecycle"`
		SecurityContext struct {
			ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
			AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		} `yaml:"securityContext"`
	}
	k8sDeployment struct {
		Spec struct {
			Replicas int         `yaml:"replicas"`
			Selector k8sSelector `yaml:"selector"`
			Template struct {
				Metadata struct {
					Labels map[string]string `yaml:"labels"`
				} `yaml:"metadata"`
				Spec struct {
					TerminationGracePeriodSeconds *int `yaml:"terminationGracePeriodSeconds"`
					SecurityContext               struct {
						RunAsNonRoot bool `yaml:"runAsNonRoot"`
					} `yaml:"securityContext"`
					Containers []k8sContainer `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	k8sService struct {
		Spec struct {
			Selector map[string]string `yaml:"selector"`
			Ports    []struct {
				TargetPort any `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	k8sPDB struct {
		Spec struct {
			Selector       k8sSelector `yaml:"selector"`
			MinAvailable   any         `yaml:"minAvailable"`
			MaxUnavailable any         `yaml:"maxUnavailable"`
		} `yaml:"spec"`
	}
	k8sConfigMap struct {
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
		Data map[string]string `yaml:"data"`
	}
)

// k8sObjects parses a multi-document manifest into its documents' nodes,
// by kind. A kind that appears twice is an error: the checks below assume
// one of each.
func k8sObjects(t *testing.T, file string) map[string]ast.Node {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	f, err := parser.ParseBytes(b, 0)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	objs := map[string]ast.Node{}
	for _, doc := range f.Docs {
		if doc.Body == nil {
			continue
		}
		var h k8sHeader
		if err := yaml.NodeToValue(doc.Body, &h); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if h.Kind == "" {
			t.Fatalf("%s: a document without a kind", file)
		}
		if objs[h.Kind] != nil {
			t.Fatalf("%s: two objects of kind %s", file, h.Kind)
		}
		objs[h.Kind] = doc.Body
	}
	return objs
}

// k8sDecode decodes the object of kind into v, failing if there is none.
func k8sDecode(t *testing.T, objs map[string]ast.Node, kind string, v any) {
	t.Helper()
	n := objs[kind]
	if n == nil {
		t.Fatalf("the manifest has no %s", kind)
	}
	if err := yaml.NodeToValue(n, v); err != nil {
		t.Fatalf("%s: %v", kind, err)
	}
}

// selects reports whether a selector's labels all hold on labels (and it
// has some: an empty selector selects everything).
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// The Kubernetes manifest keeps the promises docs/deploy.md makes: probes
// on the routes that mean readiness and liveness, a preStop wait, a grace
// period that outlasts the wait and the whole drain, a disruption budget
// over the Deployment's pods, a Service onto them, a node id per pod, and a
// non-root container on a read-only root.
func TestKubernetesManifest(t *testing.T) {
	objs := k8sObjects(t, "../../deploy/kubernetes/herald.yaml")
	var dep k8sDeployment
	k8sDecode(t, objs, "Deployment", &dep)
	pod := dep.Spec.Template.Spec
	labels := dep.Spec.Template.Metadata.Labels
	if !selects(dep.Spec.Selector.MatchLabels, labels) {
		t.Errorf("the Deployment's selector %v does not select its own pods %v", dep.Spec.Selector.MatchLabels, labels)
	}
	if dep.Spec.Replicas < 3 {
		t.Errorf("replicas: %d, want at least 3", dep.Spec.Replicas)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want Herald's alone", len(pod.Containers))
	}
	c := pod.Containers[0]
	port := imagePort(t)
	portNames := map[string]bool{}
	for _, p := range c.Ports {
		if p.ContainerPort != port {
			t.Errorf("containerPort %d: the image listens on %d", p.ContainerPort, port)
		}
		portNames[p.Name] = true
	}
	// samePort: a probe's or the Service's port names Herald's port, by
	// number or by name.
	samePort := func(p any) bool {
		switch p := p.(type) {
		case string:
			return portNames[p]
		case uint64:
			return int(p) == port
		case int64:
			return int(p) == port
		}
		return false
	}

	for _, pr := range []struct {
		name  string
		probe *k8sProbe
		path  string
	}{
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
		{"livenessProbe", c.LivenessProbe, "/healthz"},
	} {
		switch {
		case pr.probe == nil || pr.probe.HTTPGet == nil:
			t.Errorf("no %s.httpGet", pr.name)
		case pr.probe.HTTPGet.Path != pr.path:
			t.Errorf("%s path %s, want %s", pr.name, pr.probe.HTTPGet.Path, pr.path)
		case !samePort(pr.probe.HTTPGet.Port):
			t.Errorf("%s port %v is not Herald's (%d)", pr.name, pr.probe.HTTPGet.Port, port)
		}
	}

	// The drain timeout the pods run with: the container's env, else the
	// ConfigMap it reads, else the default.
	var cm k8sConfigMap
	k8sDecode(t, objs, "ConfigMap", &cm)
	cmName := cm.Metadata.Name
	drain := settingDefault(t, "drain_timeout")
	var fromConfigMap, fromSecret bool
	for _, e := range c.EnvFrom {
		if e.ConfigMapRef != nil && e.ConfigMapRef.Name == cmName {
			fromConfigMap = true
			if v, ok := cm.Data["HERALD_DRAIN_TIMEOUT"]; ok {
				d, err := time.ParseDuration(v)
				if err != nil {
					t.Fatalf("ConfigMap HERALD_DRAIN_TIMEOUT %q: %v", v, err)
				}
				drain = d
			}
		}
		fromSecret = fromSecret || e.SecretRef != nil
	}
	if !fromConfigMap {
		t.Errorf("the container does not read the ConfigMap %q (envFrom)", cmName)
	}
	if !fromSecret {
		t.Error("the container reads no Secret (envFrom): where do its token secret and API key come from?")
	}
	nodeID := false
	for _, e := range c.Env {
		switch e.Name {
		case "HERALD_DRAIN_TIMEOUT":
			d, err := time.ParseDuration(e.Value)
			if err != nil {
				t.Fatalf("env HERALD_DRAIN_TIMEOUT %q: %v", e.Value, err)
			}
			drain = d
		case "HERALD_NODE_ID":
			nodeID = e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
		}
	}
	if !nodeID {
		t.Error("HERALD_NODE_ID does not come from the pod's name (valueFrom.fieldRef metadata.name)")
	}
	if _, ok := cm.Data["HERALD_STORE"]; !ok {
		t.Error("the ConfigMap sets no HERALD_STORE: the nodes would each use their own SQLite file")
	}
	if _, ok := cm.Data["HERALD_BROKER"]; !ok {
		t.Error("the ConfigMap sets no HERALD_BROKER: each node would deliver only to its own clients")
	}

	// The kubelet runs preStop, then sends SIGTERM, then SIGKILLs when the
	// grace period (counted from the start of preStop) runs out.
	var wait time.Duration
	switch ps := c.Lifecycle.PreStop; {
	case ps == nil:
		t.Error("no lifecycle.preStop: the drain would start before the endpoints are updated")
	case ps.Sleep == nil:
		t.Error("preStop is not the native sleep action (the distroless image has no shell to run one)")
	default:
		wait = time.Duration(ps.Sleep.Seconds) * time.Second
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil {
		t.Error("no terminationGracePeriodSeconds")
	} else if grace := time.Duration(*g) * time.Second; grace <= wait+drain+time.Second {
		t.Errorf("terminationGracePeriodSeconds %v is not above preStop %v + drain %v + 1s: the kubelet would SIGKILL mid-drain", grace, wait, drain)
	}

	if !pod.SecurityContext.RunAsNonRoot {
		t.Error("the pod does not say runAsNonRoot")
	}
	if !c.SecurityContext.ReadOnlyRootFilesystem {
		t.Error("the container's root file system is not read-only")
	}
	if p := c.SecurityContext.AllowPrivilegeEscalation; p == nil || *p {
		t.Error("the container does not forbid privilege escalation")
	}

	var pdb k8sPDB
	k8sDecode(t, objs, "PodDisruptionBudget", &pdb)
	if !selects(pdb.Spec.Selector.MatchLabels, labels) {
		t.Errorf("the PodDisruptionBudget's selector %v does not select the Deployment's pods %v", pdb.Spec.Selector.MatchLabels, labels)
	}
	if pdb.Spec.MinAvailable == nil && pdb.Spec.MaxUnavailable == nil {
		t.Error("the PodDisruptionBudget sets neither minAvailable nor maxUnavailable")
	}

	var svc k8sService
	k8sDecode(t, objs, "Service", &svc)
	if !selects(svc.Spec.Selector, labels) {
		t.Errorf("the Service's selector %v does not select the Deployment's pods %v", svc.Spec.Selector, labels)
	}
	for _, p := range svc.Spec.Ports {
		if !samePort(p.TargetPort) {
			t.Errorf("the Service's targetPort %v is not Herald's port", p.TargetPort)
		}
	}
}

// The Compose services the checks read.
type composeService struct {
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Environment any `yaml:"environment"` // a map, or a list of NAME=value
	DependsOn   any `yaml:"depends_on"`  // a list, or a map of conditions
	Healthcheck *struct {
		Test any `yaml:"test"`
	} `yaml:"healthcheck"`
	StopGracePeriod string   `yaml:"stop_grace_period"`
	Volumes         []string `yaml:"volumes"`
	Networks        any      `yaml:"networks"` // a list, or a map with addresses
}

// env is the service's environment as a map, whichever form it is written in.
func (s composeService) env() map[string]string {
	m := map[string]string{}
	switch e := s.Environment.(type) {
	case map[string]any:
		for k, v := range e {
			m[k] = fmt.Sprint(v)
		}
	case []any:
		for _, kv := range e {
			k, v, _ := strings.Cut(fmt.Sprint(kv), "=")
			m[k] = v
		}
	}
	return m
}

// conditions maps each service this one depends on to the condition it
// waits for ("" for the list form, which waits only for the start).
func (s composeService) conditions() map[string]string {
	m := map[string]string{}
	switch d := s.DependsOn.(type) {
	case []any:
		for _, n := range d {
			m[fmt.Sprint(n)] = ""
		}
	case map[string]any:
		for n, c := range d {
			cond, _ := c.(map[string]any)["condition"].(string)
			m[n] = cond
		}
	}
	return m
}

// addresses lists the fixed IPv4 addresses the service asks for.
func (s composeService) addresses() []string {
	var a []string
	if nets, ok := s.Networks.(map[string]any); ok {
		for _, n := range nets {
			if n, ok := n.(map[string]any); ok {
				if ip, ok := n["ipv4_address"].(string); ok {
					a = append(a, ip)
				}
			}
		}
	}
	return a
}

// nginxUpstream returns the servers (host:port) of nginx's upstream named
// name, and the config without its comments.
func nginxUpstream(t *testing.T, file, name string) ([]string, string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	conf := regexp.MustCompile(`(?m)#.*$`).ReplaceAllString(string(b), "")
	m := regexp.MustCompile(`upstream\s+` + name + `\s*\{([^}]*)\}`).FindStringSubmatch(conf)
	if m == nil {
		t.Fatalf("%s has no upstream %s", file, name)
	}
	var servers []string
	for _, s := range regexp.MustCompile(`(?m)^\s*server\s+([^\s;]+)`).FindAllStringSubmatch(m[1], -1) {
		servers = append(servers, s[1])
	}
	return servers, conf
}

// The Compose file runs three Herald nodes that share one store and one
// broker under distinct node ids, starts each part only once what it needs
// is healthy, and puts nginx in front with exactly those nodes as its
// upstream.
func TestComposeFile(t *testing.T) {
	const file = "../../deploy/compose/compose.yaml"
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var cf struct {
		Services map[string]composeService `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &cf); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	drain := settingDefault(t, "drain_timeout")

	// The Herald nodes are the services that set a node id.
	var nodes []string
	ids := map[string]string{}
	var store, broker string
	for name, s := range cf.Services {
		env := s.env()
		id, ok := env["HERALD_NODE_ID"]
		if !ok {
			continue
		}
		nodes = append(nodes, name)
		if other, dup := ids[id]; dup {
			t.Errorf("%s and %s share HERALD_NODE_ID %q", name, other, id)
		}
		ids[id] = name
		if env["HERALD_STORE"] == "" || env["HERALD_BROKER"] == "" {
			t.Errorf("%s: HERALD_STORE %q and HERALD_BROKER %q must both be set", name, env["HERALD_STORE"], env["HERALD_BROKER"])
		}
		if store == "" {
			store, broker = env["HERALD_STORE"], env["HERALD_BROKER"]
		} else if env["HERALD_STORE"] != store || env["HERALD_BROKER"] != broker {
			t.Errorf("%s: store %q and broker %q, other nodes %q and %q: a cluster shares both", name, env["HERALD_STORE"], env["HERALD_BROKER"], store, broker)
		}
		if s.Build == nil || filepath.Clean(filepath.Join("../../deploy/compose", s.Build.Context)) != filepath.Clean("../..") {
			t.Errorf("%s is not built from the repository's root (the Dockerfile's context)", name)
		}
		if s.Healthcheck == nil {
			t.Errorf("%s has no healthcheck: nginx could not wait for it", name)
		}
		if d := env["HERALD_DRAIN_TIMEOUT"]; d != "" {
			if drain, err = time.ParseDuration(d); err != nil {
				t.Fatalf("%s: HERALD_DRAIN_TIMEOUT %q: %v", name, d, err)
			}
		}
		if g, err := time.ParseDuration(s.StopGracePeriod); err != nil || g < drain+time.Second {
			t.Errorf("%s: stop_grace_period %q is not at least the drain (%v) + 1s: Compose would SIGKILL mid-drain", name, s.StopGracePeriod, drain)
		}
	}
	slices.Sort(nodes)
	if len(nodes) != 3 {
		t.Fatalf("Herald nodes (services with HERALD_NODE_ID): %v, want three", nodes)
	}

	// Everything waits for what it depends on to be healthy, not merely
	// started, and depends only on services that have a health check.
	for name, s := range cf.Services {
		for dep, cond := range s.conditions() {
			d, ok := cf.Services[dep]
			switch {
			case !ok:
				t.Errorf("%s depends on %s, which is no service", name, dep)
			case cond != "service_healthy":
				t.Errorf("%s depends on %s with condition %q, want service_healthy", name, dep, cond)
			case d.Healthcheck == nil:
				t.Errorf("%s waits for %s to be healthy, which has no healthcheck", name, dep)
			}
		}
	}

	// nginx: mounts the repository's config, whose upstream is exactly the
	// nodes, on the port the image listens on, waits for all of them, and
	// is the proxy the nodes trust for X-Forwarded-For.
	ngx, ok := cf.Services["nginx"]
	if !ok {
		t.Fatal("no nginx service")
	}
	mounted := false
	for _, v := range ngx.Volumes {
		src, _, _ := strings.Cut(v, ":")
		mounted = mounted || filepath.Clean(filepath.Join("../../deploy/compose", src)) == filepath.Clean("../../deploy/nginx/herald.conf")
	}
	if !mounted {
		t.Errorf("nginx does not mount deploy/nginx/herald.conf (volumes %v)", ngx.Volumes)
	}
	servers, _ := nginxUpstream(t, "../../deploy/nginx/herald.conf", "herald")
	port := strconv.Itoa(imagePort(t))
	var hosts []string
	for _, s := range servers {
		host, p, _ := strings.Cut(s, ":")
		if p != port {
			t.Errorf("upstream server %s: Herald listens on %s in the image", s, port)
		}
		hosts = append(hosts, host)
	}
	slices.Sort(hosts)
	if !slices.Equal(hosts, nodes) {
		t.Errorf("nginx's upstream names %v, the Compose nodes are %v", hosts, nodes)
	}
	for _, n := range nodes {
		if _, ok := ngx.conditions()[n]; !ok {
			t.Errorf("nginx does not wait for %s", n)
		}
		trusted := cf.Services[n].env()["HERALD_TRUSTED_PROXIES"]
		for _, a := range ngx.addresses() {
			if !slices.Contains(strings.Split(trusted, ","), a) {
				t.Errorf("%s: HERALD_TRUSTED_PROXIES %q does not list nginx's address %s", n, trusted, a)
			}
		}
	}
}

// The nginx config proxies WebSocket and SSE the way docs/deploy.md says:
// HTTP/1.1 with the Upgrade handshake passed on, an idle timeout above
// Herald's ping interval, no buffering on /sse, the client's address
// forwarded. Where nginx is installed, nginx -t checks the whole file.
func TestNginxConfig(t *testing.T) {
	const file = "../../deploy/nginx/herald.conf"
	servers, conf := nginxUpstream(t, file, "herald")
	if len(servers) != 3 {
		t.Errorf("upstream herald has %d servers, want 3", len(servers))
	}
	for _, want := range []struct{ re, why string }{
		{`proxy_pass\s+http://herald\s*;`, "requests go to the upstream"},
		{`proxy_http_version\s+1\.1\s*;`, "WebSocket upgrades need HTTP/1.1 to the node"},
		{`proxy_set_header\s+Upgrade\s+\$http_upgrade\s*;`, "the Upgrade header is hop-by-hop and must be passed on"},
		{`proxy_set_header\s+Connection\s+\$connection_upgrade\s*;`, "Connection: upgrade for a handshake"},
		{`map\s+\$http_upgrade\s+\$connection_upgrade`, "the map that sets $connection_upgrade"},
		{`proxy_set_header\s+X-Forwarded-For\s+\$proxy_add_x_forwarded_for\s*;`, "the connect limit needs the client's address"},
		{`proxy_set_header\s+Host\s+\$host\s*;`, "the same-origin check compares Origin with Host"},
		{`location\s+/sse\s*\{[^}]*proxy_buffering\s+off\s*;`, "SSE events must not wait in a buffer"},
		{`proxy_next_upstream\s+[^;]*http_503`, "a draining node's 503 goes to another node"},
		{`max_fails=\d+\s+fail_timeout=`, "passive health checks"},
		{`least_conn\s*;`, "the balancing docs/deploy.md explains"},
	} {
		if !regexp.MustCompile(want.re).MatchString(conf) {
			t.Errorf("%s: no %s (%s)", file, want.re, want.why)
		}
	}
	ping := settingDefault(t, "ping_interval")
	for _, d := range []string{"proxy_read_timeout", "proxy_send_timeout", "send_timeout"} {
		m := regexp.MustCompile(`(?m)^\s*` + d + `\s+(\d+)s\s*;`).FindStringSubmatch(conf)
		if m == nil {
			t.Errorf("%s: no %s in seconds", file, d)
			continue
		}
		if v, _ := strconv.Atoi(m[1]); time.Duration(v)*time.Second <= ping {
			t.Errorf("%s %ss is not above HERALD_PING_INTERVAL (%v): idle connections would be cut", d, m[1], ping)
		}
	}

	nginx, err := exec.LookPath("nginx")
	if err != nil {
		t.Skip("nginx is not installed: the config's syntax is not checked by nginx -t here")
	}
	// Node names that resolve and paths a test may write; the rest as is.
	dir := t.TempDir()
	c := conf
	for _, s := range servers {
		host, _, _ := strings.Cut(s, ":")
		c = strings.ReplaceAll(c, host+":", "127.0.0.1:")
	}
	c = strings.ReplaceAll(c, "/var/log/nginx/", dir+"/")
	c = strings.Replace(c, "worker_rlimit_nofile", "# worker_rlimit_nofile", 1) // needs root to raise
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(c), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginx, "-t", "-p", dir, "-e", filepath.Join(dir, "error.log"),
		"-c", filepath.Join(dir, "nginx.conf"), "-g", "pid "+filepath.Join(dir, "nginx.pid")+";")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("nginx -t: %v\n%s", err, out)
	}
}
