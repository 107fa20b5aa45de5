// Package config is pushsync's one typed configuration: a YAML file, then
// PUSHSYNC_* environment variables over it, then secrets read from files,
// then validation that reports every problem at once.
//
// Decoding is strict: an unknown key, a second YAML document, a duration
// without a unit, a number with a fraction for an integer setting or an
// unknown PUSHSYNC_* variable is an error rather than a silently ignored or
// truncated setting. Every field documents its default and unit, and
// Default returns exactly those values. The package reads the config file and
// secret files and nothing else; it does no network I/O, and only the
// commands import it — components take their own option structs.
package config

import "time"

// The roles a pushsyncd process can run in.
const (
	// RoleWorker consumes dataset-change events and sends pushes.
	RoleWorker = "worker"
	// RoleAPI serves the Cognito Sync-compatible device and operator API.
	RoleAPI = "api"
	// RoleAll runs the API and the worker in one process.
	RoleAll = "all"
	// RoleDev runs a whole local stack in one process, for trying pushsync out.
	RoleDev = "dev"
)

// Config is the whole configuration of pushsyncd. Its zero value is not
// useful; start from Default, Load or Parse.
type Config struct {
	// Role is what this process runs: "worker" (consume events, send
	// pushes), "api" (the HTTP APIs), "all" (both) or "dev" (a whole local
	// stack with emulators). If not set, "worker".
	Role string `yaml:"role" json:"role"`
	// Log configures the process log.
	Log LogConfig `yaml:"log" json:"log"`
	// HTTP configures the operational HTTP server.
	HTTP HTTPConfig `yaml:"http" json:"http"`
	// Redis configures the Redis that holds devices, subscriptions and
	// platform apps.
	Redis RedisConfig `yaml:"redis" json:"redis"`
	// NATS configures the NATS JetStream connection and the event stream.
	NATS NATSConfig `yaml:"nats" json:"nats"`
	// Dispatcher configures event consumption and push fan-out.
	Dispatcher DispatcherConfig `yaml:"dispatcher" json:"dispatcher"`
	// APNs configures the Apple Push Notification service client.
	APNs APNsConfig `yaml:"apns" json:"apns"`
	// FCM configures the Firebase Cloud Messaging client.
	FCM FCMConfig `yaml:"fcm" json:"fcm"`
	// API configures the Cognito Sync-compatible HTTP API of the "api" and
	// "all" roles; other roles ignore it.
	API APIConfig `yaml:"api" json:"api"`
	// Secrets configures the protection of the secrets pushsync stores.
	Secrets SecretsConfig `yaml:"secrets" json:"secrets"`
	// Dev configures the local stack of the "dev" role; other roles ignore it.
	Dev DevConfig `yaml:"dev" json:"dev"`
}

// LogConfig configures the process log.
type LogConfig struct {
	// Level is the least severe level written: "debug", "info", "warn" or
	// "error". If not set, "info".
	Level string `yaml:"level" json:"level"`
	// Format is "json" for one JSON object per line or "console" for
	// human-readable lines. If not set, "json".
	Format string `yaml:"format" json:"format"`
}

// HTTPConfig configures the HTTP server that serves /healthz, /readyz and
// /metrics.
type HTTPConfig struct {
	// Listen is the host:port to listen on; an empty host means every
	// interface. If not set, ":8080".
	Listen string `yaml:"listen" json:"listen"`
	// ShutdownTimeout is how long in-flight requests may run after a stop
	// signal; 0 closes at once. If not set, 30s.
	ShutdownTimeout Duration `yaml:"shutdown_timeout" json:"shutdown_timeout"`
}

// RedisConfig configures the Redis connection. One address means a single
// node, several mean Redis Cluster, and a set MasterName means Sentinel.
type RedisConfig struct {
	// Addrs lists host:port addresses: one for a single node, several for
	// the seed nodes of a Redis Cluster, or the sentinels when MasterName is
	// set. It must not be empty. If not set, ["127.0.0.1:6379"].
	Addrs []string `yaml:"addrs" json:"addrs"`
	// MasterName, if set, selects Sentinel mode: Addrs are the sentinels and
	// this is the name of the monitored master. If not set, "" (no Sentinel).
	MasterName string `yaml:"master_name" json:"master_name"`
	// Username is the ACL user name. If not set, "" (the default user).
	Username string `yaml:"username" json:"username"`
	// Password is the password of Username. Set it or PasswordFile, not
	// both. If not set, "" (no password).
	Password Secret `yaml:"password" json:"password"`
	// PasswordFile is a file whose contents, less one trailing newline,
	// become Password; a relative path is relative to the config file's
	// directory. If not set, "".
	PasswordFile string `yaml:"password_file" json:"password_file"`
	// DB is the database number, 0 to 15; it must be 0 when Addrs lists
	// several addresses, since Redis Cluster has only database 0. If not
	// set, 0.
	DB int `yaml:"db" json:"db"`
	// KeyPrefix starts every key pushsync writes. It must not be empty or
	// contain whitespace or braces, because keys are hash-tagged by identity.
	// If not set, "pushsync".
	KeyPrefix string `yaml:"key_prefix" json:"key_prefix"`
	// DialTimeout bounds establishing a connection; it must be greater than
	// 0. If not set, 5s.
	DialTimeout Duration `yaml:"dial_timeout" json:"dial_timeout"`
	// ReadTimeout bounds reading one reply; it must be greater than 0. If
	// not set, 3s.
	ReadTimeout Duration `yaml:"read_timeout" json:"read_timeout"`
	// WriteTimeout bounds writing one command; it must be greater than 0.
	// If not set, 3s.
	WriteTimeout Duration `yaml:"write_timeout" json:"write_timeout"`
	// PoolSize is the number of connections per node; 0 means the client's
	// default of 10 per CPU. If not set, 0.
	PoolSize int `yaml:"pool_size" json:"pool_size"`
	// TLS configures TLS to Redis.
	TLS RedisTLSConfig `yaml:"tls" json:"tls"`
}

// RedisTLSConfig configures TLS to Redis.
type RedisTLSConfig struct {
	// Enabled turns on TLS. If not set, false.
	Enabled bool `yaml:"enabled" json:"enabled"`
	// CAFile is a PEM file of the authorities that may sign the server's
	// certificate; a relative path is relative to the config file's
	// directory. It needs Enabled. If not set, "" (the system roots).
	CAFile string `yaml:"ca_file" json:"ca_file"`
}

// NATSTLSConfig configures TLS to NATS beyond what a tls:// URL or a
// server requiring TLS turns on: a private authority for the server's
// certificate, and a client certificate for servers that ask for one.
// Setting any of them makes the connection use TLS.
type NATSTLSConfig struct {
	// CAFile is a PEM file of the authorities that may sign the server's
	// certificate; a relative path is relative to the config file's
	// directory. If not set, "" (the system roots).
	CAFile string `yaml:"ca_file" json:"ca_file"`
	// CertFile is a PEM client certificate (chain) to present to the
	// server; it needs KeyFile. If not set, "" (none).
	CertFile string `yaml:"cert_file" json:"cert_file"`
	// KeyFile is the PEM private key of CertFile. If not set, "" (none).
	KeyFile string `yaml:"key_file" json:"key_file"`
}

// NATSConfig configures the NATS connection and the JetStream stream that
// carries dataset-change events.
type NATSConfig struct {
	// URL is one server URL or several separated by commas, each with the
	// scheme nats, tls, ws or wss. If not set, "nats://127.0.0.1:4222".
	URL string `yaml:"url" json:"url"`
	// CredsFile is a NATS user credentials (.creds) file; a relative path is
	// relative to the config file's directory. Set one way to authenticate:
	// CredsFile, Token or User with Password. If not set, "" (none).
	CredsFile string `yaml:"creds_file" json:"creds_file"`
	// Token is an authentication token; not with CredsFile or User. Set it
	// or TokenFile, not both. If not set, "" (none).
	Token Secret `yaml:"token" json:"token"`
	// TokenFile is a file whose contents, less one trailing newline, become
	// Token; a relative path is relative to the config file's directory. If
	// not set, "".
	TokenFile string `yaml:"token_file" json:"token_file"`
	// User is the user name for user/password authentication; not with
	// CredsFile or Token. If not set, "" (none).
	User string `yaml:"user" json:"user"`
	// Password is User's password, and needs User. Set it or PasswordFile,
	// not both. If not set, "" (none).
	Password Secret `yaml:"password" json:"password"`
	// PasswordFile is a file whose contents, less one trailing newline,
	// become Password; a relative path is relative to the config file's
	// directory. If not set, "".
	PasswordFile string `yaml:"password_file" json:"password_file"`
	// TLS configures TLS to NATS.
	TLS NATSTLSConfig `yaml:"tls" json:"tls"`
	// Stream is the JetStream stream name: not empty, no whitespace and none
	// of . * > / \. If not set, "PUSHSYNC_EVENTS".
	Stream string `yaml:"stream" json:"stream"`
	// SubjectPrefix starts the subject of every event: dot-separated tokens,
	// none empty, with no wildcards or whitespace. If not set,
	// "pushsync.events".
	SubjectPrefix string `yaml:"subject_prefix" json:"subject_prefix"`
	// DeviceSubjectPrefix starts the subject of every device-removed event,
	// on the same stream; it must not overlap SubjectPrefix. If not set,
	// "pushsync.devices".
	DeviceSubjectPrefix string `yaml:"device_subject_prefix" json:"device_subject_prefix"`
	// DeadLetterStream is the stream that keeps events whose pushes still
	// failed on their last delivery, for operators to replay; same naming
	// rules as Stream. If not set, "PUSHSYNC_DEAD_LETTERS".
	DeadLetterStream string `yaml:"dead_letter_stream" json:"dead_letter_stream"`
	// DeadLetterSubjectPrefix starts dead-letter subjects; it must not
	// overlap SubjectPrefix or DeviceSubjectPrefix. If not set,
	// "pushsync.deadletters".
	DeadLetterSubjectPrefix string `yaml:"dead_letter_subject_prefix" json:"dead_letter_subject_prefix"`
	// DeadLetterMaxAge is how long the dead-letter stream keeps a letter
	// before NATS deletes it unreplayed, 1h to 8760h (a year), and at
	// least the stream's duplicate window (Config.DeadLetterWindow); every
	// process sets it on the stream at start. If not set, 720h (30 days).
	DeadLetterMaxAge Duration `yaml:"dead_letter_max_age" json:"dead_letter_max_age"`
	// Replicas is the number of stream replicas in a NATS cluster, 1 to 5.
	// If not set, 1.
	Replicas int `yaml:"replicas" json:"replicas"`
	// Storage is the stream's storage: "file" or "memory". If not set, "file".
	Storage string `yaml:"storage" json:"storage"`
	// MaxAge is how long the stream keeps an event; if set, at least
	// DuplicateWindow and dispatcher.push_ttl. If not set (0s), 24h, or
	// dispatcher.push_ttl plus an hour if that is longer: see
	// Config.StreamMaxAge.
	MaxAge Duration `yaml:"max_age" json:"max_age"`
	// DuplicateWindow is how long the stream remembers message ids to drop
	// duplicate publishes; at least 30s, as a publish that went unanswered
	// is made again within seconds. If not set, 2m.
	DuplicateWindow Duration `yaml:"duplicate_window" json:"duplicate_window"`
	// ConnectTimeout bounds connecting to one server; it must be greater than
	// 0. If not set, 5s.
	ConnectTimeout Duration `yaml:"connect_timeout" json:"connect_timeout"`
}

// DispatcherConfig configures the durable consumer and the fan-out of
// pushes.
type DispatcherConfig struct {
	// Consumer is the durable consumer name shared by every worker, with the
	// same rules as a stream name. If not set, "pushsync-dispatcher".
	Consumer string `yaml:"consumer" json:"consumer"`
	// AckWait is how long the server waits for an event's acknowledgement
	// before redelivering it; at least 1s and longer than SendTimeout. If not
	// set, 30s.
	AckWait Duration `yaml:"ack_wait" json:"ack_wait"`
	// MaxDeliver is how many times an event is delivered before it is given
	// up: -1 for unlimited, or at least 1. A delivery handed back untried
	// when a worker stops, or deferred for the device push budget with no
	// push failed, does not count. If not set, 20.
	MaxDeliver int `yaml:"max_deliver" json:"max_deliver"`
	// MaxAckPending is how many events may be delivered but unacknowledged
	// across all workers, at least 1. A process holds up to twice Workers
	// (as many handled, as many pulled ahead), so keep it at least the
	// number of worker processes times 2 × Workers; with CoalesceWindow
	// set, a process holds up to CoalesceMaxHeld (in coalescing windows,
	// waiting for a worker or handled). If not set, 4096.
	MaxAckPending int `yaml:"max_ack_pending" json:"max_ack_pending"`
	// Workers is how many events one process handles at once, 1 to 10000.
	// Each is held for its pushes' round trips, so throughput is about
	// Workers divided by the push service's response time. If not set, 256.
	Workers int `yaml:"workers" json:"workers"`
	// MaxConcurrentSends is how many pushes one process has in flight at
	// once, 1 to 100000. If not set, 1024.
	MaxConcurrentSends int `yaml:"max_concurrent_sends" json:"max_concurrent_sends"`
	// SendTimeout bounds one push request to APNs or FCM; greater than 0 and
	// less than AckWait. If not set, 10s.
	SendTimeout Duration `yaml:"send_timeout" json:"send_timeout"`
	// PushTTL is how long APNs and FCM keep trying to deliver a push (the
	// APNs expiration and the FCM TTL), 0 to 672h (28 days); 0 means deliver
	// now or never. If not set, 1h.
	PushTTL Duration `yaml:"push_ttl" json:"push_ttl"`
	// RetryDelay is the delay before the first redelivery after a retryable
	// failure; it must be greater than 0. If not set, 2s.
	RetryDelay Duration `yaml:"retry_delay" json:"retry_delay"`
	// MaxRetryDelay caps the growing delay between redeliveries; at least
	// RetryDelay. If not set, 5m.
	MaxRetryDelay Duration `yaml:"max_retry_delay" json:"max_retry_delay"`
	// AppCacheTTL is how long a platform app's settings are cached before
	// they are read again; 0 reads them for every event. If not set, 30s.
	AppCacheTTL Duration `yaml:"app_cache_ttl" json:"app_cache_ttl"`
	// RetryBudget is how long a push that failed for a passing reason is
	// retried in the worker (with backoff, honouring Retry-After) before its
	// event goes back to the broker; 0 hands it back at once. It must be
	// less than ack_wait. If not set, 2s.
	RetryBudget Duration `yaml:"retry_budget" json:"retry_budget"`
	// CoalesceWindow gathers the changes of one dataset arriving within it
	// into one push per device carrying the newest sync count; 0 pushes
	// every change at once. It must be less than half of ack_wait. If not
	// set, 0s.
	CoalesceWindow Duration `yaml:"coalesce_window" json:"coalesce_window"`
	// CoalesceMaxHeld is how many events one process holds at once with
	// CoalesceWindow set, from their arrival until their dataset's push
	// settles (in coalescing windows, waiting for a worker or handled):
	// holding as many, it pulls no more and leaves the rest of a burst to
	// the other processes. From 2 × Workers to 100000; 0 is 4 × Workers.
	// If not set, 0.
	CoalesceMaxHeld int `yaml:"coalesce_max_held" json:"coalesce_max_held"`
	// DeviceBudget is how many pushes one device may get per
	// device_budget_window; a push beyond it waits in the broker until the
	// window ends (Apple advises two or three background pushes an hour).
	// 0 is no budget. If not set, 0.
	DeviceBudget int `yaml:"device_budget" json:"device_budget"`
	// DeviceBudgetWindow is the span device_budget counts over, at least
	// 1s. If not set, 1h.
	DeviceBudgetWindow Duration `yaml:"device_budget_window" json:"device_budget_window"`
}

// APNsConfig configures the APNs client. Each platform app chooses the
// production or the sandbox host.
type APNsConfig struct {
	// ProductionHost is the base URL of the production APNs service: an
	// absolute https (or http) URL without a path. If not set,
	// "https://api.push.apple.com".
	ProductionHost string `yaml:"production_host" json:"production_host"`
	// SandboxHost is the base URL of the development APNs service, with the
	// same rules as ProductionHost. If not set,
	// "https://api.sandbox.push.apple.com".
	SandboxHost string `yaml:"sandbox_host" json:"sandbox_host"`
	// RootCAFile is a PEM file of the authorities trusted for the APNs
	// hosts, for an emulator or a proxy; a relative path is relative to the
	// config file's directory. If not set, "" (the system roots).
	RootCAFile string `yaml:"root_ca_file" json:"root_ca_file"`
}

// FCMConfig configures the FCM HTTP v1 client.
type FCMConfig struct {
	// Endpoint is the base URL of the FCM HTTP v1 API, an absolute https (or
	// http) URL. If not set, "https://fcm.googleapis.com/v1".
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	// RootCAFile is a PEM file of the authorities trusted for Endpoint, for
	// an emulator or a proxy; a relative path is relative to the config
	// file's directory. If not set, "" (the system roots).
	RootCAFile string `yaml:"root_ca_file" json:"root_ca_file"`
}

// APIConfig configures the Cognito Sync-compatible HTTP API and the admin
// API beside it.
type APIConfig struct {
	// Listen is the host:port the API serves plain HTTP on (put TLS in front
	// of it). If not set, ":8081".
	Listen string `yaml:"listen" json:"listen"`
	// Regions are the regions accepted in the credential scope of request
	// signatures. If not set, [] (any region).
	Regions []string `yaml:"regions" json:"regions"`
	// MaxClockSkew is how far a request's signing time may be from the
	// server's clock, at least 1s. If not set, 5m.
	MaxClockSkew Duration `yaml:"max_clock_skew" json:"max_clock_skew"`
	// MaxBodyBytes bounds a request body, in bytes, 1024 to 16777216.
	// If not set, 8388608 (8 MiB: a dataset's 1 MiB of keys and values,
	// a record value may be all of it, takes up to 6 MiB in JSON, where a
	// control character is escaped as \u00XX; the patches' other members
	// take the rest).
	MaxBodyBytes int `yaml:"max_body_bytes" json:"max_body_bytes"`
	// MaxTombstones is how many tombstones (removed records, kept so that
	// other devices learn of the removal) one dataset keeps, 1024 to
	// 1048576; the write that leaves more purges the oldest, and a device
	// that last synced before a purged one keeps that record. If not set,
	// 4096 (four times the 1,024 records a dataset may hold).
	MaxTombstones int `yaml:"max_tombstones" json:"max_tombstones"`
	// MaxDeletedDatasets is how many deleted datasets one identity keeps
	// the sync count of, 20 to 10000; the deletion that leaves more purges
	// the oldest, and the identity keeps their highest count, from which
	// datasets without a kept count continue. If not set, 1000 (50 times
	// the 20 datasets an identity may have).
	MaxDeletedDatasets int `yaml:"max_deleted_datasets" json:"max_deleted_datasets"`
	// DeveloperAccessKeyID is the access key id of the developer
	// credentials, which may call the operator operations and act for any
	// identity of an identity pool that exists. If not set, "" (no
	// developer credentials: operator calls are refused).
	DeveloperAccessKeyID string `yaml:"developer_access_key_id" json:"developer_access_key_id"`
	// DeveloperSecretAccessKey is the secret of DeveloperAccessKeyID. If not
	// set, "".
	DeveloperSecretAccessKey Secret `yaml:"developer_secret_access_key" json:"developer_secret_access_key"`
	// DeveloperSecretAccessKeyFile names a file holding
	// DeveloperSecretAccessKey. If not set, "".
	DeveloperSecretAccessKeyFile string `yaml:"developer_secret_access_key_file" json:"developer_secret_access_key_file"`
	// CORSAllowedOrigins are the browser origins allowed to call the API;
	// "*" allows any. If not set, ["*"].
	CORSAllowedOrigins []string `yaml:"cors_allowed_origins" json:"cors_allowed_origins"`
	// IdentityCredentialTTL is the lifetime of identity credentials issued
	// through the admin API, 1m to 12h. If not set, 1h.
	IdentityCredentialTTL Duration `yaml:"identity_credential_ttl" json:"identity_credential_ttl"`
	// IdentityPoolCacheTTL is how long an API process takes an identity
	// pool's existence from what it read before, rather than reading the
	// pool for each request (on Redis Cluster, from the one node holding
	// the configuration), 0 to 1m; 0 reads it for every request. A pool
	// deleted through another API process is then seen by this one within
	// that time: until then it still serves the pool's identity
	// credentials and developer calls in it. Through this process, at
	// once; a pool just created, at once everywhere. A purge of a deleted
	// pool removes nothing until this time and 2s have passed since the
	// deletion, so every API process must have the same value. If not
	// set, 5s.
	IdentityPoolCacheTTL Duration `yaml:"identity_pool_cache_ttl" json:"identity_pool_cache_ttl"`
	// IdentityRateLimit is how many Cognito Identity calls that store
	// something (GetId creating an unauthenticated identity,
	// GetCredentialsForIdentity issuing a credential) one client address
	// may make per second on average, 0 to 100000; more are answered
	// TooManyRequestsException, which AWS SDKs retry. 0 turns the limit
	// off. IPv6 clients are counted per /64. If not set, 10.
	IdentityRateLimit int `yaml:"identity_rate_limit" json:"identity_rate_limit"`
	// IdentityRateBurst is how many of those calls one client address may
	// make at once, 1 to 100000. If not set, 50.
	IdentityRateBurst int `yaml:"identity_rate_burst" json:"identity_rate_burst"`
	// TrustedProxies are the load balancers and reverse proxies in front
	// of the API, as CIDRs such as 10.0.0.0/8 or single addresses. A
	// request whose TCP peer is one of them is taken to come from the
	// right-most X-Forwarded-For address that is not; a request from any
	// other peer, from that peer, whatever its X-Forwarded-For says. If
	// not set, [] (every request comes from its TCP peer).
	TrustedProxies []string `yaml:"trusted_proxies" json:"trusted_proxies"`
	// OIDCRootCAFile is a PEM file of the authorities trusted for the HTTPS
	// endpoints OpenID Connect providers serve their signing keys from. If
	// not set, the system's roots.
	OIDCRootCAFile string `yaml:"oidc_root_ca_file" json:"oidc_root_ca_file"`
	// ARNRegion is the region written into the SNS-style platform
	// application ARNs pushsync shows; any region is accepted back. If not
	// set, "us-east-1".
	ARNRegion string `yaml:"arn_region" json:"arn_region"`
	// ARNAccount is the 12-digit account written into those ARNs. If not
	// set, "000000000000".
	ARNAccount string `yaml:"arn_account" json:"arn_account"`
}

// SecretsConfig configures how pushsync protects the secrets it keeps in
// Redis: APNs signing keys and certificates, FCM service-account keys and
// identity credentials are encrypted with AES-256-GCM under the master key.
type SecretsConfig struct {
	// MasterKey is 32 random bytes in standard base64 (for example the
	// output of "openssl rand -base64 32"). The worker, api and all roles
	// need it; the dev role, if it is not set, uses a fixed dev-only key
	// that protects nothing. If not
	// set, "".
	MasterKey Secret `yaml:"master_key" json:"master_key"`
	// MasterKeyFile names a file holding MasterKey. If not set, "".
	MasterKeyFile string `yaml:"master_key_file" json:"master_key_file"`
	// SecondaryMasterKey is a second master key, during a rotation:
	// secrets sealed under it open and SyncSessionTokens signed with it
	// check, but nothing is sealed or signed with it; the admin API's
	// ResealSecrets moves what is under it to MasterKey. Same form as
	// MasterKey; needs MasterKey (docs/deploy.md, "Rotating the master
	// key"). If not set, "".
	SecondaryMasterKey Secret `yaml:"secondary_master_key" json:"secondary_master_key"`
	// SecondaryMasterKeyFile names a file holding SecondaryMasterKey. If not
	// set, "".
	SecondaryMasterKeyFile string `yaml:"secondary_master_key_file" json:"secondary_master_key_file"`
}

// DevConfig configures the local stack that the "dev" role runs in one
// process.
type DevConfig struct {
	// RedisAddr is the host:port of the Redis the dev stack uses; if none
	// answers there and redis-server is on PATH, the stack starts one. If not
	// set, "127.0.0.1:6379".
	RedisAddr string `yaml:"redis_addr" json:"redis_addr"`
	// SampleInterval is how often the dev stack publishes a sample dataset
	// change; it must be greater than 0. If not set, 5s.
	SampleInterval Duration `yaml:"sample_interval" json:"sample_interval"`
	// Devices is how many sample devices are registered for the demo
	// identity, 2 to 1000. If not set, 4.
	Devices int `yaml:"devices" json:"devices"`
}

// Default returns a new Config holding every default. Each call returns a
// fresh value that the caller may change.
func Default() *Config {
	return &Config{
		Role: RoleWorker,
		Log:  LogConfig{Level: "info", Format: "json"},
		HTTP: HTTPConfig{Listen: ":8080", ShutdownTimeout: Duration(30 * time.Second)},
		Redis: RedisConfig{
			Addrs:        []string{"127.0.0.1:6379"},
			KeyPrefix:    "pushsync",
			DialTimeout:  Duration(5 * time.Second),
			ReadTimeout:  Duration(3 * time.Second),
			WriteTimeout: Duration(3 * time.Second),
		},
		NATS: NATSConfig{
			URL:                     "nats://127.0.0.1:4222",
			Stream:                  "PUSHSYNC_EVENTS",
			SubjectPrefix:           "pushsync.events",
			DeviceSubjectPrefix:     "pushsync.devices",
			DeadLetterStream:        "PUSHSYNC_DEAD_LETTERS",
			DeadLetterSubjectPrefix: "pushsync.deadletters",
			DeadLetterMaxAge:        Duration(30 * 24 * time.Hour),
			Replicas:                1,
			Storage:                 "file",
			MaxAge:                  0, // derived: StreamMaxAge
			DuplicateWindow:         Duration(2 * time.Minute),
			ConnectTimeout:          Duration(5 * time.Second),
		},
		Dispatcher: DispatcherConfig{
			Consumer:           "pushsync-dispatcher",
			AckWait:            Duration(30 * time.Second),
			MaxDeliver:         20,
			MaxAckPending:      4096,
			Workers:            256,
			MaxConcurrentSends: 1024,
			SendTimeout:        Duration(10 * time.Second),
			PushTTL:            Duration(time.Hour),
			RetryDelay:         Duration(2 * time.Second),
			MaxRetryDelay:      Duration(5 * time.Minute),
			AppCacheTTL:        Duration(30 * time.Second),
			RetryBudget:        Duration(2 * time.Second),
			DeviceBudgetWindow: Duration(time.Hour),
		},
		APNs: APNsConfig{
			ProductionHost: "https://api.push.apple.com",
			SandboxHost:    "https://api.sandbox.push.apple.com",
		},
		FCM: FCMConfig{Endpoint: "https://fcm.googleapis.com/v1"},
		API: APIConfig{
			Listen:                ":8081",
			Regions:               []string{},
			MaxClockSkew:          Duration(5 * time.Minute),
			MaxBodyBytes:          8 << 20,
			MaxTombstones:         4096,
			MaxDeletedDatasets:    1000,
			CORSAllowedOrigins:    []string{"*"},
			IdentityCredentialTTL: Duration(time.Hour),
			IdentityPoolCacheTTL:  Duration(5 * time.Second),
			IdentityRateLimit:     10,
			IdentityRateBurst:     50,
			TrustedProxies:        []string{},
			ARNRegion:             "us-east-1",
			ARNAccount:            "000000000000",
		},
		Dev: DevConfig{
			RedisAddr:      "127.0.0.1:6379",
			SampleInterval: Duration(5 * time.Second),
			Devices:        4,
		},
	}
}

// DeadLetterWindow is the dead-letter stream's deduplication window:
// longer than the time before an event whose dead letter may have been
// stored without an answer comes back (a nak of dispatcher.max_retry_delay,
// or a lost ack's dispatcher.ack_wait), so that it is not stored twice; at
// least 2 minutes. NATS refuses a window longer than the stream's max age,
// so nats.dead_letter_max_age must be at least this.
func (c *Config) DeadLetterWindow() time.Duration {
	return max(2*time.Minute, c.Dispatcher.MaxRetryDelay.Std()+c.Dispatcher.AckWait.Std()+time.Minute)
}

// StreamMaxAge is how long the event stream keeps an event: nats.max_age,
// or if that is not set, 24 hours, or dispatcher.push_ttl plus an hour if
// that is longer, so that the stream keeps every event that may still be
// pushed.
func (c *Config) StreamMaxAge() time.Duration {
	if c.NATS.MaxAge > 0 {
		return c.NATS.MaxAge.Std()
	}
	return max(24*time.Hour, c.Dispatcher.PushTTL.Std()+time.Hour)
}
