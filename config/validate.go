package config

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// maxPushTTL is the longest time APNs and FCM keep a push: 28 days.
const maxPushTTL = Duration(28 * 24 * time.Hour)

// maxCoalesceMaxHeld is the most events dispatcher.coalesce_max_held lets
// one process hold for coalescing.
const maxCoalesceMaxHeld = 100000

// minDuplicateWindow is the shortest nats.duplicate_window: longer than a
// relay sweep's period and grace together, with room to spare.
const minDuplicateWindow = Duration(30 * time.Second)

// Validate reports every problem with c at once, joined with errors.Join.
// Each error names the full yaml key, says what is wrong and what is allowed:
//
//	config: dispatcher.ack_wait: must be at least 1s, got 500ms
//
// Validate reads no files: Load and Parse have already turned *_file
// settings into their secrets.
func (c *Config) Validate() error {
	var errs []error
	root := section{errs: &errs}
	root.oneOf("role", c.Role, RoleWorker, RoleAPI, RoleAll, RoleDev)
	c.Log.validate(root.sub("log"))
	c.HTTP.validate(root.sub("http"))
	c.Redis.validate(root.sub("redis"))
	c.NATS.validate(root.sub("nats"))
	c.Dispatcher.validate(root.sub("dispatcher"))
	c.APNs.validate(root.sub("apns"))
	c.FCM.validate(root.sub("fcm"))
	c.API.validate(root.sub("api"))
	c.Secrets.validate(root.sub("secrets"))
	c.Dev.validate(root.sub("dev"))
	if (c.Role == RoleAPI || c.Role == RoleAll || c.Role == RoleDev) && sameListener(c.HTTP.Listen, c.API.Listen) {
		root.sub("api").errorf("listen", "must not be the port of http.listen (%q): role %s serves the API and /healthz, /readyz and /metrics on two listeners, got %q", c.HTTP.Listen, c.Role, c.API.Listen)
	}
	if ttl := c.Dispatcher.PushTTL; ttl > 0 && ttl <= maxPushTTL && c.NATS.MaxAge > 0 && c.NATS.MaxAge < ttl {
		root.sub("nats").errorf("max_age", "must be at least dispatcher.push_ttl (%s): the stream would delete events still to be pushed, got %s", ttl, c.NATS.MaxAge)
	}
	// NATS refuses a dead-letter stream whose duplicate window outlasts
	// its max age: no dead letter could be stored.
	if age, window := c.NATS.DeadLetterMaxAge, Duration(c.DeadLetterWindow()); age >= Duration(time.Hour) && age <= Duration(maxDeadLetterMaxAge) && age < window {
		root.sub("nats").errorf("dead_letter_max_age", "must be at least the dead-letter stream's duplicate window, dispatcher.max_retry_delay + dispatcher.ack_wait + 1m (%s), got %s", window, age)
	}
	return errors.Join(errs...)
}

// maxDeadLetterMaxAge is the longest nats.dead_letter_max_age, a year.
const maxDeadLetterMaxAge = 365 * 24 * time.Hour

func (c *APIConfig) validate(s section) {
	s.hostPort("listen", c.Listen, ":8081", true)
	for i, r := range c.Regions {
		if r == "" || strings.IndexFunc(r, func(ch rune) bool { return !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-') }) >= 0 {
			s.errorf(fmt.Sprintf("regions[%d]", i), "must be a region name such as us-east-1, got %q", r)
		}
	}
	// The skew allowed is also how long a captured request can be
	// replayed: AWS allows 5 minutes, a machine's clock may be further off
	// than that, but not by hours.
	if c.MaxClockSkew < Duration(time.Second) || c.MaxClockSkew > Duration(15*time.Minute) {
		s.errorf("max_clock_skew", "must be from 1s to 15m (it is also how long a captured request can be replayed), got %s", c.MaxClockSkew)
	}
	s.intRange("max_body_bytes", c.MaxBodyBytes, 1024, 16<<20)
	s.intRange("max_tombstones", c.MaxTombstones, 1024, 1<<20)
	s.intRange("max_deleted_datasets", c.MaxDeletedDatasets, 20, 10000)
	if (c.DeveloperAccessKeyID == "") != (c.DeveloperSecretAccessKey == "") {
		s.errorf("developer_access_key_id", "and %s must be set together", s.key("developer_secret_access_key"))
	}
	if id := c.DeveloperAccessKeyID; id != "" && (len(id) < 16 || len(id) > 128 || strings.IndexFunc(id, func(ch rune) bool { return !(ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9') }) >= 0) {
		s.errorf("developer_access_key_id", "must be 16 to 128 upper-case letters and digits, like an AWS access key id")
	}
	if sec := c.DeveloperSecretAccessKey; sec != "" && len(sec) < 16 {
		s.secretErrorf("developer_secret_access_key", c.DeveloperSecretAccessKeyFile, "must be at least 16 characters")
	}
	if len(c.CORSAllowedOrigins) == 0 {
		s.errorf("cors_allowed_origins", `must list at least one origin, or "*"`)
	}
	for i, o := range c.CORSAllowedOrigins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" {
			s.errorf(fmt.Sprintf("cors_allowed_origins[%d]", i), `must be "*" or an origin such as https://app.example.com, got %q`, o)
		}
	}
	if c.IdentityCredentialTTL < Duration(time.Minute) || c.IdentityCredentialTTL > Duration(12*time.Hour) {
		s.errorf("identity_credential_ttl", "must be from 1m to 12h, got %s", c.IdentityCredentialTTL)
	}
	if c.IdentityPoolCacheTTL < 0 || c.IdentityPoolCacheTTL > Duration(time.Minute) {
		s.errorf("identity_pool_cache_ttl", "must be from 0s to 1m, got %s", c.IdentityPoolCacheTTL)
	}
	s.intRange("identity_rate_limit", c.IdentityRateLimit, 0, 100000)
	s.intRange("identity_rate_burst", c.IdentityRateBurst, 1, 100000)
	for i, p := range c.TrustedProxies {
		if _, err := ParseTrustedProxy(p); err != nil {
			s.errorf(fmt.Sprintf("trusted_proxies[%d]", i), "must be a CIDR such as 10.0.0.0/8 or an IP address, got %q", p)
		}
	}
	if r := c.ARNRegion; r == "" || strings.IndexFunc(r, func(ch rune) bool { return !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9' || ch == '-') }) >= 0 {
		s.errorf("arn_region", "must be a region name such as us-east-1, got %q", r)
	}
	if a := c.ARNAccount; len(a) != 12 || strings.IndexFunc(a, func(ch rune) bool { return ch < '0' || ch > '9' }) >= 0 {
		s.errorf("arn_account", "must be 12 digits, got %q", a)
	}
}

func (c *SecretsConfig) validate(s section) {
	const howTo = "must be 32 bytes in standard base64 (make one with: openssl rand -base64 32)"
	if c.MasterKey != "" && decodeKey(c.MasterKey) == nil {
		s.secretErrorf("master_key", c.MasterKeyFile, howTo)
	}
	if c.SecondaryMasterKey == "" {
		return
	}
	switch prev := decodeKey(c.SecondaryMasterKey); {
	case prev == nil:
		s.secretErrorf("secondary_master_key", c.SecondaryMasterKeyFile, howTo)
	case c.MasterKey == "":
		s.errorf("secondary_master_key", "is set but %s is not; a rotation sets both (docs/deploy.md, \"Rotating the master key\")", s.key("master_key"))
	case bytes.Equal(prev, decodeKey(c.MasterKey)):
		s.secretErrorf("secondary_master_key", c.SecondaryMasterKeyFile, "is the same key as %s", s.key("master_key"))
	}
}

// ParseTrustedProxy parses an api.trusted_proxies item: a CIDR, or an IP
// address standing for itself alone.
func ParseTrustedProxy(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
	}
	return p.Masked(), nil
}

// sameListener reports whether the listen addresses a and b would take the
// same port: one port (not 0, which picks a free one) on the same host or
// on every interface.
func sameListener(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa != pb || pa == "0" {
		return false
	}
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wildcard(ha) || wildcard(hb)
}

// decodeKey returns a master key's 32 bytes, or nil if k is not one.
func decodeKey(k Secret) []byte {
	key, err := base64.StdEncoding.DecodeString(string(k))
	if err != nil || len(key) != 32 {
		return nil
	}
	return key
}

// MasterKeyBytes returns the decoded master key, or nil if none is set.
// Call it on a validated configuration.
func (c *SecretsConfig) MasterKeyBytes() []byte { return decodeKey(c.MasterKey) }

// SecondaryMasterKeyBytes returns the decoded previous master key, or nil if
// none is set. Call it on a validated configuration.
func (c *SecretsConfig) SecondaryMasterKeyBytes() []byte { return decodeKey(c.SecondaryMasterKey) }

func (c *LogConfig) validate(s section) {
	s.oneOf("level", c.Level, "debug", "info", "warn", "error")
	s.oneOf("format", c.Format, "json", "console")
}

func (c *HTTPConfig) validate(s section) {
	s.hostPort("listen", c.Listen, ":8080", true)
	s.nonNegative("shutdown_timeout", c.ShutdownTimeout)
}

func (c *RedisConfig) validate(s section) {
	if len(c.Addrs) == 0 {
		s.errorf("addrs", "must list at least one host:port address")
	}
	for i, addr := range c.Addrs {
		s.hostPort(fmt.Sprintf("addrs[%d]", i), addr, "127.0.0.1:6379", false)
	}
	s.intRange("db", c.DB, 0, 15)
	if c.DB != 0 && len(c.Addrs) > 1 && c.MasterName == "" {
		s.errorf("db", "must be 0 when %s lists several addresses (Redis Cluster has only database 0), got %d", s.key("addrs"), c.DB)
	}
	switch {
	case c.KeyPrefix == "":
		s.errorf("key_prefix", "must not be empty")
	case strings.ContainsFunc(c.KeyPrefix, func(r rune) bool { return unicode.IsSpace(r) || r == '{' || r == '}' }):
		s.errorf("key_prefix", "must not contain whitespace, '{' or '}', got %q", c.KeyPrefix)
	}
	s.positive("dial_timeout", c.DialTimeout)
	s.positive("read_timeout", c.ReadTimeout)
	s.positive("write_timeout", c.WriteTimeout)
	if c.PoolSize < 0 {
		s.errorf("pool_size", "must not be negative (0 means the client default), got %d", c.PoolSize)
	}
	if c.TLS.CAFile != "" && !c.TLS.Enabled {
		s.errorf("tls.ca_file", "is set but %s is not; set %s: true to connect with TLS", s.key("tls.enabled"), s.key("tls.enabled"))
	}
}

func (c *NATSConfig) validate(s section) {
	if strings.TrimSpace(c.URL) == "" {
		s.errorf("url", "must not be empty")
	} else {
		for u := range strings.SplitSeq(c.URL, ",") {
			if !validNATSURL(strings.TrimSpace(u)) {
				s.errorf("url", "%q is not a server URL with scheme nats, tls, ws or wss and a host, e.g. nats://127.0.0.1:4222", redactURL(strings.TrimSpace(u)))
			}
		}
	}
	c.validateAuth(s)
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		s.errorf("tls.cert_file", "and %s must be set together", s.key("tls.key_file"))
	}
	s.jetStreamName("stream", c.Stream)
	if !validSubjectPrefix(c.SubjectPrefix) {
		s.errorf("subject_prefix", "must be dot-separated tokens, none empty, without wildcards (* >) or whitespace, e.g. pushsync.events, got %q", c.SubjectPrefix)
	}
	if !validSubjectPrefix(c.DeviceSubjectPrefix) {
		s.errorf("device_subject_prefix", "must be dot-separated tokens, none empty, without wildcards (* >) or whitespace, e.g. pushsync.devices, got %q", c.DeviceSubjectPrefix)
	} else if a, b := c.SubjectPrefix+".", c.DeviceSubjectPrefix+"."; strings.HasPrefix(a, b) || strings.HasPrefix(b, a) {
		s.errorf("device_subject_prefix", "must not overlap %s (%q), got %q", s.key("subject_prefix"), c.SubjectPrefix, c.DeviceSubjectPrefix)
	}
	s.jetStreamName("dead_letter_stream", c.DeadLetterStream)
	if c.DeadLetterMaxAge < Duration(time.Hour) || c.DeadLetterMaxAge > Duration(maxDeadLetterMaxAge) {
		s.errorf("dead_letter_max_age", "must be from 1h to 8760h, got %s", c.DeadLetterMaxAge)
	}
	if c.DeadLetterStream == c.Stream {
		s.errorf("dead_letter_stream", "must differ from %s (%q)", s.key("stream"), c.Stream)
	}
	if !validSubjectPrefix(c.DeadLetterSubjectPrefix) {
		s.errorf("dead_letter_subject_prefix", "must be dot-separated tokens, none empty, without wildcards (* >) or whitespace, e.g. pushsync.deadletters, got %q", c.DeadLetterSubjectPrefix)
	} else {
		for _, other := range []struct{ key, value string }{{"subject_prefix", c.SubjectPrefix}, {"device_subject_prefix", c.DeviceSubjectPrefix}} {
			if a, b := other.value+".", c.DeadLetterSubjectPrefix+"."; strings.HasPrefix(a, b) || strings.HasPrefix(b, a) {
				s.errorf("dead_letter_subject_prefix", "must not overlap %s (%q), got %q", s.key(other.key), other.value, c.DeadLetterSubjectPrefix)
			}
		}
	}
	s.intRange("replicas", c.Replicas, 1, 5)
	s.oneOf("storage", c.Storage, "file", "memory")
	switch {
	case c.MaxAge < 0:
		s.errorf("max_age", "must be 0s (derived) or more, got %s", c.MaxAge)
	case c.MaxAge > 0 && c.MaxAge < c.DuplicateWindow:
		s.errorf("max_age", "must be at least %s (%s), got %s", s.key("duplicate_window"), c.DuplicateWindow, c.MaxAge)
	}
	if c.DuplicateWindow < minDuplicateWindow {
		// A publish that went unanswered is made again within seconds,
		// by the request or by the relay's sweep, with the same id: the
		// stream must still know it, or it stores the event twice.
		s.errorf("duplicate_window", "must be at least %s, as changes whose publish went unanswered are published again within seconds, got %s", minDuplicateWindow, c.DuplicateWindow)
	}
	s.positive("connect_timeout", c.ConnectTimeout)
}

// validateAuth checks that at most one way to authenticate is set, since
// the client uses only one: a credentials file, a token, or a user and
// password.
func (c *NATSConfig) validateAuth(s section) {
	token, password := "token", "password"
	if c.TokenFile != "" {
		token = "token_file"
	}
	if c.PasswordFile != "" {
		password = "password_file"
	}
	if c.Password != "" && c.User == "" {
		s.errorf(password, "is set but %s is not; user and password authentication needs both", s.key("user"))
	}
	var set []string
	for _, m := range []struct {
		key string
		on  bool
	}{{"creds_file", c.CredsFile != ""}, {token, c.Token != ""}, {"user", c.User != ""}} {
		if m.on {
			set = append(set, s.key(m.key))
		}
	}
	if len(set) > 1 {
		both := "both"
		if len(set) > 2 {
			both = "all"
		}
		*s.errs = append(*s.errs, fmt.Errorf("config: %s and %s are %s set; NATS takes one way to authenticate: creds_file, token (or token_file), or user and password",
			strings.Join(set[:len(set)-1], ", "), set[len(set)-1], both))
	}
}

func (c *DispatcherConfig) validate(s section) {
	s.jetStreamName("consumer", c.Consumer)
	if minAckWait := Duration(time.Second); c.AckWait < minAckWait {
		s.errorf("ack_wait", "must be at least %s, got %s", minAckWait, c.AckWait)
	}
	if c.MaxDeliver != -1 && c.MaxDeliver < 1 {
		s.errorf("max_deliver", "must be -1 (unlimited) or at least 1, got %d", c.MaxDeliver)
	}
	if c.MaxAckPending < 1 {
		s.errorf("max_ack_pending", "must be at least 1, got %d", c.MaxAckPending)
	}
	s.intRange("workers", c.Workers, 1, 10000)
	s.intRange("max_concurrent_sends", c.MaxConcurrentSends, 1, 100000)
	switch {
	case c.SendTimeout <= 0:
		s.positive("send_timeout", c.SendTimeout)
	case c.SendTimeout >= c.AckWait:
		s.errorf("send_timeout", "must be less than %s (%s), got %s", s.key("ack_wait"), c.AckWait, c.SendTimeout)
	}
	if c.PushTTL < 0 || c.PushTTL > maxPushTTL {
		s.errorf("push_ttl", "must be between 0s and %s (28 days), got %s", maxPushTTL, c.PushTTL)
	}
	if c.DeviceBudget < 0 {
		s.errorf("device_budget", "must be 0 (no budget) or more, got %d", c.DeviceBudget)
	}
	if c.DeviceBudgetWindow < Duration(time.Second) {
		s.errorf("device_budget_window", "must be at least 1s, got %s", c.DeviceBudgetWindow)
	}
	if c.CoalesceWindow < 0 || 2*c.CoalesceWindow >= c.AckWait {
		s.errorf("coalesce_window", "must be from 0s to less than half of %s (%s), got %s", s.key("ack_wait"), c.AckWait, c.CoalesceWindow)
	}
	if held := c.CoalesceMaxHeld; held != 0 && (held < 2*c.Workers || held > maxCoalesceMaxHeld) {
		s.errorf("coalesce_max_held", "must be 0 (4 × %s) or from 2 × %s (%d) to %d, got %d", s.key("workers"), s.key("workers"), 2*c.Workers, maxCoalesceMaxHeld, held)
	}
	if c.RetryBudget < 0 || c.RetryBudget >= c.AckWait {
		s.errorf("retry_budget", "must be from 0s to less than %s (%s), got %s", s.key("ack_wait"), c.AckWait, c.RetryBudget)
	}
	s.positive("retry_delay", c.RetryDelay)
	if c.MaxRetryDelay < c.RetryDelay {
		s.errorf("max_retry_delay", "must be at least %s (%s), got %s", s.key("retry_delay"), c.RetryDelay, c.MaxRetryDelay)
	}
	s.nonNegative("app_cache_ttl", c.AppCacheTTL)
}

func (c *APNsConfig) validate(s section) {
	s.baseURL("production_host", c.ProductionHost, false, "https://api.push.apple.com")
	s.baseURL("sandbox_host", c.SandboxHost, false, "https://api.sandbox.push.apple.com")
}

func (c *FCMConfig) validate(s section) {
	s.baseURL("endpoint", c.Endpoint, true, "https://fcm.googleapis.com/v1")
}

func (c *DevConfig) validate(s section) {
	s.hostPort("redis_addr", c.RedisAddr, "127.0.0.1:6379", false)
	s.positive("sample_interval", c.SampleInterval)
	s.intRange("devices", c.Devices, 2, 1000)
}

// A section collects the problems of one part of the configuration, naming
// each by its full key.
type section struct {
	prefix string
	errs   *[]error
}

// sub returns the section for the nested key name.
func (s section) sub(name string) section {
	return section{prefix: s.key(name) + ".", errs: s.errs}
}

// key returns the full key of name in s.
func (s section) key(name string) string { return s.prefix + name }

// errorf records a problem with the setting name.
func (s section) errorf(name, format string, args ...any) {
	*s.errs = append(*s.errs, fmt.Errorf("config: %s: %s", s.key(name), fmt.Sprintf(format, args...)))
}

// secretErrorf records a problem with the secret setting name. A secret
// read from the file its name_file setting names is reported under that
// setting, with the file's path, since the file is where it is to be
// fixed.
func (s section) secretErrorf(name, file, format string, args ...any) {
	if file != "" {
		s.errorf(name+"_file", "%s: the secret it holds %s", file, fmt.Sprintf(format, args...))
		return
	}
	s.errorf(name, format, args...)
}

func (s section) oneOf(name, got string, allowed ...string) {
	for _, a := range allowed {
		if got == a {
			return
		}
	}
	list := strings.Join(allowed[:len(allowed)-1], ", ") + " or " + allowed[len(allowed)-1]
	s.errorf(name, "must be %s, got %q", list, got)
}

func (s section) intRange(name string, got, lo, hi int) {
	if got < lo || got > hi {
		s.errorf(name, "must be between %d and %d, got %d", lo, hi, got)
	}
}

func (s section) positive(name string, got Duration) {
	if got <= 0 {
		s.errorf(name, "must be greater than 0, got %s", got)
	}
}

func (s section) nonNegative(name string, got Duration) {
	if got < 0 {
		s.errorf(name, "must not be negative, got %s", got)
	}
}

// hostPort checks that got is host:port with a port; the host may be empty.
// A port given as a number must be one: 1 to 65535, or 0 (any free port)
// for an address to listen on. A name (http) is left to the resolver.
func (s section) hostPort(name, got, example string, listen bool) {
	host, port, err := net.SplitHostPort(got)
	if err != nil || port == "" {
		s.errorf(name, "must be host:port, e.g. %s, got %q", example, redactURL(got))
		return
	}
	if strings.Contains(host, "@") {
		// user:password@host: a credential where an address goes, which
		// would be logged with it. (redactURL hides it.)
		s.errorf(name, "must be host:port without a user or password (set those in their own keys), e.g. %s, got %q", example, redactURL(got))
		return
	}
	lo := 1
	if listen {
		lo = 0
	}
	if n, err := strconv.ParseInt(port, 10, 64); (err == nil || errors.Is(err, strconv.ErrRange)) && (n < int64(lo) || n > 65535) {
		s.errorf(name, "must have a port from %d to 65535, e.g. %s, got %q", lo, example, redactURL(got))
	}
}

// baseURL checks that got is an absolute http or https URL with a host and no
// query or fragment, and without a path unless withPath.
func (s section) baseURL(name, got string, withPath bool, example string) {
	u, err := url.Parse(got)
	ok := err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" &&
		u.User == nil && u.RawQuery == "" && !u.ForceQuery && u.Fragment == "" && u.Opaque == ""
	if ok && !withPath && u.Path != "" && u.Path != "/" {
		s.errorf(name, "must be an absolute https or http URL without a path, e.g. %s, got %q", example, redactURL(got))
		return
	}
	if !ok {
		s.errorf(name, "must be an absolute https or http URL, e.g. %s, got %q", example, redactURL(got))
	}
}

// redactURL returns the URL or address s as an error may quote it: what
// stands before an '@' in its authority (a user name and password, or a
// token, as in nats://user:password@host:4222) and its query (an API key)
// become "redacted", so that a mistyped setting does not put a credential
// into the log of whatever runs the process.
func redactURL(s string) string {
	scheme, rest := "", s
	if i := strings.Index(s, "://"); i >= 0 {
		scheme, rest = s[:i+3], s[i+3:]
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
		rest = "redacted@" + rest[at+1:]
	}
	if q := strings.Index(rest, "?"); q >= 0 {
		rest = rest[:q+1] + "redacted"
	}
	return scheme + rest
}

// jetStreamName checks got against the rules for stream and consumer names.
func (s section) jetStreamName(name, got string) {
	switch {
	case got == "":
		s.errorf(name, "must not be empty")
	case strings.ContainsFunc(got, func(r rune) bool { return unicode.IsSpace(r) || strings.ContainsRune(`.*>/\`, r) }):
		s.errorf(name, `must not contain whitespace or any of . * > / \, got %q`, got)
	}
}

// validNATSURL reports whether u is a NATS server URL pushsync accepts.
func validNATSURL(u string) bool {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return false
	}
	switch p.Scheme {
	case "nats", "tls", "ws", "wss":
		return true
	}
	return false
}

// validSubjectPrefix reports whether p is a literal NATS subject: tokens
// separated by dots, none empty, without wildcards or whitespace.
func validSubjectPrefix(p string) bool {
	for tok := range strings.SplitSeq(p, ".") {
		if tok == "" || strings.ContainsFunc(tok, func(r rune) bool { return unicode.IsSpace(r) || r == '*' || r == '>' }) {
			return false
		}
	}
	return true
}
