package registry

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/sync/cognito"
)

// AppKind is the push service a platform app talks to.
type AppKind string

// The kinds of platform app.
const (
	KindAPNs AppKind = "apns"
	KindFCM  AppKind = "fcm"
)

// App is a platform app: the credentials pushsync uses to push to one
// mobile app through APNs or FCM.
type App struct {
	// Name identifies the app, like the name in an SNS platform-application
	// ARN: 1 to 256 characters of letters, digits, '_', '.' and '-'.
	Name string `json:"name"`
	// Kind says which of APNs and FCM is set.
	Kind AppKind `json:"kind"`
	// APNs holds the credentials of an APNs app.
	APNs *APNsCredentials `json:"apns,omitempty"`
	// FCM holds the credentials of an FCM app.
	FCM *FCMCredentials `json:"fcm,omitempty"`
	// CreatedAt and UpdatedAt are set by PutApp.
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	// Revision is raised by every PutApp, and goes on from the last one
	// of a deleted app of the same name; clients cached for an older
	// revision are rebuilt.
	Revision int64 `json:"-"`
	// Unreadable is set only by Apps, for an app whose record no
	// configured master key opens (it wraps ErrAppUnreadable); such an app
	// has only its name and revision.
	Unreadable error `json:"-"`
}

// APNsCredentials authenticate to APNs with either a token signing key
// (AuthKey, KeyID and TeamID) or a TLS client certificate (Certificate).
type APNsCredentials struct {
	// Topic is the app's bundle id, sent as apns-topic.
	Topic string `json:"topic"`
	// KeyID is the id of the .p8 signing key: 10 upper-case letters and
	// digits.
	KeyID string `json:"keyId,omitempty"`
	// TeamID is the Apple developer team id: 10 upper-case letters and
	// digits.
	TeamID string `json:"teamId,omitempty"`
	// AuthKey is the .p8 key file: a PEM PKCS#8 P-256 private key.
	AuthKey string `json:"authKey,omitempty"`
	// Certificate is a PEM certificate followed by its PEM private key.
	Certificate string `json:"certificate,omitempty"`
}

// FCMCredentials authenticate to FCM with a Google service account.
type FCMCredentials struct {
	// ProjectID is the Firebase project id.
	ProjectID string `json:"projectId"`
	// ServiceAccount is the service account's JSON key file.
	ServiceAccount string `json:"serviceAccount"`
}

// Validate checks that the app is complete, that its keys parse and that
// its APNs certificate, if it has one, is valid now: neither expired nor
// not yet valid.
func (a *App) Validate() error { return a.validate(time.Now()) }

// validate is Validate at the time now.
func (a *App) validate(now time.Time) error {
	if err := validateAppName(a.Name); err != nil {
		return err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %s: %s", ErrInvalidApp, a.Name, fmt.Sprintf(format, args...))
	}
	switch a.Kind {
	case KindAPNs:
		c := a.APNs
		if c == nil || a.FCM != nil {
			return bad("an apns app needs apns credentials and no fcm credentials")
		}
		if c.Topic == "" {
			return bad("apns.topic (the bundle id) is required")
		}
		switch {
		case c.AuthKey != "" && c.Certificate != "":
			return bad("give either apns.authKey or apns.certificate, not both")
		case c.AuthKey != "":
			if c.KeyID == "" || c.TeamID == "" {
				return bad("token authentication needs apns.keyId and apns.teamId")
			}
			if err := checkAuthKey(c.AuthKey); err != nil {
				return bad("apns.authKey: %v", err)
			}
			// APNs answers a provider token with another key or team id
			// with InvalidProviderToken, on every push.
			if !appleID(c.KeyID) {
				return bad("apns.keyId %q is no key id: Apple's are 10 upper-case letters and digits, as in the key file's name AuthKey_<keyId>.p8", c.KeyID)
			}
			if !appleID(c.TeamID) {
				return bad("apns.teamId %q is no team id: Apple's are 10 upper-case letters and digits, as the developer account shows it", c.TeamID)
			}
		case c.Certificate != "":
			pair, err := tls.X509KeyPair([]byte(c.Certificate), []byte(c.Certificate))
			if err != nil {
				return bad("apns.certificate must hold a PEM certificate and its private key: %s", certificateProblem(c.Certificate, err))
			}
			leaf, err := x509.ParseCertificate(pair.Certificate[0])
			if err != nil {
				return bad("apns.certificate: %v", err)
			}
			if now.After(leaf.NotAfter) {
				// APNs refuses every connection made with it.
				return bad("apns.certificate (%s) expired at %s; renew it and register the new one", leaf.Subject, leaf.NotAfter.UTC().Format(time.RFC3339))
			}
			if now.Before(leaf.NotBefore) {
				// Nor does it take one before: a wrong clock here or where
				// the certificate was made.
				return bad("apns.certificate (%s) is not valid until %s; check this machine's clock, or register it then", leaf.Subject, leaf.NotBefore.UTC().Format(time.RFC3339))
			}
		default:
			return bad("apns needs authKey (with keyId and teamId) or certificate")
		}
	case KindFCM:
		c := a.FCM
		if c == nil || a.APNs != nil {
			return bad("an fcm app needs fcm credentials and no apns credentials")
		}
		if c.ProjectID == "" {
			return bad("fcm.projectId is required")
		}
		if err := checkServiceAccount(c.ServiceAccount); err != nil {
			return bad("fcm.serviceAccount: %v", err)
		}
	default:
		return bad("kind must be %q or %q, got %q", KindAPNs, KindFCM, a.Kind)
	}
	return nil
}

func validateAppName(name string) error {
	if name == "" || len(name) > 256 || strings.IndexFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-')
	}) >= 0 {
		return fmt.Errorf("%w: name %q must be 1 to 256 letters, digits, '_', '.' or '-'", ErrInvalidApp, name)
	}
	return nil
}

// certificateProblem says what is wrong with an APNs certificate that
// tls.X509KeyPair refused with err, in the terms of how such certificates
// are exported: as a .p12 file, whose key is encrypted unless asked not to.
func certificateProblem(data string, err error) string {
	const convert = "openssl pkcs12 -in cert.p12 -out cert.pem -nodes"
	var certs, keys, encrypted int
	rest := []byte(data)
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		switch {
		case b.Type == "CERTIFICATE":
			certs++
		case b.Type == "ENCRYPTED PRIVATE KEY" || strings.HasSuffix(b.Type, "PRIVATE KEY") && strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED"):
			encrypted++
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			keys++
		}
	}
	switch {
	case certs == 0 && keys == 0 && encrypted == 0:
		return "it holds no PEM data; convert a .p12 file, as Keychain exports it, with: " + convert
	case certs == 0:
		return "it holds a private key but no CERTIFICATE block; put the certificate first, then its key"
	case encrypted > 0 && keys == 0:
		return "its private key is encrypted; give it without a passphrase, as " + convert + " writes it"
	case keys == 0:
		return "it holds the certificate but no private key; append the certificate's PEM private key"
	}
	return err.Error()
}

// appleID reports whether s has the form of an Apple key or team id: 10
// upper-case letters and digits.
func appleID(s string) bool {
	return len(s) == 10 && strings.IndexFunc(s, func(r rune) bool { return !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') }) < 0
}

func checkAuthKey(p8 string) error {
	block, _ := pem.Decode([]byte(p8))
	if block == nil {
		return errors.New("not PEM")
	}
	// Apple issues the key as PKCS#8; say what else was given rather
	// than how the parser failed on it.
	switch block.Type {
	case "PRIVATE KEY":
	case "EC PRIVATE KEY":
		return errors.New("is an EC PRIVATE KEY (SEC1), not the PKCS#8 PRIVATE KEY of a .p8 file; convert it with: openssl pkcs8 -topk8 -nocrypt -in key.pem -out key.p8")
	default:
		return fmt.Errorf("holds a PEM %q block, not the PRIVATE KEY of a .p8 file", block.Type)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return fmt.Errorf("not a PKCS#8 private key: %v", err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return errors.New("APNs signing keys are ECDSA P-256")
	}
	return nil
}

func checkServiceAccount(js string) error {
	if strings.TrimSpace(js) == "" {
		return errors.New("is required: the service account's JSON key file, as the Firebase console downloads it")
	}
	var sa struct {
		Type        string `json:"type"`
		ClientEmail string `json:"client_email"`
		PrivateKey  string `json:"private_key"`
		TokenURI    string `json:"token_uri"`
	}
	if err := json.Unmarshal([]byte(js), &sa); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te) && te.Field == "":
			return fmt.Errorf("must be a service account key file, a JSON object, got a JSON %s", te.Value)
		case errors.As(err, &te):
			return fmt.Errorf("member %s must be a string, got a JSON %s", te.Field, te.Value)
		}
		return fmt.Errorf("not JSON: %v", err)
	}
	if sa.Type != "service_account" || sa.ClientEmail == "" || sa.PrivateKey == "" || sa.TokenURI == "" {
		return errors.New(`must be a service account key file (type "service_account" with client_email, private_key and token_uri)`)
	}
	if err := checkServiceAccountKey(sa.PrivateKey); err != nil {
		return fmt.Errorf("private_key %v; give the key file as Google issued it", err)
	}
	// Every push's access token is asked for there, with an assertion
	// signed by the key that is worth a token itself: only over TLS.
	if err := checkProviderURL(sa.TokenURI); err != nil {
		return fmt.Errorf("token_uri %q: %v; Google's is https://oauth2.googleapis.com/token", sa.TokenURI, err)
	}
	return nil
}

// checkServiceAccountKey checks that key is what Google signs its OAuth
// token requests with: a PEM RSA private key, PKCS#8 as Google issues it
// or PKCS#1.
func checkServiceAccountKey(key string) error {
	block, _ := pem.Decode([]byte(key))
	switch {
	case block == nil && strings.Contains(key, `\n`):
		return errors.New(`is not PEM: its line breaks are the two characters \n, escaped once too often`)
	case block == nil:
		return errors.New("is not PEM (-----BEGIN PRIVATE KEY----- and base64 lines), or its base64 is damaged")
	case block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED"):
		return errors.New("is encrypted")
	}
	var parsed any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return fmt.Errorf("is no PKCS#8 private key, it is damaged: %v", err)
		}
	case "RSA PRIVATE KEY":
		parsed, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return fmt.Errorf("is no PKCS#1 RSA private key, it is damaged: %v", err)
		}
	default:
		return fmt.Errorf("holds a PEM %q block, not a PRIVATE KEY", block.Type)
	}
	if _, ok := parsed.(*rsa.PrivateKey); !ok {
		return fmt.Errorf("is an %s key, but service account keys are RSA", keyAlgorithm(parsed))
	}
	return nil
}

// keyAlgorithm names the algorithm of a parsed private key.
func keyAlgorithm(key any) string {
	switch key.(type) {
	case *ecdsa.PrivateKey:
		return "ECDSA"
	case ed25519.PrivateKey:
		return "Ed25519"
	case *ecdh.PrivateKey:
		return "X25519"
	}
	return fmt.Sprintf("%T", key)
}

// PutApp creates or replaces a platform app and raises its revision.
func (r *Registry) PutApp(ctx context.Context, app App) (App, error) {
	return r.putApp(ctx, app, putAny)
}

// CreateApp creates a platform app; it returns ErrAppExists if one of that
// name exists.
func (r *Registry) CreateApp(ctx context.Context, app App) (App, error) {
	return r.putApp(ctx, app, putCreate)
}

// ReplaceApp replaces the credentials of an existing platform app, as when
// rotating a key; it returns ErrAppNotFound if there is none. An app whose
// record no configured master key opens is replaced as if new (CreatedAt
// is now), provided the pools that push through it need its kind.
func (r *Registry) ReplaceApp(ctx context.Context, app App) (App, error) {
	return r.putApp(ctx, app, putReplace)
}

type putMode int

const (
	putAny putMode = iota
	putCreate
	putReplace
)

func (r *Registry) putApp(ctx context.Context, app App, mode putMode) (App, error) {
	now := r.now().UTC()
	if err := app.validate(now); err != nil {
		return App{}, err
	}
	key := r.configKey()
	err := r.updateConfig(ctx, func(tx *redis.Tx) error {
		old, err := r.getApp(ctx, tx, app.Name)
		switch {
		case err == nil && mode == putCreate:
			return fmt.Errorf("%w: %s", ErrAppExists, app.Name)
		case err == nil && old.Kind != app.Kind:
			// Pools map platforms to apps by kind; a kind change would
			// silently send APNs devices' pushes to FCM.
			return fmt.Errorf("%w %s: kind cannot change from %s to %s; create a new app instead", ErrInvalidApp, app.Name, old.Kind, app.Kind)
		case err == nil:
			app.CreatedAt = old.CreatedAt
		case errors.Is(err, ErrAppNotFound) && mode != putReplace:
			app.CreatedAt = now
		case mode != putCreate && errors.Is(err, ErrAppUnreadable):
			// A put or a replace (registering the credentials again
			// after the master key that sealed them was lost) replaces a
			// record this key cannot read: sealed under another master
			// key, or stored before encryption. Its kind is unknown, so
			// the pools that push through it must agree with the new one.
			if err := r.checkPoolKinds(ctx, tx, app); err != nil {
				return err
			}
			app.CreatedAt = now
		default:
			return err
		}
		app.UpdatedAt = now
		data, err := json.Marshal(&app)
		if err != nil {
			return err
		}
		cmds, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, key, "app:"+app.Name, r.seal(data, "app:"+app.Name))
			p.HIncrBy(ctx, key, "rev:"+app.Name, 1)
			return nil
		})
		if err == nil {
			app.Revision = cmds[1].(*redis.IntCmd).Val()
		}
		return err
	})
	if err != nil {
		return App{}, appOpError("put", app.Name, err)
	}
	return app, nil
}

// appOpError is err, from operation op on app name, as the registry
// returns it: an error of the registry's own, which names the app already,
// is not prefixed with the operation and the name again.
func appOpError(op, name string, err error) error {
	for _, own := range []error{ErrAppNotFound, ErrAppExists, ErrAppInUse, ErrInvalidApp, ErrAppUnreadable} {
		if errors.Is(err, own) {
			if strings.HasPrefix(err.Error(), "registry: ") {
				return err
			}
			return fmt.Errorf("registry: %w", err)
		}
	}
	return fmt.Errorf("registry: %s app %s: %w", op, name, err)
}

// CertificateLeaf returns the certificate of an APNs app that
// authenticates with one, nil for any other app or a certificate that does
// not parse (which Validate refuses).
func (a *App) CertificateLeaf() *x509.Certificate {
	if a.APNs == nil || a.APNs.Certificate == "" {
		return nil
	}
	pair, err := tls.X509KeyPair([]byte(a.APNs.Certificate), []byte(a.APNs.Certificate))
	if err != nil {
		return nil
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil
	}
	return leaf
}

// checkPoolKinds checks that every identity pool pushing through an app of
// app's name does so for platforms of app's kind.
func (r *Registry) checkPoolKinds(ctx context.Context, c redis.Cmdable, app App) error {
	all, err := c.HGetAll(ctx, r.configKey()).Result()
	if err != nil {
		return err
	}
	for f, v := range all {
		pool, ok := strings.CutPrefix(f, "pool:")
		if !ok {
			continue
		}
		var pp PoolPush
		if json.Unmarshal([]byte(v), &pp) != nil {
			continue
		}
		for platform, name := range pp.Apps {
			if name == app.Name && platform.Kind() != app.Kind {
				return fmt.Errorf("%w %s: identity pool %s pushes to %s devices through it, which needs an %s app, not %s", ErrInvalidApp, app.Name, pool, platform, platform.Kind(), app.Kind)
			}
		}
	}
	return nil
}

// App returns a platform app with its credentials.
func (r *Registry) App(ctx context.Context, name string) (App, error) {
	return r.getApp(ctx, r.rdb, name)
}

func (r *Registry) getApp(ctx context.Context, c redis.Cmdable, name string) (App, error) {
	vals, err := c.HMGet(ctx, r.configKey(), "app:"+name, "rev:"+name).Result()
	if err != nil {
		return App{}, fmt.Errorf("registry: get app %s: %w", name, err)
	}
	data, ok := vals[0].(string)
	if !ok {
		return App{}, fmt.Errorf("registry: %w: %s", ErrAppNotFound, name)
	}
	app, err := r.decodeApp(name, data)
	if err != nil {
		return App{}, err
	}
	if rev, ok := vals[1].(string); ok {
		fmt.Sscan(rev, &app.Revision)
	}
	return app, nil
}

// ErrAppUnreadable is returned for a platform app whose record no
// configured master key opens: sealed under a key that was lost, or stored
// before a master key was configured. Registering its credentials again
// (ReplaceApp) replaces it.
var ErrAppUnreadable = errors.New("no configured master key opens its record")

func (r *Registry) decodeApp(name, stored string) (App, error) {
	data, err := r.open(stored, "app:"+name)
	if err != nil {
		return App{}, fmt.Errorf("registry: app %s: %w (%w)", name, ErrAppUnreadable, err)
	}
	var app App
	if err := json.Unmarshal(data, &app); err != nil {
		return App{}, fmt.Errorf("registry: app %s has a corrupt record: %w", name, err)
	}
	return app, nil
}

// Apps returns every platform app, sorted by name. An app whose record no
// configured master key opens is listed with its name, its revision and
// Unreadable, so that one such record leaves the others listed.
func (r *Registry) Apps(ctx context.Context) ([]App, error) {
	all, err := r.rdb.HGetAll(ctx, r.configKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("registry: list apps: %w", err)
	}
	var apps []App
	for f, v := range all {
		name, ok := strings.CutPrefix(f, "app:")
		if !ok {
			continue
		}
		app, err := r.decodeApp(name, v)
		if errors.Is(err, ErrAppUnreadable) {
			app = App{Name: name, Unreadable: err}
		} else if err != nil {
			return nil, err
		}
		fmt.Sscan(all["rev:"+name], &app.Revision)
		apps = append(apps, app)
	}
	sort.Slice(apps, func(i, j int) bool { return apps[i].Name < apps[j].Name })
	return apps, nil
}

// DeleteApp removes a platform app. It refuses, with ErrAppInUse, while an
// identity pool's push configuration names the app.
func (r *Registry) DeleteApp(ctx context.Context, name string) error {
	key := r.configKey()
	err := r.updateConfig(ctx, func(tx *redis.Tx) error {
		all, err := tx.HGetAll(ctx, key).Result()
		if err != nil {
			return err
		}
		if _, ok := all["app:"+name]; !ok {
			return fmt.Errorf("%w: %s", ErrAppNotFound, name)
		}
		for f, v := range all {
			if pool, ok := strings.CutPrefix(f, "pool:"); ok {
				var pp PoolPush
				if json.Unmarshal([]byte(v), &pp) == nil && slices.Contains(pp.appNames(), name) {
					return fmt.Errorf("%w: identity pool %s pushes through %s", ErrAppInUse, pool, name)
				}
			}
		}
		// The revision stays: an app created again under the name goes
		// on from it, so that workers holding clients built for a revision
		// of the deleted app do not take it for theirs.
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HDel(ctx, key, "app:"+name)
			return nil
		})
		return err
	})
	if err != nil {
		return appOpError("delete", name, err)
	}
	return nil
}

// PoolPush is an identity pool's push configuration: for each platform, the
// name of the platform app that serves it. APNS and APNS_SANDBOX devices may
// share one APNs app; they differ only in the APNs host they are sent to.
type PoolPush struct {
	Apps map[Platform]string `json:"apps"`
	// ApplicationARNs are the SNS-style platform-application ARNs the
	// configuration was given as, kept to be shown back unchanged.
	ApplicationARNs []string `json:"applicationArns,omitempty"`
	// RoleARN is the role ARN the configuration was given with, kept to be
	// shown back; pushsync assumes no role.
	RoleARN string `json:"roleArn,omitempty"`
}

func (pp *PoolPush) appNames() []string {
	names := make([]string, 0, len(pp.Apps))
	for _, n := range pp.Apps {
		names = append(names, n)
	}
	return names
}

// SetPoolPush sets an identity pool's push configuration. Every app it
// names must exist and be of the platform's kind. An empty configuration
// turns push sync off for the pool.
func (r *Registry) SetPoolPush(ctx context.Context, pool string, pp PoolPush) error {
	if err := cognito.ValidateIdentityPoolID(pool); err != nil {
		return err
	}
	key := r.configKey()
	err := r.updateConfig(ctx, func(tx *redis.Tx) error {
		if err := r.checkPoolApps(ctx, tx, pp); err != nil {
			return err
		}
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			if len(pp.Apps) == 0 {
				p.HDel(ctx, key, "pool:"+pool)
				return nil
			}
			data, err := json.Marshal(&pp)
			if err != nil {
				return err
			}
			p.HSet(ctx, key, "pool:"+pool, data)
			return nil
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("registry: set push configuration of %s: %w", pool, err)
	}
	return nil
}

// checkPoolApps checks that every app a push configuration names exists
// and is of its platform's kind.
func (r *Registry) checkPoolApps(ctx context.Context, c redis.Cmdable, pp PoolPush) error {
	for platform, name := range pp.Apps {
		if _, err := ParsePlatform(string(platform)); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidPoolPush, err)
		}
		app, err := r.getApp(ctx, c, name)
		if err != nil {
			return fmt.Errorf("%w: platform %s: %w", ErrInvalidPoolPush, platform, err)
		}
		if app.Kind != platform.Kind() {
			return fmt.Errorf("%w: platform %s needs an %s app, but %s is an %s app", ErrInvalidPoolPush, platform, platform.Kind(), name, app.Kind)
		}
	}
	return nil
}

// PoolPush returns an identity pool's push configuration, or
// ErrPushNotEnabled if it has none.
func (r *Registry) PoolPush(ctx context.Context, pool string) (PoolPush, error) {
	data, err := r.rdb.HGet(ctx, r.configKey(), "pool:"+pool).Result()
	if err == redis.Nil {
		return PoolPush{}, fmt.Errorf("registry: %w: %s", ErrPushNotEnabled, pool)
	}
	if err != nil {
		return PoolPush{}, fmt.Errorf("registry: get push configuration of %s: %w", pool, err)
	}
	return decodePoolPush(pool, data)
}

func decodePoolPush(pool, data string) (PoolPush, error) {
	var pp PoolPush
	if err := json.Unmarshal([]byte(data), &pp); err != nil {
		return PoolPush{}, fmt.Errorf("registry: push configuration of %s is corrupt: %w", pool, err)
	}
	return pp, nil
}

// Streams is an identity pool's Cognito Streams setting, kept as given.
type Streams struct {
	StreamName      string `json:"streamName,omitempty"`
	RoleARN         string `json:"roleArn,omitempty"`
	StreamingStatus string `json:"streamingStatus,omitempty"`
}

// SetPoolStreams stores an identity pool's Cognito Streams setting; nil
// removes it.
func (r *Registry) SetPoolStreams(ctx context.Context, pool string, s *Streams) error {
	if err := cognito.ValidateIdentityPoolID(pool); err != nil {
		return err
	}
	if s == nil {
		return r.rdb.HDel(ctx, r.configKey(), "streams:"+pool).Err()
	}
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return r.rdb.HSet(ctx, r.configKey(), "streams:"+pool, data).Err()
}

// PoolStreams returns an identity pool's Cognito Streams setting, or nil.
func (r *Registry) PoolStreams(ctx context.Context, pool string) (*Streams, error) {
	data, err := r.rdb.HGet(ctx, r.configKey(), "streams:"+pool).Result()
	if err == redis.Nil {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("registry: get streams of %s: %w", pool, err)
	}
	return decodeStreams(pool, data)
}

func decodeStreams(pool, data string) (*Streams, error) {
	var s Streams
	if err := json.Unmarshal([]byte(data), &s); err != nil {
		return nil, fmt.Errorf("registry: streams of %s are corrupt: %w", pool, err)
	}
	return &s, nil
}

// PoolConfig is an identity pool's configuration as the Cognito Sync
// operation SetIdentityPoolConfiguration sets it.
type PoolConfig struct {
	// Push is the push configuration; with no Apps, push sync is off.
	Push PoolPush
	// Streams is the Cognito Streams setting, nil if there is none.
	Streams *Streams
}

// UpdatePoolConfig reads an identity pool's push configuration and Cognito
// Streams setting, lets change modify them, and writes both back in one
// transaction, so that a failure writes neither. When another write to the
// configuration comes between the read and the write, change runs again on
// what is then stored: concurrent updates of one pool each apply, none is
// lost. An error from change is returned as it is, and nothing is written.
// Every app a changed push configuration names must exist and be of its
// platform's kind (ErrInvalidPoolPush otherwise). It returns the
// configuration as stored.
func (r *Registry) UpdatePoolConfig(ctx context.Context, pool string, change func(*PoolConfig) error) (PoolConfig, error) {
	if err := cognito.ValidateIdentityPoolID(pool); err != nil {
		return PoolConfig{}, err
	}
	key := r.configKey()
	var cfg PoolConfig
	var changeErr error
	err := r.updateConfig(ctx, func(tx *redis.Tx) error {
		vals, err := tx.HMGet(ctx, key, "pool:"+pool, "streams:"+pool).Result()
		if err != nil {
			return err
		}
		stored := [2]string{}
		cfg = PoolConfig{}
		if data, ok := vals[0].(string); ok {
			if cfg.Push, err = decodePoolPush(pool, data); err != nil {
				return err
			}
			stored[0] = data
		}
		if data, ok := vals[1].(string); ok {
			if cfg.Streams, err = decodeStreams(pool, data); err != nil {
				return err
			}
			stored[1] = data
		}
		if changeErr = change(&cfg); changeErr != nil {
			return changeErr
		}
		if len(cfg.Push.Apps) == 0 {
			cfg.Push = PoolPush{}
		}
		// The new values of both fields, "" for none; only a changed one
		// is checked and written.
		var next [2]string
		if len(cfg.Push.Apps) > 0 {
			data, err := json.Marshal(&cfg.Push)
			if err != nil {
				return err
			}
			next[0] = string(data)
		}
		if cfg.Streams != nil {
			data, err := json.Marshal(cfg.Streams)
			if err != nil {
				return err
			}
			next[1] = string(data)
		}
		if next[0] != stored[0] {
			if err := r.checkPoolApps(ctx, tx, cfg.Push); err != nil {
				return err
			}
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for i, field := range []string{"pool:" + pool, "streams:" + pool} {
				switch {
				case next[i] == stored[i]:
				case next[i] == "":
					p.HDel(ctx, key, field)
				default:
					p.HSet(ctx, key, field, next[i])
				}
			}
			return nil
		})
		return err
	})
	if changeErr != nil {
		return PoolConfig{}, changeErr
	}
	if err != nil {
		return PoolConfig{}, fmt.Errorf("registry: set configuration of %s: %w", pool, err)
	}
	return cfg, nil
}
