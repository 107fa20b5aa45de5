package config

import (
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"regexp"
	"strconv"
	"strings"
)

// envPrefix starts every environment variable that overrides a setting.
const envPrefix = "PUSHSYNC_"

// envName returns the environment variable that overrides the setting with
// the dotted yaml key: "dispatcher.ack_wait" becomes
// "PUSHSYNC_DISPATCHER_ACK_WAIT".
func envName(key string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// envIgnored reports whether name is a PUSHSYNC_* variable that is not a
// setting: the config file path read by the daemon, and test harness
// variables. Kubernetes service links are recognised by name and value
// (serviceLink).
func envIgnored(name string) bool {
	return name == "PUSHSYNC_CONFIG" || strings.HasPrefix(name, "PUSHSYNC_TEST_")
}

// applyEnv sets the settings named by the PUSHSYNC_* variables in env, a
// slice of "NAME=value" like os.Environ(). A later entry beats an earlier one.
// An unknown PUSHSYNC_* variable or a value that does not parse is an error
// naming the variable; the variables Kubernetes sets for a Service whose
// name starts with "pushsync" are not unknown but ignored.
func applyEnv(c *Config, env []string) []error {
	all := fields(reflect.ValueOf(c).Elem(), "")
	byName := make(map[string]reflect.Value, len(all))
	for _, f := range all {
		byName[envName(f.key)] = f.value
	}
	var errs []error
	for _, kv := range env {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, envPrefix) || envIgnored(name) {
			continue
		}
		v, ok := byName[name]
		if !ok && serviceLink(name, value) {
			continue
		}
		if !ok {
			errs = append(errs, unknownEnvError(name, byName))
			continue
		}
		if err := setString(v, value); err != nil {
			errs = append(errs, fmt.Errorf("config: %s: %w", name, err))
		}
	}
	return errs
}

// The names of the variables Kubernetes gives a pod for every Service of
// its namespace, unless the pod spec sets enableServiceLinks: false. A
// Service named pushsync-api yields PUSHSYNC_API_SERVICE_HOST and the like.
var (
	linkServiceHost = regexp.MustCompile(`^[A-Z][A-Z0-9_]*_SERVICE_HOST$`)
	linkServicePort = regexp.MustCompile(`^[A-Z][A-Z0-9_]*_SERVICE_PORT(?:_[A-Z0-9_]+)?$`)
	linkFirstPort   = regexp.MustCompile(`^[A-Z][A-Z0-9_]*_PORT$`)
	linkPort        = regexp.MustCompile(`^[A-Z][A-Z0-9_]*_PORT_([0-9]+)_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?$`)
)

// serviceLink reports whether name=value is a Kubernetes service-link
// variable: a name of that form with a value of the form Kubernetes gives
// it. Call it only for names that are not settings.
//
//	<SERVICE>_SERVICE_HOST=10.0.0.12
//	<SERVICE>_SERVICE_PORT=8081, <SERVICE>_SERVICE_PORT_<PORT NAME>=8081
//	<SERVICE>_PORT=tcp://10.0.0.12:8081
//	<SERVICE>_PORT_8081_TCP=tcp://10.0.0.12:8081
//	<SERVICE>_PORT_8081_TCP_PROTO=tcp, _PORT=8081, _ADDR=10.0.0.12
func serviceLink(name, value string) bool {
	if m := linkPort.FindStringSubmatch(name); m != nil {
		proto := strings.ToLower(m[2])
		switch m[3] {
		case "":
			return linkURL(value, proto, m[1])
		case "_PROTO":
			return value == proto
		case "_PORT":
			return value == m[1] && portNumber(value)
		case "_ADDR":
			return ipAddress(value)
		}
	}
	switch {
	case linkServiceHost.MatchString(name):
		return ipAddress(value)
	case linkServicePort.MatchString(name):
		return portNumber(value)
	case linkFirstPort.MatchString(name):
		proto, _, _ := strings.Cut(value, "://")
		return (proto == "tcp" || proto == "udp" || proto == "sctp") && linkURL(value, proto, "")
	}
	return false
}

// linkURL reports whether v is proto://ip:port, with the given port unless
// port is empty.
func linkURL(v, proto, port string) bool {
	hostPort, ok := strings.CutPrefix(v, proto+"://")
	if !ok {
		return false
	}
	host, p, err := net.SplitHostPort(hostPort)
	return err == nil && ipAddress(host) && portNumber(p) && (port == "" || p == port)
}

func ipAddress(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// portNumber reports whether s is a port number written as Kubernetes
// writes it.
func portNumber(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535 && strconv.Itoa(n) == s
}

// unknownEnvError says that name is not a setting and suggests the closest
// variable that is, if one is near enough to be a typo.
func unknownEnvError(name string, known map[string]reflect.Value) error {
	best, bestDist := "", 4 // suggest only within 3 edits
	for k := range known {
		if d := editDistance(name, k); d < bestDist || d == bestDist && k < best {
			best, bestDist = k, d
		}
	}
	if best != "" {
		return fmt.Errorf("config: %s: unknown variable, no setting has this name; did you mean %s?", name, best)
	}
	return fmt.Errorf("config: %s: unknown variable, no setting has this name (PUSHSYNC_ and the yaml key in upper case with _ for ., e.g. PUSHSYNC_DISPATCHER_ACK_WAIT)", name)
}

// editDistance returns the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// setString parses s as a value of v's type and stores it in v. Lists are
// comma-separated; blanks around items and empty items are dropped.
func setString(v reflect.Value, s string) error {
	switch {
	case v.Type() == reflect.TypeFor[Duration]():
		d, err := parseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Int:
		n, err := strconv.ParseInt(s, 10, strconv.IntSize)
		if err != nil {
			return fmt.Errorf("invalid integer %q", s)
		}
		v.SetInt(n)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("invalid boolean %q, use true or false", s)
		}
		v.SetBool(b)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		list := []string{} // an empty value is an empty list, as "key: []" is in YAML
		for item := range strings.SplitSeq(s, ",") {
			if item = strings.TrimSpace(item); item != "" {
				list = append(list, item)
			}
		}
		v.Set(reflect.ValueOf(list).Convert(v.Type()))
	default:
		return fmt.Errorf("cannot set a %s from the environment", v.Type())
	}
	return nil
}
