package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
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
	}
	return false
}

// The Dockerfile and the systemd unit name only variables Herald reads,
// so renaming a setting without them fails here.
func TestDeployFilesUseKnownSettings(t *testing.T) {
	re := regexp.MustCompile(`HERALD_[A-Z_]+`)
	for _, f := range []string{"../../Dockerfile", "../../deploy/herald.service"} {
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
