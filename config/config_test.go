package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// validFixtures maps each testdata/valid_*.yaml file to the change it makes
// to Default().
var validFixtures = map[string]func(c *Config){
	"valid_empty.yaml":   func(c *Config) {},
	"valid_minimal.yaml": func(c *Config) {},
	"valid_dev.yaml": func(c *Config) {
		c.Role = RoleDev
		c.Log = LogConfig{Level: "debug", Format: "console"}
		c.Dev = DevConfig{RedisAddr: "localhost:6390", SampleInterval: Duration(time.Second), Devices: 2}
	},
	"valid_cluster.yaml": func(c *Config) {
		c.Redis.Addrs = []string{"redis-0.redis:6379", "redis-1.redis:6379", "redis-2.redis:6379"}
		c.Redis.KeyPrefix = "ps"
	},
	"valid_sentinel.yaml": func(c *Config) {
		c.Redis.MasterName = "mymaster"
		c.Redis.Addrs = []string{"sentinel-0:26379", "sentinel-1:26379", "sentinel-2:26379"}
		c.Redis.DB = 2
	},
	"valid_secrets_from_file.yaml": func(c *Config) {
		c.Redis.Username = "pushsync"
		c.Redis.Password = "s3cret-redis-pw"
		c.Redis.PasswordFile = filepath.Join("testdata", "secret_redis_password.txt")
		c.NATS.User = "pushsync"
		c.NATS.Password = "nats-pw-value"
		c.NATS.PasswordFile = filepath.Join("testdata", "secret_nats_password.txt")
	},
	"valid_nats_token_from_file.yaml": func(c *Config) {
		c.NATS.Token = "nats-token-value"
		c.NATS.TokenFile = filepath.Join("testdata", "secret_nats_token.txt")
	},
	"valid_nats_creds.yaml": func(c *Config) {
		c.NATS.CredsFile = "/etc/pushsync/nats.creds"
		c.Redis.TLS.Enabled = true
	},
	"valid_zero_values.yaml": func(c *Config) {
		c.HTTP.ShutdownTimeout = 0
		c.Dispatcher.MaxDeliver = -1
		c.Dispatcher.PushTTL = 0
		c.Dispatcher.AppCacheTTL = 0
		c.API.IdentityPoolCacheTTL = 0
	},
	"valid_full.yaml": func(c *Config) {
		*c = Config{
			Role: RoleDev,
			Log:  LogConfig{Level: "warn", Format: "console"},
			HTTP: HTTPConfig{Listen: "127.0.0.1:9090", ShutdownTimeout: Duration(45 * time.Second)},
			Redis: RedisConfig{
				Addrs:        []string{"10.0.0.1:6380"},
				Username:     "app",
				Password:     "redis-inline-secret",
				DB:           3,
				KeyPrefix:    "ps-prod",
				DialTimeout:  Duration(6 * time.Second),
				ReadTimeout:  Duration(4 * time.Second),
				WriteTimeout: Duration(4500 * time.Millisecond),
				PoolSize:     50,
				TLS:          RedisTLSConfig{Enabled: true, CAFile: "/etc/pushsync/redis-ca.pem"},
			},
			NATS: NATSConfig{
				URL:                     "tls://n1.example:4222, tls://n2.example:4222",
				User:                    "app",
				Password:                "nats-inline-password",
				Stream:                  "EVENTS_V2",
				SubjectPrefix:           "acme.pushsync.events",
				DeviceSubjectPrefix:     "acme.pushsync.devices",
				DeadLetterStream:        "DEAD_V2",
				DeadLetterSubjectPrefix: "acme.pushsync.dead",
				DeadLetterMaxAge:        Duration(90 * 24 * time.Hour),
				Replicas:                3,
				Storage:                 "memory",
				MaxAge:                  Duration(72 * time.Hour),
				DuplicateWindow:         Duration(5 * time.Minute),
				ConnectTimeout:          Duration(10 * time.Second),
			},
			Dispatcher: DispatcherConfig{
				Consumer:           "dispatcher_v2",
				AckWait:            Duration(time.Minute),
				MaxDeliver:         10,
				MaxAckPending:      500,
				Workers:            128,
				MaxConcurrentSends: 1024,
				SendTimeout:        Duration(15 * time.Second),
				PushTTL:            Duration(24 * time.Hour),
				RetryDelay:         Duration(time.Second),
				MaxRetryDelay:      Duration(10 * time.Minute),
				AppCacheTTL:        Duration(90 * time.Second),
				RetryBudget:        Duration(5 * time.Second),
				CoalesceWindow:     Duration(2 * time.Second),
				CoalesceMaxHeld:    1000,
				DeviceBudget:       3,
				DeviceBudgetWindow: Duration(30 * time.Minute),
			},
			APNs: APNsConfig{
				ProductionHost: "https://apns.example:8443",
				SandboxHost:    "http://127.0.0.1:8444/",
				RootCAFile:     filepath.Join("testdata", "emu-ca.pem"),
			},
			FCM: FCMConfig{Endpoint: "http://127.0.0.1:8445/v1", RootCAFile: "/etc/pushsync/fcm-ca.pem"},
			API: APIConfig{
				Listen: "127.0.0.1:9443", Regions: []string{"us-east-1", "eu-west-1"}, MaxClockSkew: Duration(2 * time.Minute),
				MaxBodyBytes: 1 << 20, MaxTombstones: 8192, MaxDeletedDatasets: 200, DeveloperAccessKeyID: "AKIAPUSHSYNCDEV0001", DeveloperSecretAccessKey: "developer-inline-secret",
				CORSAllowedOrigins: []string{"https://app.example.com"}, IdentityCredentialTTL: Duration(30 * time.Minute),
				IdentityPoolCacheTTL: Duration(2 * time.Second), IdentityRateLimit: 20, IdentityRateBurst: 100, TrustedProxies: []string{"10.0.0.0/8", "192.0.2.7"},
				ARNRegion: "eu-west-1", ARNAccount: "123456789012",
			},
			Secrets: SecretsConfig{MasterKey: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", SecondaryMasterKey: "HxwdHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA="},
			Dev:     DevConfig{RedisAddr: "127.0.0.1:6391", SampleInterval: Duration(250 * time.Millisecond), Devices: 1000},
		}
	},
}

// invalidFixtures maps each testdata/invalid_*.yaml file to its exact error,
// or, where the YAML library words it, a part of it (substr).
var invalidFixtures = map[string]struct {
	want   string
	substr bool
}{
	"invalid_unknown_key_top.yaml":       {want: "config: testdata/invalid_unknown_key_top.yaml:2: rol: unknown key; did you mean role?"},
	"invalid_unknown_key_nested.yaml":    {want: "config: testdata/invalid_unknown_key_nested.yaml:2: redis.adress: unknown key; did you mean redis.addrs?"},
	"invalid_unknown_key_deep.yaml":      {want: "config: testdata/invalid_unknown_key_deep.yaml:4: redis.tls.cafile: unknown key; did you mean redis.tls.ca_file?"},
	"invalid_unknown_key_no_match.yaml":  {want: "config: testdata/invalid_unknown_key_no_match.yaml:3: log.colour: unknown key; log has level, format"},
	"invalid_unknown_key_misplaced.yaml": {want: "config: testdata/invalid_unknown_key_misplaced.yaml:3: ack_wait: unknown key; did you mean dispatcher.ack_wait?"},
	"invalid_unknown_key_dotted.yaml":    {want: "config: testdata/invalid_unknown_key_dotted.yaml:2: dispatcher.ack_wait: unknown key; YAML does not read a dotted key as nested keys: write dispatcher: with ack_wait: indented under it"},
	"invalid_unknown_key_merged.yaml":    {want: "config: testdata/invalid_unknown_key_merged.yaml:2: log.colour: unknown key; log has level, format"},
	"invalid_unknown_section.yaml":       {want: "config: testdata/invalid_unknown_section.yaml:1: dispacher: unknown key; did you mean dispatcher?"},
	"invalid_duplicate_key.yaml":         {want: "config: testdata/invalid_duplicate_key.yaml:3: log.level: given twice; the first is at line 2"},
	"invalid_syntax.yaml":                {want: "config: testdata/invalid_syntax.yaml:3: invalid YAML: did not find expected key", substr: true},
	// The YAML library says "found character that cannot start any token",
	// or names the line before the tab, without saying that YAML takes no tabs.
	"invalid_tab_indent.yaml":             {want: "config: testdata/invalid_tab_indent.yaml:3: invalid YAML: indented with a tab; YAML indents with spaces only"},
	"invalid_tab_indent_after_value.yaml": {want: "config: testdata/invalid_tab_indent_after_value.yaml:3: invalid YAML: indented with a tab; YAML indents with spaces only"},
	"invalid_two_documents.yaml":          {want: "config: testdata/invalid_two_documents.yaml:2: a second YAML document; the file must hold exactly one"},
	"invalid_not_a_mapping.yaml":          {want: "config: testdata/invalid_not_a_mapping.yaml:1: the settings must be a mapping of keys to values, such as role: worker, got a list"},
	"invalid_wrong_type_int.yaml":         {want: "config: testdata/invalid_wrong_type_int.yaml:2: redis.db: must be an integer, got \"one\""},
	"invalid_wrong_type_bool.yaml":        {want: "config: testdata/invalid_wrong_type_bool.yaml:3: redis.tls.enabled: must be true or false, got \"sometimes\""},
	"invalid_wrong_type_list.yaml":        {want: `config: testdata/invalid_wrong_type_list.yaml:2: redis.addrs: must be a list of host:port, got a string ("127.0.0.1:6379"); write [127.0.0.1:6379]`},
	"invalid_wrong_type_section.yaml":     {want: `config: testdata/invalid_wrong_type_section.yaml:1: dispatcher: must be a mapping of settings, got "5"`},
	"invalid_wrong_type_int_unit.yaml":    {want: `config: testdata/invalid_wrong_type_int_unit.yaml:2: api.max_body_bytes: must be an integer, got "2MB"`},
	// The YAML library would store 1 and -1 (unlimited deliveries), dropping
	// the fraction without a word.
	"invalid_wrong_type_int_fraction.yaml":          {want: `config: testdata/invalid_wrong_type_int_fraction.yaml:2: dispatcher.workers: must be an integer, got "1.5"`},
	"invalid_wrong_type_int_negative_fraction.yaml": {want: `config: testdata/invalid_wrong_type_int_negative_fraction.yaml:2: dispatcher.max_deliver: must be an integer, got "-1.9"`},
	"invalid_wrong_type_mapping.yaml":               {want: "config: testdata/invalid_wrong_type_mapping.yaml:2: http.listen: must be a string, got a mapping"},
	"invalid_wrong_type_list_item.yaml":             {want: "config: testdata/invalid_wrong_type_list_item.yaml:4: redis.addrs[1]: must be a string, got a mapping"},
	"invalid_wrong_type_list_commas.yaml":           {want: `config: testdata/invalid_wrong_type_list_commas.yaml:2: api.regions: must be a list of region names, got a string ("us-east-1, eu-west-1"); write [us-east-1, eu-west-1]`},
	"invalid_several.yaml": {want: "config: testdata/invalid_several.yaml:2: log.level: must be a string, got a list\n" +
		"config: testdata/invalid_several.yaml:4: log.colour: unknown key; log has level, format"},
	"invalid_bare_duration.yaml":    {want: `config: testdata/invalid_bare_duration.yaml:2: dispatcher.ack_wait: invalid duration "30": use a unit, e.g. 30s`},
	"invalid_bad_duration.yaml":     {want: `config: testdata/invalid_bad_duration.yaml:2: nats.max_age: invalid duration "7days"`},
	"invalid_duration_mapping.yaml": {want: "config: testdata/invalid_duration_mapping.yaml:2: http.shutdown_timeout: must be a duration such as 30s, got a mapping"},

	"invalid_role.yaml":                             {want: `config: role: must be worker, api, all or dev, got "both"`},
	"invalid_role_all.yaml":                         {want: `config: role: must be worker, api, all or dev, got "All"`},
	"invalid_api_credentials_half.yaml":             {want: `config: api.developer_access_key_id: and api.developer_secret_access_key must be set together`},
	"invalid_api_cors_origin.yaml":                  {want: `config: api.cors_allowed_origins[0]: must be "*" or an origin such as https://app.example.com, got "app.example.com"`},
	"invalid_api_credential_ttl.yaml":               {want: `config: api.identity_credential_ttl: must be from 1m to 12h, got 24h0m0s`},
	"invalid_api_pool_cache_ttl.yaml":               {want: `config: api.identity_pool_cache_ttl: must be from 0s to 1m, got 5m0s`},
	"invalid_api_clock_skew_long.yaml":              {want: `config: api.max_clock_skew: must be from 1s to 15m (it is also how long a captured request can be replayed), got 1h0m0s`},
	"invalid_secrets_master_key.yaml":               {want: `config: secrets.master_key: must be 32 bytes in standard base64 (make one with: openssl rand -base64 32)`},
	"invalid_secrets_master_key_file.yaml":          {want: `config: secrets.master_key_file: testdata/secret_master_key_hex.txt: the secret it holds must be 32 bytes in standard base64 (make one with: openssl rand -base64 32)`},
	"invalid_api_developer_secret_file_short.yaml":  {want: `config: api.developer_secret_access_key_file: testdata/secret_developer_short.txt: the secret it holds must be at least 16 characters`},
	"invalid_secrets_secondary_without_master.yaml": {want: `config: secrets.secondary_master_key: is set but secrets.master_key is not; a rotation sets both (docs/deploy.md, "Rotating the master key")`},
	"invalid_secrets_secondary_same.yaml":           {want: `config: secrets.secondary_master_key: is the same key as secrets.master_key`},
	"invalid_secrets_secondary_short.yaml":          {want: `config: secrets.secondary_master_key: must be 32 bytes in standard base64 (make one with: openssl rand -base64 32)`},
	"invalid_log_level.yaml":                        {want: `config: log.level: must be debug, info, warn or error, got "verbose"`},
	"invalid_log_format.yaml":                       {want: `config: log.format: must be json or console, got "text"`},
	"invalid_http_listen.yaml":                      {want: `config: http.listen: must be host:port, e.g. :8080, got "8080"`},
	"invalid_shutdown_timeout_negative.yaml":        {want: "config: http.shutdown_timeout: must not be negative, got -1s"},
	"invalid_listen_same_port.yaml":                 {want: `config: api.listen: must not be the port of http.listen (":8081"): role all serves the API and /healthz, /readyz and /metrics on two listeners, got ":8081"`},
	"invalid_http_listen_port_range.yaml":           {want: `config: http.listen: must have a port from 0 to 65535, e.g. :8080, got ":80800"`},
	"invalid_redis_addr_port_zero.yaml":             {want: `config: redis.addrs[1]: must have a port from 1 to 65535, e.g. 127.0.0.1:6379, got "redis-b:0"`},
	"invalid_redis_addrs_empty.yaml":                {want: "config: redis.addrs: must list at least one host:port address"},
	"invalid_redis_addr_password.yaml":              {want: `config: redis.addrs[0]: must be host:port without a user or password (set those in their own keys), e.g. 127.0.0.1:6379, got "redacted@redis:6379"`},
	"invalid_redis_addr_no_port.yaml":               {want: `config: redis.addrs[1]: must be host:port, e.g. 127.0.0.1:6379, got "redis-b"`},
	"invalid_redis_db_range.yaml":                   {want: "config: redis.db: must be between 0 and 15, got 16"},
	"invalid_redis_db_cluster.yaml":                 {want: "config: redis.db: must be 0 when redis.addrs lists several addresses (Redis Cluster has only database 0), got 1"},
	"invalid_redis_key_prefix_brace.yaml":           {want: `config: redis.key_prefix: must not contain whitespace, '{' or '}', got "push{sync}"`},
	"invalid_redis_key_prefix_empty.yaml":           {want: "config: redis.key_prefix: must not be empty"},
	"invalid_redis_dial_timeout_zero.yaml":          {want: "config: redis.dial_timeout: must be greater than 0, got 0s"},
	"invalid_redis_pool_size_negative.yaml":         {want: "config: redis.pool_size: must not be negative (0 means the client default), got -1"},
	"invalid_nats_url_scheme.yaml":                  {want: `config: nats.url: "http://127.0.0.1:4222" is not a server URL with scheme nats, tls, ws or wss and a host, e.g. nats://127.0.0.1:4222`},
	"invalid_nats_url_list.yaml":                    {want: `config: nats.url: "" is not a server URL with scheme nats, tls, ws or wss and a host, e.g. nats://127.0.0.1:4222`},
	// A setting written as a URL with credentials in it is quoted without them.
	"invalid_nats_url_credentials.yaml":          {want: `config: nats.url: "http://redacted@nats-1:4222" is not a server URL with scheme nats, tls, ws or wss and a host, e.g. nats://127.0.0.1:4222`},
	"invalid_redis_addr_url_credentials.yaml":    {want: `config: redis.addrs[0]: must be host:port, e.g. 127.0.0.1:6379, got "redis://redacted@redis:6379"`},
	"invalid_fcm_endpoint_query.yaml":            {want: `config: fcm.endpoint: must be an absolute https or http URL, e.g. https://fcm.googleapis.com/v1, got "https://fcm.example.com/v1?redacted"`},
	"invalid_nats_stream_dot.yaml":               {want: `config: nats.stream: must not contain whitespace or any of . * > / \, got "pushsync.events"`},
	"invalid_nats_subject_wildcard.yaml":         {want: `config: nats.subject_prefix: must be dot-separated tokens, none empty, without wildcards (* >) or whitespace, e.g. pushsync.events, got "pushsync.*"`},
	"invalid_nats_subject_empty_token.yaml":      {want: `config: nats.subject_prefix: must be dot-separated tokens, none empty, without wildcards (* >) or whitespace, e.g. pushsync.events, got "pushsync..events"`},
	"invalid_nats_replicas.yaml":                 {want: "config: nats.replicas: must be between 1 and 5, got 7"},
	"invalid_nats_storage.yaml":                  {want: `config: nats.storage: must be file or memory, got "disk"`},
	"invalid_nats_tls_cert_without_key.yaml":     {want: "config: nats.tls.cert_file: and nats.tls.key_file must be set together"},
	"invalid_nats_max_age_below_window.yaml":     {want: "config: nats.max_age: must be at least nats.duplicate_window (2m0s), got 1m0s"},
	"invalid_nats_duplicate_window_short.yaml":   {want: "config: nats.duplicate_window: must be at least 30s, as changes whose publish went unanswered are published again within seconds, got 5s"},
	"invalid_nats_max_age_below_push_ttl.yaml":   {want: "config: nats.max_age: must be at least dispatcher.push_ttl (1h0m0s): the stream would delete events still to be pushed, got 30m0s"},
	"invalid_nats_connect_timeout_negative.yaml": {want: "config: nats.connect_timeout: must be greater than 0, got -5s"},
	"invalid_dispatcher_consumer.yaml":           {want: `config: dispatcher.consumer: must not contain whitespace or any of . * > / \, got "push dispatcher"`},
	"invalid_nats_device_prefix_overlap.yaml":    {want: `config: nats.device_subject_prefix: must not overlap nats.subject_prefix ("pushsync.events"), got "pushsync.events.devices"`},
	"invalid_nats_dead_letter_stream_same.yaml":  {want: `config: nats.dead_letter_stream: must differ from nats.stream ("PUSHSYNC_EVENTS")`},
	"invalid_nats_dead_letter_max_age.yaml":      {want: `config: nats.dead_letter_max_age: must be from 1h to 8760h, got 10m0s`},
	"invalid_coalesce_window.yaml":               {want: `config: dispatcher.coalesce_window: must be from 0s to less than half of dispatcher.ack_wait (30s), got 15s`},
	"invalid_coalesce_max_held.yaml":             {want: `config: dispatcher.coalesce_max_held: must be 0 (4 × dispatcher.workers) or from 2 × dispatcher.workers (512) to 100000, got 100`},
	"invalid_ack_wait_short.yaml":                {want: "config: dispatcher.ack_wait: must be at least 1s, got 500ms"},
	"invalid_max_deliver_zero.yaml":              {want: "config: dispatcher.max_deliver: must be -1 (unlimited) or at least 1, got 0"},
	"invalid_max_ack_pending_zero.yaml":          {want: "config: dispatcher.max_ack_pending: must be at least 1, got 0"},
	"invalid_workers_range.yaml":                 {want: "config: dispatcher.workers: must be between 1 and 10000, got 0"},
	"invalid_max_concurrent_sends_range.yaml":    {want: "config: dispatcher.max_concurrent_sends: must be between 1 and 100000, got 100001"},
	"invalid_send_timeout_ge_ack_wait.yaml":      {want: "config: dispatcher.send_timeout: must be less than dispatcher.ack_wait (30s), got 30s"},
	"invalid_push_ttl_too_long.yaml":             {want: "config: dispatcher.push_ttl: must be between 0s and 672h0m0s (28 days), got 700h0m0s"},
	"invalid_retry_delay_zero.yaml":              {want: "config: dispatcher.retry_delay: must be greater than 0, got 0s"},
	"invalid_max_retry_delay_below.yaml":         {want: "config: dispatcher.max_retry_delay: must be at least dispatcher.retry_delay (10s), got 5s"},
	"invalid_app_cache_ttl_negative.yaml":        {want: "config: dispatcher.app_cache_ttl: must not be negative, got -1s"},
	"invalid_apns_host_path.yaml":                {want: `config: apns.production_host: must be an absolute https or http URL without a path, e.g. https://api.push.apple.com, got "https://api.push.apple.com/3/device"`},
	"invalid_apns_host_relative.yaml":            {want: `config: apns.sandbox_host: must be an absolute https or http URL, e.g. https://api.sandbox.push.apple.com, got "api.sandbox.push.apple.com"`},
	"invalid_fcm_endpoint.yaml":                  {want: `config: fcm.endpoint: must be an absolute https or http URL, e.g. https://fcm.googleapis.com/v1, got "ftp://fcm.googleapis.com/v1"`},
	"invalid_dev_devices.yaml":                   {want: "config: dev.devices: must be between 2 and 1000, got 1"},
	"invalid_dev_sample_interval.yaml":           {want: "config: dev.sample_interval: must be greater than 0, got 0s"},
	"invalid_dev_redis_addr.yaml":                {want: `config: dev.redis_addr: must be host:port, e.g. 127.0.0.1:6379, got "localhost"`},
	"invalid_password_and_file.yaml":             {want: "config: redis.password and redis.password_file are both set; set only one"},
	"invalid_nats_creds_and_token.yaml":          {want: "config: nats.creds_file and nats.token are both set; NATS takes one way to authenticate: creds_file, token (or token_file), or user and password"},
	"invalid_nats_token_and_user.yaml":           {want: "config: nats.token_file and nats.user are both set; NATS takes one way to authenticate: creds_file, token (or token_file), or user and password"},
	"invalid_nats_password_without_user.yaml":    {want: "config: nats.password: is set but nats.user is not; user and password authentication needs both"},
	"invalid_redis_tls_ca_without_enabled.yaml":  {want: "config: redis.tls.ca_file: is set but redis.tls.enabled is not; set redis.tls.enabled: true to connect with TLS"},
	"invalid_secret_file_missing.yaml":           {want: "config: nats.token_file: open testdata/no_such_secret.txt: no such file or directory"},
	"invalid_secret_file_empty.yaml":             {want: "config: nats.password_file: testdata/secret_empty.txt: file is empty"},

	// NATS would refuse the stream, whose duplicate window would outlast
	// its max age: no dead letter could be stored.
	"invalid_nats_dead_letter_max_age_window.yaml": {want: `config: nats.dead_letter_max_age: must be at least the dead-letter stream's duplicate window, dispatcher.max_retry_delay + dispatcher.ack_wait + 1m (1h1m30s), got 1h0m0s`},
}

func TestFixturesAllListed(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		_, valid := validFixtures[name]
		_, invalid := invalidFixtures[name]
		if valid == invalid {
			t.Errorf("%s: must be listed in exactly one of validFixtures and invalidFixtures", name)
		}
		if valid != strings.HasPrefix(name, "valid_") {
			t.Errorf("%s: valid fixtures are named valid_*.yaml and invalid ones invalid_*.yaml", name)
		}
	}
	if n := len(validFixtures) + len(invalidFixtures); n != len(files) {
		t.Errorf("the tables list %d fixtures but testdata holds %d", n, len(files))
	}
}

func TestValidFixtures(t *testing.T) {
	for name, edit := range validFixtures {
		t.Run(name, func(t *testing.T) {
			got, err := Load(filepath.Join("testdata", name), nil)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			want := Default()
			edit(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Load =\n%s\nwant\n%s", dump(t, got), dump(t, want))
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
		})
	}
}

func TestInvalidFixtures(t *testing.T) {
	for name, tc := range invalidFixtures {
		t.Run(name, func(t *testing.T) {
			got, err := Load(filepath.Join("testdata", name), nil)
			if err == nil {
				t.Fatalf("Load succeeded, want error %q", tc.want)
			}
			if got != nil {
				t.Errorf("Load returned a Config with its error")
			}
			if tc.substr {
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %q does not contain %q", err, tc.want)
				}
			} else if err.Error() != tc.want {
				t.Errorf("error\n%s\nwant exactly\n%s", err, tc.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	t.Run("no file is the defaults", func(t *testing.T) {
		got, err := Load("", nil)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, Default()) {
			t.Errorf("Load(\"\") =\n%s\nwant Default()", dump(t, got))
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := Load(filepath.Join("testdata", "nonexistent.yaml"), nil)
		want := "config: open testdata/nonexistent.yaml: no such file or directory"
		if err == nil || err.Error() != want {
			t.Errorf("error %v, want %s", err, want)
		}
	})
	t.Run("every problem at once", func(t *testing.T) {
		data := "role: both\nredis:\n  db: 99\ndispatcher:\n  ack_wait: 500ms\n"
		_, err := Parse([]byte(data), []string{"PUSHSYNC_NATS_REPLICAS=x"}, "")
		want := `config: PUSHSYNC_NATS_REPLICAS: invalid integer "x"
config: role: must be worker, api, all or dev, got "both"
config: redis.db: must be between 0 and 15, got 99
config: dispatcher.ack_wait: must be at least 1s, got 500ms
config: dispatcher.send_timeout: must be less than dispatcher.ack_wait (500ms), got 10s
config: dispatcher.retry_budget: must be from 0s to less than dispatcher.ack_wait (500ms), got 2s`
		if err == nil || err.Error() != want {
			t.Errorf("error\n%v\nwant\n%s", err, want)
		}
	})
	t.Run("every type error at once", func(t *testing.T) {
		data := "redis:\n  db: x\n  pool_size: y\n"
		_, err := Parse([]byte(data), nil, "")
		want := "config: line 2: redis.db: must be an integer, got \"x\"\nconfig: line 3: redis.pool_size: must be an integer, got \"y\""
		if err == nil || err.Error() != want {
			t.Errorf("error\n%v\nwant\n%s", err, want)
		}
	})
	t.Run("syntax errors at their line", func(t *testing.T) {
		// The YAML library names no line for the first, and counts its
		// parser's lines from 0, its scanner's from 1.
		for data, want := range map[string]string{
			"@role: api\n":                      "config: line 1: invalid YAML: found character that cannot start any token",
			"role: api\n@log: x\n":              "config: line 2: invalid YAML: found character that cannot start any token",
			"role: api\nlog: [1\n":              "config: line 2: invalid YAML: did not find expected ',' or ']'",
			"role: api\nlog: x\n- y\n":          "config: line 3: invalid YAML: did not find expected key",
			"log:\n  level: info\n format: x\n": "config: line 3: invalid YAML: did not find expected key",
			"role: api\nlog: x\n  level: y\n":   "config: line 3: invalid YAML: mapping values are not allowed in this context",
		} {
			if _, err := Parse([]byte(data), nil, ""); err == nil || err.Error() != want {
				t.Errorf("%q: error %v, want %s", data, err, want)
			}
		}
	})
	t.Run("a tab before the first key", func(t *testing.T) {
		_, err := Parse([]byte("\trole: api\n"), nil, "")
		want := "config: line 1: invalid YAML: indented with a tab; YAML indents with spaces only"
		if err == nil || err.Error() != want {
			t.Errorf("error %v, want %s", err, want)
		}
	})
	t.Run("a tab after a list item's dash", func(t *testing.T) {
		_, err := Parse([]byte("redis:\n  addrs:\n  -\t127.0.0.1:6379\n"), nil, "")
		want := "config: line 3: invalid YAML: indented with a tab; YAML indents with spaces only"
		if err == nil || err.Error() != want {
			t.Errorf("error %v, want %s", err, want)
		}
	})
	t.Run("tabs where YAML takes them", func(t *testing.T) {
		c, err := Parse([]byte("log:\n  level:\tdebug\nredis: {\n\tdb: 3}\n"), nil, "")
		if err != nil {
			t.Fatal(err)
		}
		if c.Log.Level != "debug" || c.Redis.DB != 3 {
			t.Errorf("got log %+v, redis.db %d", c.Log, c.Redis.DB)
		}
	})
	t.Run("keys named in flow style", func(t *testing.T) {
		data := "{redis: {db: x, addrs: a:6379}, dispatcher: {ack_wait: 30, workerz: 4}}\n"
		_, err := Parse([]byte(data), nil, "")
		want := `config: line 1: redis.db: must be an integer, got "x"
config: line 1: redis.addrs: must be a list of host:port, got a string ("a:6379"); write [a:6379]
config: line 1: dispatcher.ack_wait: invalid duration "30": use a unit, e.g. 30s
config: line 1: dispatcher.workerz: unknown key; did you mean dispatcher.workers?`
		if err == nil || err.Error() != want {
			t.Errorf("error\n%v\nwant\n%s", err, want)
		}
	})
	t.Run("a key of several sections written at the top", func(t *testing.T) {
		_, err := Parse([]byte("password_file: pw.txt\n"), nil, "")
		want := "config: line 1: password_file: unknown key; did you mean nats.password_file or redis.password_file?"
		if err == nil || err.Error() != want {
			t.Errorf("error %v, want %s", err, want)
		}
	})
	t.Run("anchors and merges", func(t *testing.T) {
		data := "redis:\n  dial_timeout: &t 2s\n  read_timeout: *t\ndev:\n  <<: [{devices: 9}, {devices: 3, sample_interval: 5s}]\n  sample_interval: *t\n"
		c, err := Parse([]byte(data), nil, "")
		if err != nil {
			t.Fatal(err)
		}
		if c.Redis.ReadTimeout != Duration(2*time.Second) || c.Dev.Devices != 9 || c.Dev.SampleInterval != Duration(2*time.Second) {
			t.Errorf("got redis %+v, dev %+v", c.Redis, c.Dev)
		}
		_, err = Parse([]byte("log:\n  <<: {level: info}\n  <<: {format: json}\n"), nil, "")
		want := "config: line 3: log.<<: given twice; the first is at line 2 (merge a list of mappings instead)"
		if err == nil || err.Error() != want {
			t.Errorf("error %v, want %s", err, want)
		}
	})
	t.Run("a key twice in a merged mapping", func(t *testing.T) {
		_, err := Parse([]byte("log:\n  <<: {level: info, level: debug}\n"), nil, "")
		want := `config: line 2: log.level: mapping key "level" already defined at line 2`
		if err == nil || err.Error() != want {
			t.Errorf("error %v, want %s", err, want)
		}
	})
	t.Run("absolute secret file path is kept", func(t *testing.T) {
		abs, err := filepath.Abs(filepath.Join("testdata", "secret_redis_password.txt"))
		if err != nil {
			t.Fatal(err)
		}
		c, err := Parse([]byte("redis:\n  password_file: "+abs+"\n"), nil, "elsewhere")
		if err != nil {
			t.Fatal(err)
		}
		if c.Redis.PasswordFile != abs || c.Redis.Password != "s3cret-redis-pw" {
			t.Errorf("got %q from %q", string(c.Redis.Password), c.Redis.PasswordFile)
		}
	})
	t.Run("oversized secret file", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "big"), make([]byte, maxSecretFileSize+1), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Parse([]byte("nats:\n  token_file: big\n"), nil, dir)
		want := "config: nats.token_file: " + filepath.Join(dir, "big") + ": larger than 64 KiB"
		if err == nil || err.Error() != want {
			t.Errorf("error %v, want %s", err, want)
		}
	})
}

// TestExampleIsDefault checks that the documented example config holds
// exactly the defaults and names every key.
func TestExampleIsDefault(t *testing.T) {
	path := filepath.Join("..", "deploy", "pushsyncd.example.yaml")
	got, err := Load(path, nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !reflect.DeepEqual(got, Default()) {
		t.Errorf("the example differs from Default():\n%s", dump(t, got))
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	present := make(map[string]bool)
	collectKeys(doc.Content[0], "", present)
	for _, f := range fields(reflect.ValueOf(Default()).Elem(), "") {
		if !present[f.key] {
			t.Errorf("the example does not show %s", f.key)
		}
	}
}

// collectKeys records the dotted path of every mapping key under n.
func collectKeys(n *yaml.Node, prefix string, keys map[string]bool) {
	if n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key := prefix + n.Content[i].Value
		keys[key] = true
		collectKeys(n.Content[i+1], key+".", keys)
	}
}

func TestDefaultIsValidAndFresh(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	a := Default()
	a.Redis.Addrs[0] = "changed:1"
	if Default().Redis.Addrs[0] == "changed:1" {
		t.Error("Default shares its Addrs slice between calls")
	}
}

// TestTags checks the conventions the reflection relies on: every field has
// a yaml tag with a matching json tag, and every Secret has a *_file sibling.
func TestTags(t *testing.T) {
	checkTags(t, reflect.TypeFor[Config]())
	keys := make(map[string]bool)
	for _, f := range fields(reflect.ValueOf(Default()).Elem(), "") {
		keys[f.key] = true
	}
	for _, f := range fields(reflect.ValueOf(Default()).Elem(), "") {
		if f.value.Type() == reflect.TypeFor[Secret]() && !keys[f.key+"_file"] {
			t.Errorf("secret %s has no %s_file sibling", f.key, f.key)
		}
	}
}

func checkTags(t *testing.T, typ reflect.Type) {
	for i := range typ.NumField() {
		sf := typ.Field(i)
		y, j := sf.Tag.Get("yaml"), sf.Tag.Get("json")
		if y == "" || y != j {
			t.Errorf("%s.%s: yaml tag %q and json tag %q must be set and equal", typ.Name(), sf.Name, y, j)
		}
		if sf.Type.Kind() == reflect.Struct {
			checkTags(t, sf.Type)
		}
	}
}

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "30s", want: 30 * time.Second},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "0", want: 0},
		{in: "-2s", want: -2 * time.Second},
		{in: "30", wantErr: `invalid duration "30": use a unit, e.g. 30s`},
		{in: "1.5", wantErr: `invalid duration "1.5": use a unit, e.g. 30s`},
		{in: "", wantErr: `invalid duration ""`},
		{in: "abc", wantErr: `invalid duration "abc"`},
	} {
		var d Duration
		err := d.UnmarshalText([]byte(tc.in))
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("%q: error %v, want %s", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || d.Std() != tc.want {
			t.Errorf("%q: got %v, %v, want %v", tc.in, d, err, tc.want)
		}
	}
}

// dump formats c as YAML for failure messages.
func dump(t *testing.T, c *Config) string {
	t.Helper()
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestStreamMaxAge: without nats.max_age the stream keeps a day of events,
// or the push TTL and an hour more if that is longer, so that a long
// dispatcher.push_ttl alone is a valid configuration; a max_age set is
// kept as set.
func TestStreamMaxAge(t *testing.T) {
	for _, tc := range []struct {
		ttl, maxAge time.Duration
		want        time.Duration
	}{
		{time.Hour, 0, 24 * time.Hour},
		{48 * time.Hour, 0, 49 * time.Hour},
		{30 * time.Minute, 2 * time.Hour, 2 * time.Hour},
	} {
		c := Default()
		c.Dispatcher.PushTTL, c.NATS.MaxAge = Duration(tc.ttl), Duration(tc.maxAge)
		if err := c.Validate(); err != nil {
			t.Errorf("push_ttl %s, max_age %s: %v", tc.ttl, tc.maxAge, err)
		}
		if got := c.StreamMaxAge(); got != tc.want {
			t.Errorf("push_ttl %s, max_age %s: stream keeps events %s, want %s", tc.ttl, tc.maxAge, got, tc.want)
		}
	}
}

func TestFlowList(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:6379":         "[127.0.0.1:6379]",
		"a:6379,b:6379, ":        "[a:6379, b:6379]",
		"https://a.example, #x":  `["https://a.example", "#x"]`,
		"":                       "[]",
		"[::1]:6379, 10.0.0.1:1": `["[::1]:6379", "10.0.0.1:1"]`,
	} {
		if got := flowList(in); got != want {
			t.Errorf("flowList(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestListenersOfOneProcessDiffer: a role that serves the API refuses an
// api.listen that takes http.listen's port, on the same host or on every
// interface; other hosts, port 0 and the worker, which does not serve the
// API, are accepted.
func TestListenersOfOneProcessDiffer(t *testing.T) {
	for _, tc := range []struct {
		role, http, api string
		refused         bool
	}{
		{RoleAll, ":8081", ":8081", true},
		{RoleAPI, "127.0.0.1:9000", ":9000", true},
		{RoleDev, "[::]:9000", "127.0.0.1:9000", true},
		{RoleAPI, "127.0.0.1:9000", "127.0.0.1:9000", true},
		{RoleAPI, "127.0.0.1:9000", "127.0.0.2:9000", false},
		{RoleAll, "127.0.0.1:0", "127.0.0.1:0", false},
		{RoleAll, ":8080", ":8081", false},
		{RoleWorker, ":8081", ":8081", false},
	} {
		env := []string{"PUSHSYNC_ROLE=" + tc.role, "PUSHSYNC_HTTP_LISTEN=" + tc.http, "PUSHSYNC_API_LISTEN=" + tc.api}
		_, err := Parse(nil, env, "")
		if refused := err != nil && strings.Contains(err.Error(), "api.listen: must not be the port of http.listen"); refused != tc.refused || (err != nil && !refused) {
			t.Errorf("role %s, http.listen %s, api.listen %s: %v, want refused %v", tc.role, tc.http, tc.api, err, tc.refused)
		}
	}
}
