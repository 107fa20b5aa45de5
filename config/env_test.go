package config

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestEnvOverrides(t *testing.T) {
	secretPath, err := filepath.Abs(filepath.Join("testdata", "secret_redis_password.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  []string
		edit func(c *Config)
	}{
		{"string", []string{"PUSHSYNC_ROLE=dev"}, func(c *Config) { c.Role = RoleDev }},
		{"nested string", []string{"PUSHSYNC_REDIS_TLS_CA_FILE=/etc/ca.pem", "PUSHSYNC_REDIS_TLS_ENABLED=true"}, func(c *Config) { c.Redis.TLS = RedisTLSConfig{Enabled: true, CAFile: "/etc/ca.pem"} }},
		{"int", []string{"PUSHSYNC_REDIS_DB=7"}, func(c *Config) { c.Redis.DB = 7 }},
		{"negative int", []string{"PUSHSYNC_DISPATCHER_MAX_DELIVER=-1"}, func(c *Config) { c.Dispatcher.MaxDeliver = -1 }},
		{"bool", []string{"PUSHSYNC_REDIS_TLS_ENABLED=true"}, func(c *Config) { c.Redis.TLS.Enabled = true }},
		{"duration", []string{"PUSHSYNC_DISPATCHER_ACK_WAIT=45s"}, func(c *Config) { c.Dispatcher.AckWait = Duration(45 * time.Second) }},
		{"list", []string{"PUSHSYNC_REDIS_ADDRS=a:6379, b:6379,,c:6379"}, func(c *Config) { c.Redis.Addrs = []string{"a:6379", "b:6379", "c:6379"} }},
		{"secret", []string{"PUSHSYNC_NATS_TOKEN=tok"}, func(c *Config) { c.NATS.Token = "tok" }},
		{"secret file", []string{"PUSHSYNC_REDIS_PASSWORD_FILE=" + secretPath}, func(c *Config) {
			c.Redis.PasswordFile = secretPath
			c.Redis.Password = "s3cret-redis-pw"
		}},
		{"later entry wins", []string{"PUSHSYNC_REDIS_DB=1", "PUSHSYNC_REDIS_DB=2"}, func(c *Config) { c.Redis.DB = 2 }},
		{"ignored variables", []string{
			"PUSHSYNC_CONFIG=/etc/pushsync/pushsyncd.yaml",
			"PUSHSYNC_TEST_REDIS=1",
			"PUSHSYNC_TEST_=x",
			"HOME=/root",
			"pushsync_role=api",
			"NOT_A_PAIR",
		}, func(c *Config) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(nil, tc.env, "")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := Default()
			tc.edit(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got\n%s\nwant\n%s", dump(t, got), dump(t, want))
			}
		})
	}
}

func TestEnvBeatsFile(t *testing.T) {
	data := []byte("dispatcher:\n  ack_wait: 40s\n  workers: 8\nredis:\n  addrs: [x:1]\n")
	got, err := Parse(data, []string{"PUSHSYNC_DISPATCHER_ACK_WAIT=45s", "PUSHSYNC_REDIS_ADDRS=y:2,z:3"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if got.Dispatcher.AckWait != Duration(45*time.Second) || got.Dispatcher.Workers != 8 ||
		!reflect.DeepEqual(got.Redis.Addrs, []string{"y:2", "z:3"}) {
		t.Errorf("got ack_wait %s, workers %d, addrs %v; want 45s, 8, [y:2 z:3]",
			got.Dispatcher.AckWait, got.Dispatcher.Workers, got.Redis.Addrs)
	}
}

func TestEnvErrors(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"PUSHSYNC_DISPATCHER_ACK_WAIT=abc"}, `config: PUSHSYNC_DISPATCHER_ACK_WAIT: invalid duration "abc"`},
		{[]string{"PUSHSYNC_DISPATCHER_ACK_WAIT=30"}, `config: PUSHSYNC_DISPATCHER_ACK_WAIT: invalid duration "30": use a unit, e.g. 30s`},
		{[]string{"PUSHSYNC_REDIS_DB=one"}, `config: PUSHSYNC_REDIS_DB: invalid integer "one"`},
		{[]string{"PUSHSYNC_REDIS_TLS_ENABLED=yes"}, `config: PUSHSYNC_REDIS_TLS_ENABLED: invalid boolean "yes", use true or false`},
		{[]string{"PUSHSYNC_DISPATCHER_ACKWAIT=45s"}, "config: PUSHSYNC_DISPATCHER_ACKWAIT: unknown variable, no setting has this name; did you mean PUSHSYNC_DISPATCHER_ACK_WAIT?"},
		{[]string{"PUSHSYNC_LISTEN=:9090"}, "config: PUSHSYNC_LISTEN: unknown variable, no setting has this name (PUSHSYNC_ and the yaml key in upper case with _ for ., e.g. PUSHSYNC_DISPATCHER_ACK_WAIT)"},
		{[]string{"PUSHSYNC_APNS_KEY_FILE=x"}, "config: PUSHSYNC_APNS_KEY_FILE: unknown variable, no setting has this name (PUSHSYNC_ and the yaml key in upper case with _ for ., e.g. PUSHSYNC_DISPATCHER_ACK_WAIT)"},
		{[]string{"PUSHSYNC_REDIS_ADDRS="}, "config: redis.addrs: must list at least one host:port address"},
		{[]string{"PUSHSYNC_ROLE=both"}, `config: role: must be worker, api, all or dev, got "both"`},
		{[]string{"PUSHSYNC_REDIS_PASSWORD=x", "PUSHSYNC_REDIS_PASSWORD_FILE=/run/secrets/redis"}, "config: redis.password and redis.password_file are both set; set only one"},
		{[]string{"PUSHSYNC_REDIS_DB=x", "PUSHSYNC_NATS_REPLICA=3"}, `config: PUSHSYNC_REDIS_DB: invalid integer "x"` + "\n" +
			"config: PUSHSYNC_NATS_REPLICA: unknown variable, no setting has this name; did you mean PUSHSYNC_NATS_REPLICAS?"},
	} {
		got, err := Parse(nil, tc.env, "")
		if err == nil || err.Error() != tc.want {
			t.Errorf("env %q: error\n%v\nwant\n%s", tc.env, err, tc.want)
		}
		if got != nil {
			t.Errorf("env %q: a Config returned with its error", tc.env)
		}
	}
}

// TestEnvEveryKey sets every setting from the environment to its default
// and expects the defaults back, so each derived name is accepted and each
// type parses its own formatting.
func TestEnvEveryKey(t *testing.T) {
	var env []string
	names := make(map[string]string)
	for _, f := range fields(reflect.ValueOf(Default()).Elem(), "") {
		name := envName(f.key)
		if other, dup := names[name]; dup {
			t.Errorf("%s and %s share the variable %s", other, f.key, name)
		}
		names[name] = f.key
		env = append(env, name+"="+envString(t, f.value))
	}
	if len(env) < 50 {
		t.Errorf("only %d settings found; the reflection misses fields", len(env))
	}
	got, err := Parse(nil, env, "")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, Default()) {
		t.Errorf("got\n%s\nwant Default()", dump(t, got))
	}
	if n := envName("dispatcher.ack_wait"); n != "PUSHSYNC_DISPATCHER_ACK_WAIT" {
		t.Errorf("envName = %s", n)
	}
}

// envString formats v as an environment variable value.
func envString(t *testing.T, v reflect.Value) string {
	switch x := v.Interface().(type) {
	case Duration:
		return x.String()
	case Secret:
		return string(x)
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	case bool:
		return strconv.FormatBool(x)
	case []string:
		return strings.Join(x, ",")
	}
	t.Fatalf("no environment form for %s", v.Type())
	return fmt.Sprint(v)
}

// Kubernetes gives every pod variables describing each Service of its
// namespace (unless the pod spec sets enableServiceLinks: false); those of a
// Service named pushsync-api or pushsync start with PUSHSYNC_ but are not
// settings, and must not stop the daemon.
func TestEnvIgnoresKubernetesServiceLinks(t *testing.T) {
	for _, env := range [][]string{
		{ // Service pushsync-api, ports api 8081 and ops 8080
			"PUSHSYNC_API_SERVICE_HOST=10.0.0.12",
			"PUSHSYNC_API_SERVICE_PORT=8081",
			"PUSHSYNC_API_SERVICE_PORT_API=8081",
			"PUSHSYNC_API_SERVICE_PORT_OPS=8080",
			"PUSHSYNC_API_PORT=tcp://10.0.0.12:8081",
			"PUSHSYNC_API_PORT_8081_TCP=tcp://10.0.0.12:8081",
			"PUSHSYNC_API_PORT_8081_TCP_PROTO=tcp",
			"PUSHSYNC_API_PORT_8081_TCP_PORT=8081",
			"PUSHSYNC_API_PORT_8081_TCP_ADDR=10.0.0.12",
			"PUSHSYNC_API_PORT_8080_TCP=tcp://10.0.0.12:8080",
			"PUSHSYNC_API_PORT_8080_TCP_PROTO=tcp",
			"PUSHSYNC_API_PORT_8080_TCP_PORT=8080",
			"PUSHSYNC_API_PORT_8080_TCP_ADDR=10.0.0.12",
		},
		{ // Service pushsync, IPv6, a UDP and an SCTP port with dashes in the name
			"PUSHSYNC_SERVICE_HOST=fd00::c",
			"PUSHSYNC_SERVICE_PORT=53",
			"PUSHSYNC_SERVICE_PORT_DNS_UDP=53",
			"PUSHSYNC_PORT=udp://[fd00::c]:53",
			"PUSHSYNC_PORT_53_UDP=udp://[fd00::c]:53",
			"PUSHSYNC_PORT_53_UDP_PROTO=udp",
			"PUSHSYNC_PORT_53_UDP_PORT=53",
			"PUSHSYNC_PORT_53_UDP_ADDR=fd00::c",
			"PUSHSYNC_PORT_9899_SCTP=sctp://[fd00::c]:9899",
			"PUSHSYNC_PORT_9899_SCTP_PROTO=sctp",
		},
		{ // Service pushsync-worker-metrics
			"PUSHSYNC_WORKER_METRICS_SERVICE_HOST=10.96.4.1",
			"PUSHSYNC_WORKER_METRICS_SERVICE_PORT=8080",
			"PUSHSYNC_WORKER_METRICS_PORT=tcp://10.96.4.1:8080",
			"PUSHSYNC_WORKER_METRICS_PORT_8080_TCP_ADDR=10.96.4.1",
		},
	} {
		got, err := Parse(nil, env, "")
		if err != nil {
			t.Errorf("env %q: %v", env, err)
			continue
		}
		if !reflect.DeepEqual(got, Default()) {
			t.Errorf("env %q changed settings:\n%s", env, dump(t, got))
		}
	}
}

// A name of the service-link form that is a setting is the setting, and
// one whose value is not what Kubernetes would give is a mistake.
func TestEnvServiceLinkFormsThatAreNotLinks(t *testing.T) {
	got, err := Parse(nil, []string{"PUSHSYNC_API_ARN_ACCOUNT=123456789012"}, "")
	if err != nil || got.API.ARNAccount != "123456789012" {
		t.Fatalf("a setting: %v", err)
	}
	for _, kv := range []string{
		"PUSHSYNC_HTTP_PORT=8080",                          // not tcp://host:port
		"PUSHSYNC_API_PORT=:8081",                          // not tcp://host:port
		"PUSHSYNC_API_SERVICE_HOST=api.internal",           // not an IP address
		"PUSHSYNC_API_SERVICE_PORT=http",                   // not a port number
		"PUSHSYNC_API_PORT_8081_TCP=tcp://10.0.0.12:8080",  // a different port
		"PUSHSYNC_API_PORT_8081_TCP_PROTO=udp",             // a different protocol
		"PUSHSYNC_API_PORT_8081_TCP_PORT=8080",             // a different port
		"PUSHSYNC_API_PORT_8081_HTTP=tcp://10.0.0.12:8081", // no such protocol
		"PUSHSYNC_SERVICE_HOST_X=10.0.0.12",                // no such form
	} {
		name, _, _ := strings.Cut(kv, "=")
		_, err := Parse(nil, []string{kv}, "")
		if err == nil || !strings.Contains(err.Error(), name+": unknown variable") {
			t.Errorf("%s: error %v, want %s: unknown variable", kv, err, name)
		}
	}
}
