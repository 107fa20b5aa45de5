package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestIdentityRateLimitSettings(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		env  []string
		want string // the error; "" for none
	}{
		{yaml: "api:\n  identity_rate_limit: 0\n"},
		{yaml: "api:\n  trusted_proxies: [10.0.0.0/8, 2001:db8::/32, 192.0.2.7, \"::1\"]\n"},
		{env: []string{"PUSHSYNC_API_TRUSTED_PROXIES=10.0.0.0/8, 172.16.0.0/12"}},
		{yaml: "api:\n  identity_rate_limit: -1\n", want: "config: api.identity_rate_limit: must be between 0 and 100000, got -1"},
		{yaml: "api:\n  identity_rate_burst: 0\n", want: "config: api.identity_rate_burst: must be between 1 and 100000, got 0"},
		{yaml: "api:\n  trusted_proxies: [10.0.0.0/33]\n", want: `config: api.trusted_proxies[0]: must be a CIDR such as 10.0.0.0/8 or an IP address, got "10.0.0.0/33"`},
		{env: []string{"PUSHSYNC_API_TRUSTED_PROXIES=10.0.0.0/8,lb.internal"}, want: `config: api.trusted_proxies[1]: must be a CIDR such as 10.0.0.0/8 or an IP address, got "lb.internal"`},
		{yaml: "api:\n  trusted_proxies: 10.0.0.0/8\n", want: `api.trusted_proxies: must be a list of CIDRs, got a string ("10.0.0.0/8"); write [10.0.0.0/8]`},
	} {
		parseWant(t, tc.yaml, tc.env, tc.want)
	}
}

// parseWant parses a configuration from yaml and env, and checks that it
// loads when want is empty, or else fails with a line ending in want. It
// returns the configuration, nil when it failed.
func parseWant(t *testing.T, yaml string, env []string, want string) *Config {
	t.Helper()
	c, err := Parse([]byte(yaml), env, ".")
	switch {
	case want == "" && err != nil:
		t.Errorf("%q %q: %v", yaml, env, err)
	case want != "" && err == nil:
		t.Errorf("%q %q: no error, want %s", yaml, env, want)
	case want != "" && !containsLine(err.Error(), want):
		t.Errorf("%q %q: got\n%v\nwant a line ending %s", yaml, env, err, want)
	}
	if err != nil {
		return nil
	}
	return c
}

func containsLine(s, suffix string) bool {
	for line := range strings.SplitSeq(s, "\n") {
		if strings.HasSuffix(line, suffix) {
			return true
		}
	}
	return false
}

func TestParseTrustedProxy(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.0/8":          "10.0.0.0/8",
		"10.1.2.3/8":          "10.0.0.0/8",
		"192.0.2.7":           "192.0.2.7/32",
		"2001:db8::1":         "2001:db8::1/128",
		"2001:db8::/32":       "2001:db8::/32",
		"::ffff:10.0.0.1":     "10.0.0.1/32",
		"::ffff:10.0.0.0/104": "10.0.0.0/8",
	} {
		got, err := ParseTrustedProxy(in)
		if err != nil || got != netip.MustParsePrefix(want) {
			t.Errorf("ParseTrustedProxy(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "10.0.0.0/33", "fe80::1%eth0", "lb.internal", "10.0.0.0/8/8"} {
		if _, err := ParseTrustedProxy(in); err == nil {
			t.Errorf("ParseTrustedProxy(%q): no error", in)
		}
	}
}
