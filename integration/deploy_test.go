package integration

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The deployment files checked the way an operator reads them: the Helm chart rendered with
// `helm template` (no cluster needed), the compose file and its config files parsed, the
// Dockerfile read. Docker is not needed and not used: no image is built, nothing is started
// in containers; TestHelmChartConfigStartsABroker runs the chart's rendered config with the
// strata binary instead.

const (
	chartDir       = "../deployments/helm/strata"
	composeDir     = "../deployments/compose"
	dockerfilePath = "../deployments/docker/Dockerfile"
	dashboardFile  = "../deployments/grafana/strata.json"
	sampleConfig   = "../deployments/broker.yaml"
)

// helmBinary finds helm: $STRATA_HELM_BIN (set by the Makefile), else <repo>/.tools/bin/helm.
func helmBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("STRATA_HELM_BIN"); bin != "" {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("helm not found at STRATA_HELM_BIN=%s (%v): run `make helm`", bin, err)
		}
		return bin
	}
	bin, err := filepath.Abs("../.tools/bin/helm")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("helm is not installed (looked for %s): run `make helm` (or `make tools`), or set STRATA_HELM_BIN", bin)
	}
	return bin
}

// helmRender runs `helm template` on the chart with the given flags and returns its output,
// or the error with helm's stderr.
func helmRender(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBinary(t), append([]string{"template", "strata", chartDir, "--namespace", "mq"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("helm template %v: %v: %s", args, err, errb.String())
	}
	return out.String(), nil
}

// The subset of Kubernetes objects the checks read.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		// StatefulSet
		ServiceName string `yaml:"serviceName"`
		Replicas    *int   `yaml:"replicas"`
		Template    struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata struct {
				Name string `yaml:"name"`
			} `yaml:"metadata"`
			Spec struct {
				Resources struct {
					Requests map[string]string `yaml:"requests"`
				} `yaml:"resources"`
			} `yaml:"spec"`
		} `yaml:"volumeClaimTemplates"`
		// Service (selector: labels) and StatefulSet / PDB (selector.matchLabels)
		Selector  map[string]any `yaml:"selector"`
		ClusterIP string         `yaml:"clusterIP"`
		Ports     []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort any    `yaml:"targetPort"`
		} `yaml:"ports"`
		// PodDisruptionBudget
		MaxUnavailable any `yaml:"maxUnavailable"`
		MinAvailable   any `yaml:"minAvailable"`
	} `yaml:"spec"`
}

type podSpec struct {
	SecurityContext struct {
		RunAsNonRoot *bool  `yaml:"runAsNonRoot"`
		RunAsUser    *int64 `yaml:"runAsUser"`
	} `yaml:"securityContext"`
	Containers []container `yaml:"containers"`
	Volumes    []struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
	} `yaml:"volumes"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Env   []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
			SecretKeyRef *struct {
				Name string `yaml:"name"`
				Key  string `yaml:"key"`
			} `yaml:"secretKeyRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe   *probe `yaml:"livenessProbe"`
	ReadinessProbe  *probe `yaml:"readinessProbe"`
	SecurityContext struct {
		RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
		RunAsUser                *int64 `yaml:"runAsUser"`
		AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

// path is the probe's HTTP GET path, "" when it is not an HTTP probe.
func (p *probe) path() string {
	if p == nil || p.HTTPGet == nil {
		return ""
	}
	return p.HTTPGet.Path
}

func deref[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}

// chart is one rendering of the chart, by kind.
type chart struct {
	objects []k8sObject
	raw     string
}

func parseManifests(t *testing.T, out string) chart {
	t.Helper()
	c := chart{raw: out}
	dec := yaml.NewDecoder(strings.NewReader(out))
	for {
		var o k8sObject
		err := dec.Decode(&o)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("helm template output is not valid YAML: %v\n%s", err, out)
		}
		if o.Kind == "" {
			continue // an empty document
		}
		if o.Metadata.Name == "" {
			t.Fatalf("a %s without a name", o.Kind)
		}
		c.objects = append(c.objects, o)
	}
	return c
}

func (c chart) ofKind(kind string) []k8sObject {
	var out []k8sObject
	for _, o := range c.objects {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

func (c chart) named(kind, name string) (k8sObject, bool) {
	for _, o := range c.ofKind(kind) {
		if o.Metadata.Name == name {
			return o, true
		}
	}
	return k8sObject{}, false
}

// selects reports whether a selector (labels) picks pods with the given labels.
func selects(selector map[string]string, labels map[string]string) bool {
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

func stringMap(t *testing.T, m any, what string) map[string]string {
	t.Helper()
	raw, ok := m.(map[string]any)
	if !ok {
		t.Fatalf("%s is %T, want a map of labels", what, m)
	}
	out := map[string]string{}
	for k, v := range raw {
		out[k] = fmt.Sprint(v)
	}
	return out
}

func (o k8sObject) matchLabels(t *testing.T) map[string]string {
	t.Helper()
	return stringMap(t, o.Spec.Selector["matchLabels"], o.Kind+" "+o.Metadata.Name+" selector.matchLabels")
}

// keyPaths lists the dotted key paths of a YAML mapping (lists are leaves).
func keyPaths(prefix string, m map[string]any, out map[string]bool) {
	for k, v := range m {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		if sub, ok := v.(map[string]any); ok {
			keyPaths(p, sub, out)
			continue
		}
		out[p] = true
	}
}

// checkBrokerConfigKeys fails if a broker config uses a key that deployments/broker.yaml (which
// documents every key) does not have; it returns the parsed config.
func checkBrokerConfigKeys(t *testing.T, what, text string) map[string]any {
	t.Helper()
	sample, err := os.ReadFile(sampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	var s, c map[string]any
	if err := yaml.Unmarshal(sample, &s); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(text), &c); err != nil {
		t.Fatalf("%s is not YAML: %v\n%s", what, err, text)
	}
	known, used := map[string]bool{}, map[string]bool{}
	keyPaths("", s, known)
	keyPaths("", c, used)
	for k := range used {
		if !known[k] {
			t.Errorf("%s sets %s, which is not a broker config key (deployments/broker.yaml lists them)", what, k)
		}
	}
	return c
}

func lookup(m map[string]any, path string) any {
	var cur any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[k]
	}
	return cur
}

type chartExpect struct {
	groups    []string
	etcd      []string
	bucketURL string // "" when no cold tier
	secret    string // the S3 secret value, "" when no credentials are given
}

// checkChart asserts what an operator checks in a rendering of the chart.
func checkChart(t *testing.T, c chart, want chartExpect) {
	t.Helper()
	// The shared config: etcd endpoints and bucket from the values, known keys only.
	cms := c.ofKind("ConfigMap")
	if len(cms) != 1 {
		t.Fatalf("%d ConfigMaps, want the one broker config", len(cms))
	}
	cm := cms[0]
	cfg := checkBrokerConfigKeys(t, "ConfigMap "+cm.Metadata.Name+" broker.yaml", cm.Data["broker.yaml"])
	var etcd []string
	for _, e := range lookup(cfg, "etcd_endpoints").([]any) {
		etcd = append(etcd, fmt.Sprint(e))
	}
	if !slices.Equal(etcd, want.etcd) {
		t.Errorf("config etcd_endpoints %v, values say %v", etcd, want.etcd)
	}
	if got := fmt.Sprint(lookup(cfg, "tier.bucket")); got != want.bucketURL {
		t.Errorf("config tier.bucket %q, want %q", got, want.bucketURL)
	}

	var secretName string
	switch secrets := c.ofKind("Secret"); {
	case want.secret == "" && len(secrets) != 0:
		t.Errorf("%d Secrets rendered without S3 credentials in the values", len(secrets))
	case want.secret != "":
		if len(secrets) != 1 || secrets[0].StringData["secret-key"] != want.secret {
			t.Fatalf("want one Secret holding the S3 secret key, got %+v", secrets)
		}
		secretName = secrets[0].Metadata.Name
		// The secret appears once in the output: in the Secret, never in env or config.
		if n := strings.Count(c.raw, want.secret); n != 1 {
			t.Errorf("the S3 secret key appears %d times in the rendered chart, want once (in its Secret)", n)
		}
	}

	sets := c.ofKind("StatefulSet")
	if len(sets) != len(want.groups) {
		t.Fatalf("%d StatefulSets for groups %v, want one per group", len(sets), want.groups)
	}
	services := c.ofKind("Service")
	pdbs := c.ofKind("PodDisruptionBudget")
	listeners := map[string]int{"namesrv": 9876, "broker": 10911, "http": 8080}
	for _, g := range want.groups {
		var ss *k8sObject
		for i := range sets {
			if sets[i].Metadata.Labels["strata.io/group"] == g {
				ss = &sets[i]
			}
		}
		if ss == nil {
			t.Fatalf("no StatefulSet for group %s", g)
		}
		name := ss.Metadata.Name
		podLabels := ss.Spec.Template.Metadata.Labels
		if !selects(ss.matchLabels(t), podLabels) {
			t.Errorf("StatefulSet %s selector does not match its pod labels %v", name, podLabels)
		}
		if ss.Spec.Replicas == nil || *ss.Spec.Replicas != 1 {
			t.Errorf("StatefulSet %s replicas %v: Strata serves one master per group", name, ss.Spec.Replicas)
		}
		if len(ss.Spec.VolumeClaimTemplates) == 0 || ss.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests["storage"] == "" {
			t.Errorf("StatefulSet %s has no volume claim template with a storage request", name)
		}
		// Its governing Service is headless and selects its pods.
		headless, ok := c.named("Service", ss.Spec.ServiceName)
		if !ok || headless.Spec.ClusterIP != "None" || !selects(stringMap(t, headless.Spec.Selector, "Service selector"), podLabels) {
			t.Errorf("StatefulSet %s: serviceName %q is not a headless Service selecting its pods", name, ss.Spec.ServiceName)
		}
		// Exactly one PDB selects the group's pods, and it allows no more than one down.
		var covering []string
		for _, p := range pdbs {
			if selects(p.matchLabels(t), podLabels) {
				covering = append(covering, p.Metadata.Name)
				if p.Spec.MaxUnavailable == nil && p.Spec.MinAvailable == nil {
					t.Errorf("PDB %s sets neither maxUnavailable nor minAvailable", p.Metadata.Name)
				}
			}
		}
		if len(covering) != 1 {
			t.Errorf("group %s pods are covered by PDBs %v, want exactly one", g, covering)
		}

		pod := ss.Spec.Template.Spec
		if len(pod.Containers) != 1 {
			t.Fatalf("StatefulSet %s has %d containers", name, len(pod.Containers))
		}
		ctr := pod.Containers[0]
		ports := map[string]int{}
		for _, p := range ctr.Ports {
			ports[p.Name] = p.ContainerPort
		}
		for l, port := range listeners {
			if ports[l] != port {
				t.Errorf("%s container port %s = %d, want %d", name, l, ports[l], port)
			}
		}
		// Every listener is reachable through a Service selecting this group's pods.
		for l := range listeners {
			found := false
			for _, s := range services {
				if !selects(stringMap(t, s.Spec.Selector, "Service "+s.Metadata.Name+" selector"), podLabels) {
					continue
				}
				for _, p := range s.Spec.Ports {
					if fmt.Sprint(p.TargetPort) == l || p.Port == listeners[l] {
						found = true
					}
				}
			}
			if !found {
				t.Errorf("no Service exposes the %s listener of group %s", l, g)
			}
		}
		if got := ctr.LivenessProbe.path(); got != "/healthz" {
			t.Errorf("%s liveness probe GETs %q, want /healthz", name, got)
		}
		if got := ctr.ReadinessProbe.path(); got != "/readyz" {
			t.Errorf("%s readiness probe GETs %q, want /readyz", name, got)
		}
		for _, pr := range []*probe{ctr.LivenessProbe, ctr.ReadinessProbe} {
			if pr != nil && pr.HTTPGet != nil && ports[fmt.Sprint(pr.HTTPGet.Port)] != 8080 {
				t.Errorf("%s probe port %v is not the http listener", name, pr.HTTPGet.Port)
			}
		}

		// Environment: the group, the pod IP as advertised address, credentials from the Secret.
		env := map[string]int{}
		for i, e := range ctr.Env {
			env[e.Name] = i
		}
		get := func(n string) (int, bool) { i, ok := env[n]; return i, ok }
		if i, ok := get("STRATA_BROKER_NAME"); !ok || ctr.Env[i].Value != g {
			t.Errorf("%s STRATA_BROKER_NAME is not %s", name, g)
		}
		ipAt, okIP := get("POD_IP")
		advAt, okAdv := get("STRATA_ADVERTISED_ADDR")
		switch {
		case !okIP || ctr.Env[ipAt].ValueFrom == nil || ctr.Env[ipAt].ValueFrom.FieldRef == nil || ctr.Env[ipAt].ValueFrom.FieldRef.FieldPath != "status.podIP":
			t.Errorf("%s: POD_IP does not come from the downward API (status.podIP)", name)
		case !okAdv || ctr.Env[advAt].Value != "$(POD_IP):10911":
			t.Errorf("%s: STRATA_ADVERTISED_ADDR is not $(POD_IP):10911", name)
		case advAt < ipAt:
			t.Errorf("%s: STRATA_ADVERTISED_ADDR is listed before POD_IP, so $(POD_IP) would not expand", name)
		}
		for _, k := range []string{"STRATA_TIER_S3_ACCESS_KEY", "STRATA_TIER_S3_SECRET_KEY"} {
			i, ok := get(k)
			switch {
			case secretName == "" && ok:
				t.Errorf("%s sets %s without credentials in the values", name, k)
			case secretName != "" && (!ok || ctr.Env[i].Value != "" || ctr.Env[i].ValueFrom == nil ||
				ctr.Env[i].ValueFrom.SecretKeyRef == nil || ctr.Env[i].ValueFrom.SecretKeyRef.Name != secretName):
				t.Errorf("%s: %s does not come from Secret %s", name, k, secretName)
			}
		}

		// The config file is the ConfigMap, mounted where the args point.
		if !slices.Contains(ctr.Args, "/etc/strata/broker.yaml") {
			t.Errorf("%s args %v do not read /etc/strata/broker.yaml", name, ctr.Args)
		}
		mounts := map[string]string{}
		for _, m := range ctr.VolumeMounts {
			mounts[m.Name] = m.MountPath
		}
		cmVolume := ""
		for _, v := range pod.Volumes {
			if v.ConfigMap != nil && v.ConfigMap.Name == cm.Metadata.Name {
				cmVolume = v.Name
			}
		}
		if mounts[cmVolume] != "/etc/strata" {
			t.Errorf("%s does not mount ConfigMap %s at /etc/strata (mounts %v)", name, cm.Metadata.Name, mounts)
		}
		if claim := ss.Spec.VolumeClaimTemplates; len(claim) > 0 {
			if dir := fmt.Sprint(lookup(cfg, "data_dir")); !strings.HasPrefix(dir, mounts[claim[0].Metadata.Name]+"/") {
				t.Errorf("%s: data_dir %s is not on the persistent volume mounted at %q", name, dir, mounts[claim[0].Metadata.Name])
			}
		}

		// Nobody runs as root.
		sc := pod.SecurityContext
		if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
			t.Errorf("%s pod security context allows root: runAsNonRoot %s, runAsUser %s", name, deref(sc.RunAsNonRoot), deref(sc.RunAsUser))
		}
		csc := ctr.SecurityContext
		if (csc.RunAsUser != nil && *csc.RunAsUser == 0) || (csc.RunAsNonRoot != nil && !*csc.RunAsNonRoot) {
			t.Errorf("%s container runs as root", name)
		}
		if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
			t.Errorf("%s container allows privilege escalation", name)
		}
	}
	// The name-server Service spreads clients over every group's brokers.
	var nsAll bool
	for _, s := range services {
		if s.Spec.ClusterIP == "None" {
			continue
		}
		sel := stringMap(t, s.Spec.Selector, "Service selector")
		all := true
		for _, ss := range sets {
			all = all && selects(sel, ss.Spec.Template.Metadata.Labels)
		}
		for _, p := range s.Spec.Ports {
			if p.Port == 9876 && all {
				nsAll = true
			}
		}
	}
	if !nsAll {
		t.Error("no ClusterIP Service exposes the name-server port over all groups' brokers")
	}
}

func TestHelmChartDefaultValues(t *testing.T) {
	out, err := helmRender(t)
	if err != nil {
		t.Fatal(err)
	}
	checkChart(t, parseManifests(t, out), chartExpect{
		groups: []string{"broker-a"},
		etcd:   []string{"http://etcd.etcd.svc.cluster.local:2379"},
	})
}

func TestHelmChartTwoGroups(t *testing.T) {
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(`
groups:
  - name: broker-a
  - name: broker-b
    persistence:
      size: 200Gi
etcd:
  endpoints: [http://10.1.0.1:2379, http://10.1.0.2:2379]
s3:
  bucket: strata-prod
  prefix: mq
  endpoint: http://minio.minio.svc:9000
  pathStyle: true
  accessKey: AKIAEXAMPLE
  secretKey: s3-secret-from-values
`), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := helmRender(t, "-f", values)
	if err != nil {
		t.Fatal(err)
	}
	c := parseManifests(t, out)
	checkChart(t, c, chartExpect{
		groups:    []string{"broker-a", "broker-b"},
		etcd:      []string{"http://10.1.0.1:2379", "http://10.1.0.2:2379"},
		bucketURL: "s3://strata-prod/mq",
		secret:    "s3-secret-from-values",
	})
	sizes := map[string]string{}
	for _, ss := range c.ofKind("StatefulSet") {
		sizes[ss.Metadata.Labels["strata.io/group"]] = ss.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests["storage"]
	}
	if sizes["broker-a"] != "50Gi" || sizes["broker-b"] != "200Gi" {
		t.Errorf("volume sizes %v: want the default 50Gi and broker-b's own 200Gi", sizes)
	}
}

// Values that cannot work fail the rendering with a message saying what to fix.
func TestHelmChartRejectsBadValues(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--set", "groups[0].name=Broker_A"}, "lower-case letters, digits and '-'"},
		{[]string{"--set", "etcd.endpoints=null"}, "etcd.endpoints"},
		{[]string{"--set", "s3.accessKey=AKIA"}, "s3.secretKey"},
	} {
		_, err := helmRender(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("helm template %v: %v; want an error mentioning %q", c.args, err, c.want)
		}
	}
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// The chart's rendered config and container environment start a real broker, which then
// passes the chart's readiness and liveness probes.
func TestHelmChartConfigStartsABroker(t *testing.T) {
	etcd := startEtcdProcess(t)
	ns, brk, httpAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	out, err := helmRender(t, "--set", "etcd.endpoints={"+etcd.Endpoints()[0]+"}",
		"--set", "ports.namesrv="+portOf(t, ns), "--set", "ports.broker="+portOf(t, brk), "--set", "ports.http="+portOf(t, httpAddr))
	if err != nil {
		t.Fatal(err)
	}
	c := parseManifests(t, out)
	cfgPath := filepath.Join(t.TempDir(), "broker.yaml")
	if err := os.WriteFile(cfgPath, []byte(c.ofKind("ConfigMap")[0].Data["broker.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	ctr := c.ofKind("StatefulSet")[0].Spec.Template.Spec.Containers[0]
	// The pod's environment as the kubelet would set it, with 127.0.0.1 as the pod IP.
	for _, e := range ctr.Env {
		if e.ValueFrom != nil {
			continue // POD_IP, expanded below
		}
		t.Setenv(e.Name, strings.ReplaceAll(e.Value, "$(POD_IP)", "127.0.0.1"))
	}
	// The volume is a temp dir here, not /var/lib/strata.
	t.Setenv("STRATA_DATA_DIR", t.TempDir())
	args := slices.Clone(ctr.Args)
	for i, a := range args {
		if a == "/etc/strata/broker.yaml" {
			args[i] = cfgPath
		}
	}
	p := startProc(t, ns, brk, httpAddr, args...) // waits for /readyz
	for _, pr := range []*probe{ctr.ReadinessProbe, ctr.LivenessProbe} {
		resp, err := http.Get("http://" + httpAddr + pr.HTTPGet.Path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("probe %s answered %d", pr.HTTPGet.Path, resp.StatusCode)
		}
	}
	if !strings.Contains(p.output.String(), "ready") {
		t.Errorf("broker output has no ready banner:\n%s", p.output)
	}
}

// The compose file's subset the checks read.
type composeFile struct {
	Services map[string]struct {
		Image string `yaml:"image"`
		Build *struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
		} `yaml:"build"`
		Command     any               `yaml:"command"`
		Entrypoint  any               `yaml:"entrypoint"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		DependsOn   map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
		Restart string `yaml:"restart"`
	} `yaml:"services"`
}

func flatten(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []any:
		var s []string
		for _, e := range x {
			s = append(s, fmt.Sprint(e))
		}
		return strings.Join(s, " ")
	}
	return fmt.Sprint(v)
}

// mountSource returns the host path (relative to the compose directory) mounted at target.
func mountSource(volumes []string, target string) (string, bool) {
	for _, v := range volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == target {
			return parts[0], true
		}
	}
	return "", false
}

var pinnedImage = regexp.MustCompile(`^[a-z0-9./-]+:[A-Za-z0-9._-]+$`)

func TestComposeFile(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(composeDir, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml.Unmarshal(raw, &cf); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	for _, s := range []string{"etcd", "minio", "createbucket", "prometheus", "grafana"} {
		if _, ok := cf.Services[s]; !ok {
			t.Errorf("compose has no %s service", s)
		}
	}
	// Images pinned: a tag, never latest. The brokers are built from this checkout.
	var brokers []string
	for name, s := range cf.Services {
		if s.Build != nil {
			if s.Build.Dockerfile != "deployments/docker/Dockerfile" {
				t.Errorf("%s builds %q, want deployments/docker/Dockerfile", name, s.Build.Dockerfile)
			}
			df := filepath.Join(composeDir, s.Build.Context, s.Build.Dockerfile)
			if _, err := os.Stat(df); err != nil {
				t.Errorf("%s: build context %s and dockerfile do not resolve to the Dockerfile: %v", name, s.Build.Context, err)
			}
			brokers = append(brokers, name)
			continue
		}
		if !pinnedImage.MatchString(s.Image) || strings.HasSuffix(s.Image, ":latest") {
			t.Errorf("service %s image %q is not pinned to a tag", name, s.Image)
		}
	}
	sort.Strings(brokers)
	if len(brokers) != 2 {
		t.Fatalf("compose brokers %v, want two broker groups", brokers)
	}

	// The bucket is created by a one-shot service before the brokers start, and is theirs.
	cb := cf.Services["createbucket"]
	script := flatten(cb.Entrypoint) + " " + flatten(cb.Command)
	m := regexp.MustCompile(`mc mb (?:--ignore-existing )?\w+/([a-z0-9.-]+)`).FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("createbucket runs %q, which creates no bucket with mc mb", script)
	}
	bucket := m[1]
	if cb.Restart != "no" {
		t.Errorf("createbucket restart %q: a one-shot service must not restart", cb.Restart)
	}
	if cb.DependsOn["minio"].Condition != "service_healthy" {
		t.Error("createbucket does not wait for a healthy MinIO")
	}

	sampleBrokerCfg := map[string]map[string]any{}
	names := map[string]bool{}
	for _, name := range brokers {
		s := cf.Services[name]
		src, ok := mountSource(s.Volumes, "/etc/strata/broker.yaml")
		if !ok || !strings.Contains(flatten(s.Command), "/etc/strata/broker.yaml") {
			t.Fatalf("%s does not run with a config file mounted at /etc/strata/broker.yaml", name)
		}
		text, err := os.ReadFile(filepath.Join(composeDir, src))
		if err != nil {
			t.Fatalf("%s config: %v", name, err)
		}
		cfg := checkBrokerConfigKeys(t, name+" "+src, string(text))
		sampleBrokerCfg[name] = cfg
		group := fmt.Sprint(cfg["broker_name"])
		if names[group] {
			t.Errorf("two compose brokers serve group %s", group)
		}
		names[group] = true
		if got := fmt.Sprint(lookup(cfg, "tier.bucket")); got != "s3://"+bucket {
			t.Errorf("%s tier.bucket %q, but createbucket makes %q", name, got, bucket)
		}
		if ep := fmt.Sprint(lookup(cfg, "tier.s3.endpoint")); !strings.Contains(ep, "//minio:") {
			t.Errorf("%s s3 endpoint %q is not the minio service", name, ep)
		}
		if eps := flatten(cfg["etcd_endpoints"]); !strings.Contains(eps, "//etcd:") {
			t.Errorf("%s etcd endpoints %q are not the etcd service", name, eps)
		}
		if s.DependsOn["createbucket"].Condition != "service_completed_successfully" || s.DependsOn["etcd"].Condition != "service_healthy" {
			t.Errorf("%s does not wait for etcd and the bucket", name)
		}
		if s.Environment["STRATA_TIER_S3_ACCESS_KEY"] != cf.Services["minio"].Environment["MINIO_ROOT_USER"] {
			t.Errorf("%s S3 access key is not MinIO's user", name)
		}
		if _, ok := mountSource(s.Volumes, "/var/lib/strata"); !ok {
			t.Errorf("%s keeps its data in the container: no volume at /var/lib/strata", name)
		}
	}

	// Prometheus scrapes exactly the brokers' HTTP listeners.
	promSrc, ok := mountSource(cf.Services["prometheus"].Volumes, "/etc/prometheus/prometheus.yml")
	if !ok {
		t.Fatal("prometheus has no config mounted at /etc/prometheus/prometheus.yml")
	}
	promRaw, err := os.ReadFile(filepath.Join(composeDir, promSrc))
	if err != nil {
		t.Fatal(err)
	}
	var prom struct {
		ScrapeConfigs []struct {
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(promRaw, &prom); err != nil {
		t.Fatal(err)
	}
	var targets, want []string
	for _, sc := range prom.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("scrape path %s, brokers serve /metrics", sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	for _, name := range brokers {
		want = append(want, name+":"+portOf(t, fmt.Sprint(sampleBrokerCfg[name]["http_addr"])))
	}
	sort.Strings(targets)
	if !slices.Equal(targets, want) {
		t.Errorf("prometheus targets %v, want the brokers' HTTP listeners %v", targets, want)
	}

	// Grafana is provisioned with the dashboard of deployments/grafana.
	g := cf.Services["grafana"]
	var dash string
	for _, v := range g.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && strings.HasSuffix(parts[0], ".json") {
			dash = parts[0]
			provDir := filepath.Dir(parts[1])
			provSrc, ok := mountSource(g.Volumes, "/etc/grafana/provisioning/dashboards/strata.yml")
			if !ok {
				t.Fatal("grafana has no dashboard provider provisioned")
			}
			pr, err := os.ReadFile(filepath.Join(composeDir, provSrc))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(pr), "path: "+provDir) {
				t.Errorf("the dashboard provider does not read %s, where the dashboard is mounted", provDir)
			}
		}
	}
	got, err1 := filepath.Abs(filepath.Join(composeDir, dash))
	wantDash, err2 := filepath.Abs(dashboardFile)
	if dash == "" || err1 != nil || err2 != nil || got != wantDash {
		t.Errorf("grafana mounts dashboard %q, want %s", dash, dashboardFile)
	}
	if _, ok := mountSource(g.Volumes, "/etc/grafana/provisioning/datasources/strata.yml"); !ok {
		t.Error("grafana has no datasource provisioned")
	}
}

func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile(dockerfilePath)
	if err != nil {
		t.Fatal(err)
	}
	var froms, users, exposes []string
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, f[1])
		case "USER":
			users = append(users, f[1])
		case "EXPOSE":
			exposes = append(exposes, f[1:]...)
		}
	}
	if len(froms) < 2 {
		t.Fatalf("Dockerfile stages %v: want a build stage and a runtime stage", froms)
	}
	if final := froms[len(froms)-1]; !strings.HasPrefix(final, "gcr.io/distroless/static") && final != "scratch" {
		t.Errorf("runtime base %s is neither distroless static nor scratch", final)
	}
	if len(users) == 0 || strings.HasPrefix(users[len(users)-1], "0") || strings.HasPrefix(users[len(users)-1], "root") {
		t.Errorf("Dockerfile users %v: the image must run as a non-root user", users)
	}
	slices.Sort(exposes)
	if !slices.Equal(exposes, []string{"10911", "8080", "9876"}) {
		t.Errorf("EXPOSE %v, want 9876 10911 8080", exposes)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "./cmd/strata"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("the build does not use %s", want)
		}
	}
	if !strings.Contains(string(raw), "VOLUME") {
		t.Error("no data volume declared")
	}
}
