// Package deploy holds the container and Kubernetes files; its tests check
// them: the manifests' structure always, the compose demo on a real Docker
// engine when there is one.
package deploy

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// k8sDocs parses every YAML document of the files in deploy/kubernetes.
func k8sDocs(t *testing.T) []map[string]any {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes (%v)", err)
	}
	var docs []map[string]any
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var doc map[string]any
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if doc["apiVersion"] == nil || doc["kind"] == nil || get(doc, "metadata", "name") == nil {
				t.Errorf("%s: a document without apiVersion, kind or metadata.name", f)
			}
			docs = append(docs, doc)
		}
	}
	return docs
}

// get walks maps by key; nil when a step is missing.
func get(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func strs(v any) []string {
	list, _ := v.([]any)
	var out []string
	for _, e := range list {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}

// TestKubernetesPod checks what makes the sidecar work: one PID namespace
// for the pod, a uranus container told every app container's executable,
// exactly the capability it needs, and an OTLP endpoint that names the
// Jaeger Service of the same directory.
func TestKubernetesPod(t *testing.T) {
	docs := k8sDocs(t)
	var pod map[string]any
	services := map[string][]int{}
	for _, d := range docs {
		switch d["kind"] {
		case "Pod":
			pod = d
		case "Service":
			for _, p := range get(d, "spec", "ports").([]any) {
				services[get(d, "metadata", "name").(string)] = append(services[get(d, "metadata", "name").(string)], get(p, "port").(int))
			}
		}
	}
	if pod == nil {
		t.Fatal("no Pod in deploy/kubernetes")
	}
	if get(pod, "apiVersion") != "v1" || get(pod, "spec", "shareProcessNamespace") != true {
		t.Errorf("pod: apiVersion %v, shareProcessNamespace %v; want v1 and true", get(pod, "apiVersion"), get(pod, "spec", "shareProcessNamespace"))
	}
	var sidecar any
	var appExes []string
	for _, c := range get(pod, "spec", "containers").([]any) {
		if get(c, "name") == "uranus" {
			sidecar = c
			continue
		}
		cmd := strs(get(c, "command"))
		if len(cmd) == 0 {
			t.Errorf("app container %v has no command", get(c, "name"))
			continue
		}
		appExes = append(appExes, path.Base(cmd[0]))
		if caps := strs(get(c, "securityContext", "capabilities", "drop")); !slices.Equal(caps, []string{"ALL"}) {
			t.Errorf("app container %v drops %v, want ALL (else uranus needs SYS_PTRACE)", get(c, "name"), caps)
		}
	}
	if sidecar == nil {
		t.Fatal("no container named uranus in the pod")
	}
	if img, _ := get(sidecar, "image").(string); !strings.HasPrefix(img, "uranus:") {
		t.Errorf("uranus image %q", img)
	}
	args := strs(get(sidecar, "args"))
	for _, exe := range appExes {
		if !slices.Contains(args, exe) {
			t.Errorf("uranus args %v do not name app executable %s", args, exe)
		}
	}
	sc := get(sidecar, "securityContext")
	if add := strs(get(sc, "capabilities", "add")); !slices.Equal(add, []string{"SYS_ADMIN"}) {
		t.Errorf("uranus adds capabilities %v, want exactly SYS_ADMIN", add)
	}
	if drop := strs(get(sc, "capabilities", "drop")); !slices.Equal(drop, []string{"ALL"}) {
		t.Errorf("uranus drops %v, want ALL", drop)
	}
	if get(sc, "privileged") == true || get(sc, "allowPrivilegeEscalation") == false {
		// allowPrivilegeEscalation: false with SYS_ADMIN is rejected by the API server.
		t.Errorf("uranus securityContext: privileged %v, allowPrivilegeEscalation %v", get(sc, "privileged"), get(sc, "allowPrivilegeEscalation"))
	}
	env := map[string]string{}
	for _, e := range get(sidecar, "env").([]any) {
		env[get(e, "name").(string)], _ = get(e, "value").(string)
	}
	endpoint := env["OTEL_EXPORTER_OTLP_ENDPOINT"]
	if !slices.Contains(services["jaeger"], 4318) || endpoint != "http://jaeger:4318" {
		t.Errorf("OTLP endpoint %q; Service jaeger ports %v", endpoint, services["jaeger"])
	}
}

// TestComposeFile checks the compose demo's structure without an engine:
// each sidecar shares the PID namespace of the service it names, with only
// CAP_SYS_ADMIN, and nothing is published beyond 127.0.0.1.
func TestComposeFile(t *testing.T) {
	var f struct {
		Services map[string]struct {
			Image      string   `yaml:"image"`
			PID        string   `yaml:"pid"`
			Entrypoint []string `yaml:"entrypoint"`
			Command    []string `yaml:"command"`
			CapAdd     []string `yaml:"cap_add"`
			CapDrop    []string `yaml:"cap_drop"`
			Privileged bool     `yaml:"privileged"`
			Ports      []string `yaml:"ports"`
			Volumes    []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	b, err := os.ReadFile(filepath.Join("..", "docker-compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	sidecars := 0
	for name, s := range f.Services {
		for _, p := range s.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s publishes %q beyond 127.0.0.1", name, p)
			}
		}
		if s.Privileged || len(s.Volumes) > 0 {
			t.Errorf("%s: privileged %v, volumes %v", name, s.Privileged, s.Volumes)
		}
		target, ok := strings.CutPrefix(s.PID, "service:")
		if !ok {
			continue
		}
		sidecars++
		app, ok := f.Services[target]
		if !ok || len(app.Entrypoint) == 0 {
			t.Errorf("%s shares the PID namespace of %q, which is not a service with an entrypoint", name, target)
			continue
		}
		if !slices.Equal(s.Command, []string{"--exe", path.Base(app.Entrypoint[0])}) {
			t.Errorf("%s runs %v, want --exe %s", name, s.Command, path.Base(app.Entrypoint[0]))
		}
		if !slices.Equal(s.CapAdd, []string{"SYS_ADMIN"}) || !slices.Equal(s.CapDrop, []string{"ALL"}) || !slices.Equal(app.CapDrop, []string{"ALL"}) {
			t.Errorf("%s: cap_add %v cap_drop %v, app cap_drop %v", name, s.CapAdd, s.CapDrop, app.CapDrop)
		}
	}
	if sidecars != 3 {
		t.Errorf("%d sidecars, want one per demo service (3)", sidecars)
	}
}
